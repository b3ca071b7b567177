"""The tasks generated pipelines are made of, and the plan each deployment model fills in for one environment.

A model (`rolling.py`, `bluegreen.py`, `canary.py`) returns a `ModelPlan`: the tasks of the environment's stage
in the main pipeline, the rollback inputs that stage records (each bound to a task's output), and the tasks of
the environment's rollback pipeline. `pipelines.py` turns plans into documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.cdtemplate.manifest import Application, dump, reference, released_deployment
from orchestrator.cdtemplate.request import Environment, HealthCheck, is_path

Doc = dict[str, Any]
Named = tuple[str, Doc]

IMAGE = "${input.image}:${input.tag}"
# The health check passes on a 200; any other answer (a 503 while pods start) is polled again, until the count
# runs out.
HEALTHY = "${responseCode} == 200"
# Seconds a VERIFY waits beyond the Deployment's own progress deadline, which normally decides first.
VERIFY_MARGIN = 60

# Task names every model uses.
CREATE_NAMESPACE = "Create Namespace"
CREATE_SERVICE = "Create Service"
CREATE_SECRET = "Create Secret"
CREATE_RESOURCES = "Create Resources"
CHECK_HEALTH = "Check Health"
ROLL_BACK = "Roll Back Deployment"
VERIFY_ROLLBACK = "Verify Rollback"
REMOVE_APPLICATION = "Remove Application"
ROLLBACK_STAGE = "Rollback"


def given(name: str) -> str:
    """A preCondition: the rollback input `name` holds a value."""
    return f"${{input.{name}}} != ''"


def empty(name: str) -> str:
    """A preCondition: the rollback input `name` is empty (the task it is bound to never ran, or found nothing)."""
    return f"${{input.{name}}} == ''"


@dataclass(frozen=True)
class Release:
    """One environment's part of a release: the application, the environment, and its health check."""

    app: Application
    environment: Environment
    health: HealthCheck

    @property
    def stage(self) -> str:
        return self.environment.stage

    @property
    def production(self) -> bool:
        return self.environment.key == "prod"

    def output(self, task: str, path: str) -> str:
        """A binding to an output of a task of this stage."""
        return f"${{{self.stage}.{task}.output.{path}}}"

    def k8s(self, action: str, **fields: Any) -> Doc:
        return {
            "type": "K8S",
            "endpoints": {"kubernetesServer": self.environment.endpoint},
            "input": {"action": action, **fields},
        }

    def apply(self, objects: Iterable[Mapping[str, Any]]) -> Doc:
        return self.k8s("APPLY", yaml=dump(objects))

    def delete(self, objects: Iterable[Mapping[str, Any]]) -> Doc:
        return self.k8s("DELETE", yaml=dump(reference(obj) for obj in objects))

    def verify(self, deployment: str, deployed_by: str | None = None) -> Doc:
        """Wait for `deployment` to roll out; when `deployed_by` names the APPLY of this stage that changed it, for
        the revision that task made, so a reading of an older revision never passes for this release."""
        timeout = self.app.progress_deadline + VERIFY_MARGIN
        fields: dict[str, Any] = {"namespace": self.app.namespace, "deployment": deployment, "timeout": timeout}
        if deployed_by is not None:
            fields["revision"] = self.output(deployed_by, "revision")
        return self.k8s("VERIFY", **fields)

    def roll_back(self, revision: str) -> Doc:
        """Undo the application's Deployment to `revision` (a binding), as `kubectl rollout undo --to-revision`."""
        app = self.app
        return self.k8s("ROLLBACK", namespace=app.namespace, deployment=app.deployment_name, revision=revision)

    def deployment(self, name: str | None = None, replicas: int | None = None, **labels: str) -> Doc:
        """The application's Deployment on the released image, optionally renamed, rescaled and relabelled."""
        return released_deployment(self.app.deployment, IMAGE, name, replicas, labels)

    @property
    def health_target(self) -> str:
        """The environment's own health-check URL, or the request's."""
        return self.environment.health_url or self.health.url

    def health_url(self, service: str) -> str:
        """What the health check polls: an absolute URL as given, a health path through the service proxy.

        The proxy path is relative to the cluster's API: the POLL names the environment's endpoint, and the worker
        resolves the path against its URL and sends its credentials, so they never enter the pipeline.
        """
        url = self.health_target
        if not is_path(url):
            return url
        return f"/api/v1/namespaces/{self.app.namespace}/services/{service}:{self.app.port}/proxy{url}"

    def health_check(self, service: str | None = None) -> Doc:
        """A POLL of the health URL (a path: through `service`, default the application's) until it answers 200."""
        task: Doc = {
            "type": "POLL",
            "input": {
                "url": self.health_url(service or self.app.service_name),
                "pollCount": self.health.poll_count,
                "pollIntervalSeconds": self.health.interval,
                "ignoreFailure": True,
                "exitCriteria": {"success": HEALTHY},
            },
        }
        if is_path(self.health_target):
            task["endpoints"] = {"kubernetesServer": self.environment.endpoint}
        return task

    def setup(self, *services: Named) -> TaskList:
        """The tasks that prepare the environment: namespaces first, then Services, Secrets and the rest together."""
        tasks = TaskList()
        if self.app.namespaces:
            tasks.then((CREATE_NAMESPACE, self.apply(self.app.namespaces)))
        others = [(CREATE_SECRET, self.apply(self.app.secrets))] if self.app.secrets else []
        if self.app.others:
            others.append((CREATE_RESOURCES, self.apply(self.app.others)))
        return tasks.then(*services, *others)

    def removal(self, *objects: Mapping[str, Any]) -> Doc:
        """Delete what a first release created: `objects`, the Service, the Secrets and the other objects.

        Namespaces stay: deleting one deletes everything in it, and it may well hold more than this application.
        """
        return self.delete([*objects, self.app.service, *self.app.secrets, *self.app.others])


@dataclass(frozen=True)
class Bound:
    """A rollback input's value: text with bindings, and the task of the stage whose output it reads (if any)."""

    text: str
    task: str | None = None


@dataclass
class TaskList:
    """Tasks in run order: groups run one after the other, the tasks of a group in parallel.

    `linked` names the tasks that carry their own rollback link (the deploy and verify tasks).
    """

    groups: list[list[str]] = field(default_factory=list)
    tasks: dict[str, Doc] = field(default_factory=dict)
    linked: list[str] = field(default_factory=list)

    def then(self, *named: Named, linked: bool = False) -> TaskList:
        """Add a group of tasks run together after the ones before."""
        if named:
            self.groups.append([name for name, _ in named])
            self.tasks.update(named)
            if linked:
                self.linked += [name for name, _ in named]
        return self

    def task_order(self) -> list[str]:
        return [",".join(group) for group in self.groups]

    def position(self, name: str) -> int:
        """The group a task is in."""
        return next(index for index, group in enumerate(self.groups) if name in group)


@dataclass
class ModelPlan:
    """What a deployment model generates for one environment.

    `link_input` binds each rollback input to what the stage's tasks record; `rollback_inputs` describes each
    input of the rollback pipeline, whose `rollback` tasks read them.
    """

    stage: TaskList
    link_input: dict[str, Bound]
    rollback: TaskList
    rollback_inputs: dict[str, str]

    def link_input_at(self, task: str | None) -> dict[str, str]:
        """The rollback inputs a link can bind: at a task, only what the tasks up to it record (None: the stage's)."""
        if task is None:
            return {name: bound.text for name, bound in self.link_input.items()}
        here = self.stage.position(task)
        return {
            name: bound.text
            for name, bound in self.link_input.items()
            if bound.task is None or self.stage.position(bound.task) <= here
        }


# Rollback inputs recorded by the tasks that change the application's Deployment (rolling upgrade and canary).
DEPLOYMENT_INPUTS = {
    "previousImage": 'the image the Deployment ran before this release ("": it did not exist)',
    "previousRevision": 'the Deployment\'s revision before this release ("": it did not exist, a first release)',
    "revision": 'the Deployment\'s revision this release made ("": the release never reached the Deployment)',
    "createdRevision": (
        'the revision of the Deployment when `Create Deployment` created it, a first release ("": it existed)'
    ),
}
CREATE_DEPLOYMENT = "Create Deployment"


def create_deployment(release: Release) -> Named:
    """`Create Deployment`: a K8S CREATE of the Deployment on the new image that leaves an existing one as it is.

    On a first release it makes the Deployment, and its output `revision` says so ("1"); when the Deployment
    exists it records no revision. Models that change the Deployment late in a stage (after a canary or a phase
    1) run it first, so that their rollback knows a first release wherever the stage fails.
    """
    task = release.k8s("CREATE", yaml=dump([release.deployment()]), continueOnConflict=True)
    return CREATE_DEPLOYMENT, task


def deployment_link_input(release: Release, task: str, created_by: str | None = None) -> dict[str, Bound]:
    """Bind `DEPLOYMENT_INPUTS` to what the APPLY `task` recorded, and to what `created_by` (a CREATE) did."""
    bound = {name: Bound(release.output(task, name), task) for name in DEPLOYMENT_INPUTS if name != "createdRevision"}
    if created_by is not None:
        bound["createdRevision"] = Bound(release.output(created_by, "revision"), created_by)
    return bound


def restore_deployment(release: Release, *removed_first: Named) -> TaskList:
    """The rollback of a release that changes the application's Deployment (inputs: `DEPLOYMENT_INPUTS`).

    `removed_first` (a canary, a phase 1) always goes. Then, when the release changed a Deployment that existed
    before, it is rolled back to the revision it ran before and verified; when the release created it (a first
    release: `createdRevision`, or an APPLY that found no previous revision), what the release created is
    removed instead; when the release never reached it, it is left alone.
    """
    first = f"{given('createdRevision')} or ({empty('previousRevision')} and {given('revision')})"
    changed = f"{given('previousRevision')} and {given('revision')} and {empty('createdRevision')}"
    return (
        TaskList()
        .then(*removed_first)
        .then((ROLL_BACK, release.roll_back("${input.previousRevision}") | {"preCondition": changed}))
        .then((VERIFY_ROLLBACK, release.verify(release.app.deployment_name) | {"preCondition": changed}))
        .then((REMOVE_APPLICATION, release.removal(release.app.deployment) | {"preCondition": first}))
    )
