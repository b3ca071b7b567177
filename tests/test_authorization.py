"""The authorization matrix: every `/api` route, called by every role, on its own project and on another one.

What each route should need is declared here, not read from the code under test: `EXPECTED_ACTIONS` maps
(method, rule) to the action it takes, `ROLE_MAY` says which actions each role has, and `SAMPLES` builds a
real request for each route. A route in the app's url_map that is missing from these tables, or that has no
`@allow` rule (or a different one), fails `test_every_api_route_is_declared_with_the_action_it_takes`; a
route added later needs an entry in both tables.

The answers the matrix expects:
- the role lacks the route's action: 403, and nothing changed;
- another project's object: 404 worded exactly like a missing id, and nothing changed;
- a list: only the caller's project, and nothing of another project even when asked for by name;
- a create into another project: 403, and nothing created;
- otherwise the route's own success status (never 401, 403 or 404).

Runs on SQLite only (it is some thousand requests) through Flask's test client, without a worker.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.auth import PUBLIC, route_rule
from orchestrator.outcome import Succeeded
from orchestrator.policy import Action, Role
from orchestrator.settings import Settings, sqlite_url
from orchestrator.status import ExecutionStatus
from orchestrator.store import Store

from rollway_testing import SECRET_KEY, TOKEN, template_request

Doc = dict[str, Any]
OWN, OTHER = "alpha", "beta"
MISSING_ID = "no-such-id"

# The contract's roles (Code Stream's): a viewer reads, an executor also runs, a developer also edits, an
# admin also administers.
ROLE_MAY: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.EXECUTOR: frozenset({Action.READ, Action.RUN}),
    Role.DEVELOPER: frozenset({Action.READ, Action.RUN, Action.EDIT}),
    Role.ADMIN: frozenset({Action.READ, Action.RUN, Action.EDIT, Action.ADMINISTER}),
}

Route = tuple[str, str]  # (method, url_map rule)

EXPECTED_ACTIONS: dict[Route, Action] = {
    ("POST", "/api/pipelines"): Action.EDIT,
    ("POST", "/api/pipelines/import"): Action.EDIT,
    ("POST", "/api/pipelines/apply"): Action.EDIT,
    ("GET", "/api/pipelines"): Action.READ,
    ("GET", "/api/pipelines/<pipeline_id>"): Action.READ,
    ("PUT", "/api/pipelines/<pipeline_id>"): Action.EDIT,
    ("PATCH", "/api/pipelines/<pipeline_id>"): Action.EDIT,
    ("DELETE", "/api/pipelines/<pipeline_id>"): Action.EDIT,
    ("GET", "/api/pipelines/<pipeline_id>/export"): Action.READ,
    ("POST", "/api/pipelines/<pipeline_id>/executions"): Action.RUN,
    ("GET", "/api/executions"): Action.READ,
    ("GET", "/api/executions/<execution_id>"): Action.READ,
    ("GET", "/api/executions/<execution_id>/events"): Action.READ,
    ("POST", "/api/executions/<execution_id>/cancel"): Action.RUN,
    ("POST", "/api/executions/<execution_id>/rollback"): Action.RUN,
    ("POST", "/api/executions/<execution_id>/rerun"): Action.RUN,
    ("POST", "/api/executions/<execution_id>/pause"): Action.RUN,
    ("POST", "/api/executions/<execution_id>/resume"): Action.RUN,
    ("POST", "/api/endpoints"): Action.EDIT,
    ("GET", "/api/endpoints"): Action.READ,
    ("GET", "/api/endpoints/<endpoint_id>"): Action.READ,
    ("PATCH", "/api/endpoints/<endpoint_id>"): Action.EDIT,
    ("DELETE", "/api/endpoints/<endpoint_id>"): Action.EDIT,
    ("POST", "/api/templates/cd/process"): Action.READ,
    ("POST", "/api/templates/cd"): Action.EDIT,
    ("POST", "/api/tokens"): Action.ADMINISTER,
    ("GET", "/api/tokens"): Action.ADMINISTER,
    ("DELETE", "/api/tokens/<token_id>"): Action.ADMINISTER,
    ("POST", "/api/triggers"): Action.EDIT,
    ("GET", "/api/triggers"): Action.READ,
    ("GET", "/api/triggers/<trigger_id>"): Action.READ,
    ("DELETE", "/api/triggers/<trigger_id>"): Action.EDIT,
    ("POST", "/api/variables"): Action.EDIT,
    ("GET", "/api/variables"): Action.READ,
    ("GET", "/api/variables/<variable_id>"): Action.READ,
    ("PATCH", "/api/variables/<variable_id>"): Action.EDIT,
    ("DELETE", "/api/variables/<variable_id>"): Action.EDIT,
    ("GET", "/api/audit"): Action.ADMINISTER,
    ("GET", "/api/whoami"): Action.READ,
    ("GET", "/api/user-operations"): Action.READ,
    ("GET", "/api/user-operations/<operation_id>"): Action.READ,
    ("POST", "/api/user-operations/<operation_id>"): Action.RUN,
    ("GET", "/api/monitoring/queues"): Action.READ,
    ("GET", "/api/monitoring/workers"): Action.READ,
}

# Routes that take no bearer token (they authenticate their requests themselves), marked `@public`.
PUBLIC_ROUTES: frozenset[Route] = frozenset({("POST", "/api/triggers/<name>")})

APP_YAML = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.25"}]
"""


# -- the objects the requests act on


def restricted_pipeline_doc(name: str, project: str, variable: str) -> Doc:
    """A pipeline whose one REST task reads a RESTRICTED variable: a non-admin's run of it waits for an admin."""
    call = {"type": "REST", "input": {"action": "get", "url": "https://127.0.0.1:1/", "headers": {"X-V": variable}}}
    stages = {"Call": {"taskOrder": ["Get"], "tasks": {"Get": call}}}
    document = {"kind": "PIPELINE", "name": name, "project": project, "enabled": True, "concurrency": 1000}
    return document | {"stageOrder": ["Call"], "stages": stages}


def pipeline_doc(name: str, project: str, **fields: Any) -> Doc:
    """A small valid pipeline: one stage of one Condition task."""
    task = {"type": "Condition", "input": {"condition": "1 == 1"}}
    stages = {"Check": {"taskOrder": ["First"], "tasks": {"First": task}}}
    return {"kind": "PIPELINE", "name": name, "project": project, "stageOrder": ["Check"], "stages": stages} | fields


@dataclass
class Objects:
    """What the bootstrap token made in one project before the requests under test."""

    pipeline: str
    execution: str
    endpoint: str
    token: str
    restricted_pipeline: str
    developer: FlaskClient


class World:
    """Projects alpha and beta, each with a pipeline, an execution, endpoints and a token, all made by the
    bootstrap token, and a user operation of a developer's run of a pipeline that reads a RESTRICTED variable; and a
    token of each role in alpha."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.admin = app.test_client()
        self.admin.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        self.counter = itertools.count()
        self.projects = {project: self._populate(project) for project in (OWN, OTHER)}
        self.role_tokens = {role: str(self.fresh_token(OWN, role, f"{role}-of-{OWN}")["token"]) for role in Role}

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def made(self, path: str, body: Doc, status: int = 201) -> Doc:
        answer = self.admin.post(path, json=body)
        assert answer.status_code == status, answer.get_data(as_text=True)
        made: Doc = answer.get_json()
        return made

    def _populate(self, project: str) -> Objects:
        for name in ("dev-cluster", "prod-cluster"):
            self.fresh_endpoint(project, name)
        pipeline = self.fresh_pipeline(project)
        variable = self.unique("restricted")
        self.made("/api/variables", {"name": variable, "project": project, "type": "RESTRICTED", "value": "pw"})
        guarded = restricted_pipeline_doc(self.unique("Guarded"), project, f"${{var.{variable}}}")
        developer = self.app.test_client()
        developer.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {self.fresh_token(project, 'developer')['token']}"
        objects = Objects(
            pipeline=pipeline,
            execution=self.fresh_execution(project, pipeline),
            endpoint=self.fresh_endpoint(project),
            token=str(self.fresh_token(project)["id"]),
            restricted_pipeline=str(self.made("/api/pipelines", guarded)["id"]),
            developer=developer,
        )
        self.made("/api/triggers", self.trigger_body(project, pipeline))
        self.fresh_variable(project)
        self.fresh_user_operation(objects)
        return objects

    def fresh_pipeline(self, project: str) -> str:
        document = pipeline_doc(self.unique("Pipeline"), project, enabled=True, concurrency=1000)
        return str(self.made("/api/pipelines", document)["id"])

    def fresh_execution(self, project: str, pipeline: str | None = None) -> str:
        pipeline = pipeline or self.fresh_pipeline(project)
        return str(self.made(f"/api/pipelines/{pipeline}/executions", {"input": {}}, 202)["executionId"])

    def fresh_completed_execution(self, project: str) -> str:
        """A COMPLETED execution of a new pipeline whose stage links to a rollback pipeline; its one task is run
        here through the app's engine, as a worker would run it (the matrix runs without workers)."""
        undo = self.unique("Undo")
        self.made("/api/pipelines", pipeline_doc(undo, project, enabled=True, concurrency=1000))
        document = pipeline_doc(self.unique("Linked"), project, enabled=True, concurrency=1000)
        document["stages"]["Check"]["rollback"] = {"pipeline": undo}
        execution = self.fresh_execution(project, str(self.made("/api/pipelines", document)["id"]))
        services = self.app.extensions["rollway"]
        for run in services.store.task_runs(execution):
            claimed = services.store.claim(run.id, run.attempt, "matrix", lease_seconds=60)
            assert claimed is not None
            services.engine.task_finished(claimed, Succeeded({"result": True}))
        assert services.store.get_execution(execution).status is ExecutionStatus.COMPLETED
        return execution

    def fresh_user_operation(self, objects: Objects) -> str:
        """The ACTIVE user operation of a new run, by the project's developer, of its restricted pipeline."""
        started = objects.developer.post(f"/api/pipelines/{objects.restricted_pipeline}/executions", json={})
        assert started.status_code == 202, started.get_data(as_text=True)
        execution = started.get_json()["executionId"]
        waiting = self.admin.get("/api/user-operations", query_string={"status": "ACTIVE"}).get_json()
        [operation] = [item["id"] for item in waiting if item["executionId"] == execution]
        return str(operation)

    def fresh_endpoint(self, project: str, name: str | None = None) -> str:
        body = {"name": name or self.unique("cluster"), "project": project, "url": "https://127.0.0.1:1"}
        return str(self.made("/api/endpoints", body | {"type": "kubernetes", "insecure": True})["id"])

    def fresh_token(self, project: str, role: str = "viewer", name: str | None = None) -> Doc:
        """A new token as made: its id and, this once, the token itself."""
        return self.made("/api/tokens", {"name": name or self.unique("token"), "project": project, "role": role})

    def trigger_body(self, project: str, pipeline: str | None = None) -> Doc:
        """A webhook trigger of a pipeline of the project (by default the one it was populated with)."""
        pipeline = pipeline or self.projects[project].pipeline
        name = self.admin.get(f"/api/pipelines/{pipeline}").get_json()["name"]
        return {"name": self.unique("hook"), "project": project, "pipeline": name, "secret": "s" * 20}

    def fresh_trigger(self, project: str) -> str:
        return str(self.made("/api/triggers", self.trigger_body(project))["id"])

    def variable_body(self, project: str) -> Doc:
        return {"name": self.unique("var"), "project": project, "type": "SECRET", "value": "hunter2"}

    def fresh_variable(self, project: str) -> str:
        return str(self.made("/api/variables", self.variable_body(project))["id"])

    def snapshot(self, path: str) -> object:
        """What the bootstrap token reads at `path`, without the tokens' use times (using a token changes it)."""
        answer = self.admin.get(path)
        body = answer.get_json()
        if isinstance(body, list):
            body = [{key: value for key, value in item.items() if key != "lastUsedAt"} for item in body]
        return answer.status_code, body


# -- a sample request per route


class Kind(StrEnum):
    OBJECT = "object"  # acts on one object named in the path: 404 in another project
    LIST = "list"  # lists objects: another project's are left out
    CREATE = "create"  # makes objects in the project its body names: 403 for another project
    GLOBAL = "global"  # touches no project's objects


@dataclass(frozen=True)
class Call:
    """A request: its path and body, the id in the path (object routes), and where to see that nothing changed."""

    path: str
    body: Doc | None = None
    object_id: str | None = None
    probe: str = ""


@dataclass(frozen=True)
class Sample:
    """How to call a route on a project's objects, and what it answers when allowed.

    `admin_only`: the sample object needs an admin even where the route's action does not (answering a RESTRICTED
    user operation needs only RUN, except for that kind).
    """

    kind: Kind
    status: int
    build: Callable[[World, str], Call]
    admin_only: bool = False


def _pipeline(world: World, project: str, path: str, body: Doc | None = None, fresh: bool = False) -> Call:
    pipeline = world.fresh_pipeline(project) if fresh else world.projects[project].pipeline
    return Call(path.format(pipeline), body, pipeline, f"/api/pipelines/{pipeline}")


def _put(world: World, project: str) -> Call:
    pipeline = world.fresh_pipeline(project)
    document = yaml.safe_load(world.admin.get(f"/api/pipelines/{pipeline}/export").get_data(as_text=True))
    return Call(
        f"/api/pipelines/{pipeline}", document | {"description": "replaced"}, pipeline, f"/api/pipelines/{pipeline}"
    )


def _trigger(world: World, project: str) -> Call:
    pipeline = world.projects[project].pipeline
    path = f"/api/pipelines/{pipeline}/executions"
    return Call(path, {"input": {}}, pipeline, f"/api/executions?project={project}&limit=1000")


def _execution(world: World, project: str, path: str, fresh: bool = False) -> Call:
    execution = world.fresh_execution(project) if fresh else world.projects[project].execution
    return Call(path.format(execution), None, execution, f"/api/executions/{execution}")


def _ended_execution(world: World, project: str, path: str) -> Call:
    execution = world.fresh_completed_execution(project)
    return Call(path.format(execution), None, execution, f"/api/executions/{execution}")


def _paused_execution(world: World, project: str) -> Call:
    """Resume a new execution the bootstrap token paused."""
    execution = world.fresh_execution(project)
    world.made(f"/api/executions/{execution}/pause", {}, 202)
    return Call(f"/api/executions/{execution}/resume", None, execution, f"/api/executions/{execution}")


def _endpoint(world: World, project: str, path: str, body: Doc | None = None, fresh: bool = False) -> Call:
    endpoint = world.fresh_endpoint(project) if fresh else world.projects[project].endpoint
    return Call(path.format(endpoint), body, endpoint, f"/api/endpoints/{endpoint}")


def _token(world: World, project: str) -> Call:
    token = str(world.fresh_token(project)["id"])
    return Call(f"/api/tokens/{token}", None, token, f"/api/tokens?project={project}")


def _trigger_object(world: World, project: str) -> Call:
    trigger = world.fresh_trigger(project)
    return Call(f"/api/triggers/{trigger}", None, trigger, f"/api/triggers?project={project}")


def _variable(world: World, project: str, body: Doc | None = None) -> Call:
    variable = world.fresh_variable(project)
    return Call(f"/api/variables/{variable}", body, variable, f"/api/variables?project={project}")


def _user_operation(world: World, project: str, body: Doc | None = None) -> Call:
    operation = world.fresh_user_operation(world.projects[project])
    return Call(f"/api/user-operations/{operation}", body, operation, f"/api/user-operations/{operation}")


def _template(world: World, project: str) -> Call:
    body = template_request(APP_YAML, project=project, pipelineName=world.unique("Release"))
    return Call("/api/templates/cd", body, probe=f"/api/pipelines?project={project}")


SAMPLES: dict[Route, Sample] = {
    ("POST", "/api/pipelines"): Sample(
        Kind.CREATE,
        201,
        lambda w, p: Call("/api/pipelines", pipeline_doc(w.unique("New"), p), probe=f"/api/pipelines?project={p}"),
    ),
    ("POST", "/api/pipelines/import"): Sample(
        Kind.CREATE,
        200,
        lambda w, p: Call(
            "/api/pipelines/import", pipeline_doc(w.unique("Imported"), p), probe=f"/api/pipelines?project={p}"
        ),
    ),
    ("POST", "/api/pipelines/apply"): Sample(
        Kind.CREATE,
        200,
        lambda w, p: Call(
            "/api/pipelines/apply",
            {"documents": [pipeline_doc(w.unique("Applied"), p)]},
            probe=f"/api/pipelines?project={p}",
        ),
    ),
    ("GET", "/api/pipelines"): Sample(Kind.LIST, 200, lambda w, p: Call("/api/pipelines")),
    ("GET", "/api/pipelines/<pipeline_id>"): Sample(
        Kind.OBJECT, 200, lambda w, p: _pipeline(w, p, "/api/pipelines/{}")
    ),
    ("PUT", "/api/pipelines/<pipeline_id>"): Sample(Kind.OBJECT, 200, _put),
    ("PATCH", "/api/pipelines/<pipeline_id>"): Sample(
        Kind.OBJECT, 200, lambda w, p: _pipeline(w, p, "/api/pipelines/{}", {"description": "patched"}, fresh=True)
    ),
    ("DELETE", "/api/pipelines/<pipeline_id>"): Sample(
        Kind.OBJECT, 204, lambda w, p: _pipeline(w, p, "/api/pipelines/{}", fresh=True)
    ),
    ("GET", "/api/pipelines/<pipeline_id>/export"): Sample(
        Kind.OBJECT, 200, lambda w, p: _pipeline(w, p, "/api/pipelines/{}/export")
    ),
    ("POST", "/api/pipelines/<pipeline_id>/executions"): Sample(Kind.OBJECT, 202, _trigger),
    ("GET", "/api/executions"): Sample(Kind.LIST, 200, lambda w, p: Call("/api/executions")),
    ("GET", "/api/executions/<execution_id>"): Sample(
        Kind.OBJECT, 200, lambda w, p: _execution(w, p, "/api/executions/{}")
    ),
    ("GET", "/api/executions/<execution_id>/events"): Sample(
        Kind.OBJECT, 200, lambda w, p: _execution(w, p, "/api/executions/{}/events")
    ),
    ("POST", "/api/executions/<execution_id>/cancel"): Sample(
        Kind.OBJECT, 202, lambda w, p: _execution(w, p, "/api/executions/{}/cancel", fresh=True)
    ),
    ("POST", "/api/executions/<execution_id>/rollback"): Sample(
        Kind.OBJECT, 202, lambda w, p: _ended_execution(w, p, "/api/executions/{}/rollback")
    ),
    ("POST", "/api/executions/<execution_id>/rerun"): Sample(
        Kind.OBJECT, 202, lambda w, p: _ended_execution(w, p, "/api/executions/{}/rerun")
    ),
    ("POST", "/api/executions/<execution_id>/pause"): Sample(
        Kind.OBJECT, 202, lambda w, p: _execution(w, p, "/api/executions/{}/pause", fresh=True)
    ),
    ("POST", "/api/executions/<execution_id>/resume"): Sample(Kind.OBJECT, 202, _paused_execution),
    ("POST", "/api/endpoints"): Sample(
        Kind.CREATE,
        201,
        lambda w, p: Call(
            "/api/endpoints",
            {"name": w.unique("new-cluster"), "project": p, "url": "https://127.0.0.1:2", "insecure": True},
            probe=f"/api/endpoints?project={p}",
        ),
    ),
    ("GET", "/api/endpoints"): Sample(Kind.LIST, 200, lambda w, p: Call("/api/endpoints")),
    ("GET", "/api/endpoints/<endpoint_id>"): Sample(
        Kind.OBJECT, 200, lambda w, p: _endpoint(w, p, "/api/endpoints/{}")
    ),
    ("PATCH", "/api/endpoints/<endpoint_id>"): Sample(
        Kind.OBJECT, 200, lambda w, p: _endpoint(w, p, "/api/endpoints/{}", {"url": "https://127.0.0.1:3"}, fresh=True)
    ),
    ("DELETE", "/api/endpoints/<endpoint_id>"): Sample(
        Kind.OBJECT, 204, lambda w, p: _endpoint(w, p, "/api/endpoints/{}", fresh=True)
    ),
    ("POST", "/api/templates/cd/process"): Sample(
        Kind.GLOBAL, 200, lambda w, p: Call("/api/templates/cd/process", {"kubernetesYaml": APP_YAML})
    ),
    ("POST", "/api/templates/cd"): Sample(Kind.CREATE, 201, _template),
    ("POST", "/api/tokens"): Sample(
        Kind.CREATE,
        201,
        lambda w, p: Call(
            "/api/tokens", {"name": w.unique("made"), "project": p, "role": "viewer"}, probe=f"/api/tokens?project={p}"
        ),
    ),
    ("GET", "/api/tokens"): Sample(Kind.LIST, 200, lambda w, p: Call("/api/tokens")),
    ("DELETE", "/api/tokens/<token_id>"): Sample(Kind.OBJECT, 204, _token),
    ("POST", "/api/triggers"): Sample(
        Kind.CREATE,
        201,
        lambda w, p: Call("/api/triggers", w.trigger_body(p), probe=f"/api/triggers?project={p}"),
    ),
    ("GET", "/api/triggers"): Sample(Kind.LIST, 200, lambda w, p: Call("/api/triggers")),
    ("GET", "/api/triggers/<trigger_id>"): Sample(Kind.OBJECT, 200, _trigger_object),
    ("DELETE", "/api/triggers/<trigger_id>"): Sample(Kind.OBJECT, 204, _trigger_object),
    ("POST", "/api/variables"): Sample(
        Kind.CREATE,
        201,
        lambda w, p: Call("/api/variables", w.variable_body(p), probe=f"/api/variables?project={p}"),
    ),
    ("GET", "/api/variables"): Sample(Kind.LIST, 200, lambda w, p: Call("/api/variables")),
    ("GET", "/api/variables/<variable_id>"): Sample(Kind.OBJECT, 200, _variable),
    ("PATCH", "/api/variables/<variable_id>"): Sample(
        Kind.OBJECT, 200, lambda w, p: _variable(w, p, {"description": "patched"})
    ),
    ("DELETE", "/api/variables/<variable_id>"): Sample(Kind.OBJECT, 204, _variable),
    ("GET", "/api/audit"): Sample(Kind.LIST, 200, lambda w, p: Call("/api/audit")),
    ("GET", "/api/whoami"): Sample(Kind.GLOBAL, 200, lambda w, p: Call("/api/whoami")),
    ("GET", "/api/user-operations"): Sample(Kind.LIST, 200, lambda w, p: Call("/api/user-operations")),
    ("GET", "/api/user-operations/<operation_id>"): Sample(Kind.OBJECT, 200, _user_operation),
    ("POST", "/api/user-operations/<operation_id>"): Sample(
        Kind.OBJECT, 200, lambda w, p: _user_operation(w, p, {"action": "reject", "comments": "no"}), admin_only=True
    ),
    # Queue depths and workers are global; the tasks a worker runs are kept to the caller's projects
    # (tests/test_monitoring.py).
    ("GET", "/api/monitoring/queues"): Sample(Kind.GLOBAL, 200, lambda w, p: Call("/api/monitoring/queues")),
    ("GET", "/api/monitoring/workers"): Sample(Kind.GLOBAL, 200, lambda w, p: Call("/api/monitoring/workers")),
}


# -- fixtures and checks


@pytest.fixture
def app(tmp_path: Path, redis_url: str) -> Iterator[Flask]:
    """The API on a fresh, migrated SQLite file, with the bootstrap token."""
    url = sqlite_url(tmp_path / "rollway.db")
    Store.connect(url).dispose()
    app = create_app(Settings(database_url=url, redis_url=redis_url, api_token=TOKEN, secret_key=SECRET_KEY))
    yield app
    app.extensions["rollway"].store.dispose()


@pytest.fixture
def world(app: Flask) -> World:
    return World(app)


def api_routes(app: Flask) -> Iterator[tuple[Route, str]]:
    """((method, rule), Flask endpoint) of every route under /api."""
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                yield (method, rule.rule), rule.endpoint


def undeclared_routes(app: Flask) -> list[str]:
    """Every way the app's routes and the declared tables disagree (empty when they agree)."""
    with app.app_context():
        rules = {route: route_rule(endpoint) for route, endpoint in api_routes(app)}
    problems = [
        f"{route}: not in EXPECTED_ACTIONS" for route in rules if route not in {*EXPECTED_ACTIONS, *PUBLIC_ROUTES}
    ]
    problems += [
        f"{route}: its rule is {rules[route]!r}, expected {action!r}"
        for route, action in EXPECTED_ACTIONS.items()
        if route in rules and rules[route] != action
    ]
    problems += [f"{route}: not marked @public" for route in PUBLIC_ROUTES if route in rules and rules[route] != PUBLIC]
    problems += [f"{route}: in EXPECTED_ACTIONS but not a route" for route in EXPECTED_ACTIONS if route not in rules]
    problems += [f"{route}: has no sample request" for route in EXPECTED_ACTIONS if route not in SAMPLES]
    return sorted(problems)


def client_of(app: Flask, token: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def expected_answer(role: Role, reach: str, route: Route, sample: Sample) -> tuple[int, str | None]:
    """(status, error code or None) the matrix expects."""
    if EXPECTED_ACTIONS[route] not in ROLE_MAY[role]:
        return 403, "forbidden"
    if reach == OTHER and sample.kind is Kind.OBJECT:
        return 404, "not_found"
    if reach == OTHER and sample.kind is Kind.CREATE:
        return 403, "forbidden"
    if sample.admin_only and role is not Role.ADMIN:
        return 403, "forbidden"
    return sample.status, None


def judge(world: World, client: FlaskClient, role: Role, reach: str, route: Route) -> list[str]:
    """Call one route as `role` on the objects of `reach`; what is wrong with the answer (empty: nothing)."""
    method, rule = route
    sample = SAMPLES[route]
    call = sample.build(world, reach)
    path = call.path + (f"?project={OTHER}" if sample.kind is Kind.LIST and reach == OTHER else "")
    before = world.snapshot(call.probe) if call.probe else None
    answer = client.open(path, method=method, json=call.body)
    status, code = expected_answer(role, reach, route, sample)
    where = f"{role} on {reach}: {method} {rule}"
    body = answer.get_json(silent=True)
    if answer.status_code != status or (code is not None and (body or {}).get("error", {}).get("code") != code):
        return [f"{where}: expected {status} {code or ''}, got {answer.status_code} {answer.get_data(as_text=True)}"]
    problems: list[str] = []
    if code is not None and call.probe and world.snapshot(call.probe) != before:
        problems.append(f"{where}: refused, yet {call.probe} changed")
    if status == 404 and call.object_id:
        missing = client.open(call.path.replace(call.object_id, MISSING_ID), method=method, json=call.body)
        wording = missing.get_json()["error"]["message"].replace(MISSING_ID, call.object_id)
        if missing.status_code != 404 or wording != body["error"]["message"]:
            problems.append(f"{where}: {body} is not worded like a missing id: {missing.get_json()}")
    if sample.kind is Kind.LIST and status == 200:
        projects = {item["project"] for item in body}
        if projects != ({OWN} if reach == OWN else set()):
            problems.append(f"{where}: lists objects of {sorted(projects)}")
    return problems


# -- the stories


def test_every_api_route_is_declared_with_the_action_it_takes(app: Flask) -> None:
    # Given the app's route table
    # When it is compared with the declared actions, public routes and samples
    problems = undeclared_routes(app)

    # Then they agree: every route has an entry, its @allow rule is that action, and no entry is stale
    assert problems == []
    assert len(EXPECTED_ACTIONS) >= 33


def test_a_route_without_a_rule_fails_the_declaration_and_is_refused(tmp_path: Path, redis_url: str) -> None:
    # Given an app with one more /api route, added without an @allow rule
    url = sqlite_url(tmp_path / "rollway.db")
    Store.connect(url).dispose()
    app = create_app(Settings(database_url=url, redis_url=redis_url, api_token=TOKEN, secret_key=SECRET_KEY))
    app.add_url_rule("/api/forgotten", "forgotten", lambda: "opened")

    # When the route table is checked, and the route is called with the bootstrap token
    problems = undeclared_routes(app)
    answer = client_of(app, TOKEN).get("/api/forgotten")

    # Then the check names it, and the route is refused rather than open
    assert problems == ["('GET', '/api/forgotten'): not in EXPECTED_ACTIONS"]
    assert answer.status_code == 403, answer.get_data(as_text=True)
    assert "declares no permission rule" in answer.get_json()["error"]["message"]
    app.extensions["rollway"].store.dispose()


@pytest.mark.parametrize("reach", [OWN, OTHER], ids=["own-project", "other-project"])
@pytest.mark.parametrize("role", list(Role), ids=[role.value for role in Role])
def test_every_route_answers_each_role_on_its_own_and_on_another_project(world: World, role: Role, reach: str) -> None:
    # Given a token of `role` in project alpha, and a pipeline, execution, endpoints and a token in alpha and in beta
    client = client_of(world.app, world.role_tokens[role])

    # When every route is called with it on the objects of `reach`
    problems = [problem for route in sorted(SAMPLES) for problem in judge(world, client, role, reach, route)]

    # Then each answers as the matrix says
    assert problems == [], "\n".join(problems)
