"""Canary: a `<deployment>-canary` Deployment on the new image takes a share of the traffic by replica count, in
two verified steps, then the Deployment is promoted to the new image and the canary removed.

The canary's pods carry the Service's labels (plus `rollway-track: canary` in their own selector), so the
Service sends them a share of requests: 1 replica beside the release's N in phase 1, max(2, N) in phase 2
(about half). Each environment's stage (Development and Production alike):

    [Create Namespace] -> Create Service, [Create Secret], [Create Resources]
      -> Create Deployment (CREATE with continueOnConflict: makes the Deployment on a first release only)
      -> Deploy Canary Phase 1 (APPLY <deployment>-canary, 1 replica) -> Verify Canary Phase 1 (VERIFY)
      -> Check Canary Phase 1 Health (POLL through the Service: stable and canary pods answer)
      -> Deploy Canary Phase 2 (APPLY, max(2, N) replicas) -> Verify Canary Phase 2 -> Check Canary Phase 2 Health
      -> Promote Canary (APPLY the Deployment on the new image) -> Verify Promotion (VERIFY)
      -> Remove Canary (DELETE <deployment>-canary) -> Check Health (POLL)

On a first release there is no stable release to compare with: `Create Deployment` makes the Deployment on the
new image, and the canary phases run beside it all the same.

The rollback pipelines take as input what `Promote Canary` recorded (`previousImage`, `previousRevision`,
`revision`) and `Create Deployment`'s output revision as `createdRevision` ("1" when the run created the
Deployment, "" when it existed), as the rolling upgrade's Production does, and run, in one stage `Rollback`:

    Remove Canary          DELETE <deployment>-canary (already gone is fine)
    Roll Back Deployment   ROLLBACK to revision previousRevision
                           if previousRevision != '' and revision != '' and createdRevision == ''
    Verify Rollback        VERIFY the Deployment, same condition
    Remove Application     DELETE the Deployment, Service, Secrets and other objects of the YAML
                           if createdRevision != '' or (previousRevision == '' and revision != '')

A failure before the promotion binds `revision` "": the canary goes and the stable release is left untouched.
"""

from __future__ import annotations

from orchestrator.cdtemplate.manifest import TRACK_LABEL
from orchestrator.cdtemplate.tasks import (
    CHECK_HEALTH,
    CREATE_DEPLOYMENT,
    CREATE_SERVICE,
    DEPLOYMENT_INPUTS,
    ModelPlan,
    Release,
    TaskList,
    create_deployment,
    deployment_link_input,
    restore_deployment,
)

PROMOTE_CANARY = "Promote Canary"
VERIFY_PROMOTION = "Verify Promotion"
REMOVE_CANARY = "Remove Canary"
CANARY = "canary"


def phase_names(phase: int) -> tuple[str, str, str]:
    """(deploy, verify, health check) task names of a canary phase."""
    return f"Deploy Canary Phase {phase}", f"Verify Canary Phase {phase}", f"Check Canary Phase {phase} Health"


def canary_replicas(replicas: int) -> tuple[int, int]:
    """The canary's replicas in each phase: one, then as many as the release runs (at least two)."""
    return 1, max(2, replicas)


def plan(release: Release) -> ModelPlan:
    """The canary release of one environment."""
    app = release.app
    name = f"{app.deployment_name}-{CANARY}"
    stage = release.setup((CREATE_SERVICE, release.apply([app.service]))).then(create_deployment(release), linked=True)
    for phase, replicas in enumerate(canary_replicas(app.replicas), start=1):
        _phase(release, stage, phase, name, replicas)
    removal = release.delete([release.deployment(name)])
    (
        stage.then((PROMOTE_CANARY, release.apply([release.deployment()])), linked=True)
        .then((VERIFY_PROMOTION, release.verify(app.deployment_name, PROMOTE_CANARY)), linked=True)
        .then((REMOVE_CANARY, removal), linked=True)
        .then((CHECK_HEALTH, release.health_check()), linked=True)
    )
    rollback = restore_deployment(release, (REMOVE_CANARY, removal))
    return ModelPlan(
        stage, deployment_link_input(release, PROMOTE_CANARY, CREATE_DEPLOYMENT), rollback, dict(DEPLOYMENT_INPUTS)
    )


def _phase(release: Release, stage: TaskList, phase: int, name: str, replicas: int) -> None:
    deploy, verify, check = phase_names(phase)
    canary = release.deployment(name, replicas, **{TRACK_LABEL: CANARY})
    stage.then((deploy, release.apply([canary])), linked=True)
    stage.then((verify, release.verify(name, deploy)), linked=True)
    stage.then((check, release.health_check()), linked=True)
