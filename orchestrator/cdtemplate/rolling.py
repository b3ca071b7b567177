"""Rolling upgrade (the seed scenario): the Deployment takes the new image in place, Kubernetes rolls its pods.

Development (task names fixed by the contract; the `Create ...` tasks are K8S APPLY, so a rerun is harmless):

    [Create Namespace] -> Create Service, [Create Secret], [Create Resources]
      -> Create Deployment (APPLY, image ${input.image}:${input.tag}) -> Verify Deployment (VERIFY)
      -> Check Health (POLL of the health path through the service proxy)

Production goes in two phases: phase 1 is a Deployment `<deployment>-phase1` of one replica on the new image
that carries the Service's labels, so it takes a share of the traffic beside the running release before the
rest rolls out. `Create Deployment` there is a K8S CREATE with continueOnConflict: it makes the Deployment on a
first release (and records `revision` "1"), and leaves an existing one untouched (recording no revision).

    [Create Namespace] -> Create Service, [Create Secret], [Create Resources]
      -> Create Deployment (CREATE if missing)
      -> Deploy Phase 1 (APPLY <deployment>-phase1) -> Verify Phase 1 (VERIFY) -> Check Phase 1 Health (POLL)
      -> Deploy Rollout Phase (APPLY the Deployment) -> Finish Rollout Phase (DELETE <deployment>-phase1)
      -> Verify Rollout Phase (VERIFY) -> Check Rollout Health (POLL)

The rollback pipelines (`<Name>_Dev_Rollback`, `<Name>_Prod_Rollback`) take as input what the APPLY of the
Deployment (`Create Deployment` in Development, `Deploy Rollout Phase` in Production) recorded:

    previousImage     its output previousImage (informative: the image the rollback goes back to)
    previousRevision  its output previousRevision ("" when the Deployment did not exist: a first release)
    revision          its output revision ("" when the release failed before reaching the Deployment)
    createdRevision   Production only: the output revision of `Create Deployment` ("1" when the run created the
                      Deployment, a first release; "" when it existed)

and run, in one stage `Rollback`:

    [Remove Phase 1]       Production only: DELETE <deployment>-phase1 (already gone is fine)
    Roll Back Deployment   ROLLBACK to revision previousRevision
                           if previousRevision != '' and revision != '' and createdRevision == ''
    Verify Rollback        VERIFY the Deployment, same condition
    Remove Application     DELETE the Deployment, Service, Secrets and other objects of the YAML (not the
                           namespaces)   if createdRevision != '' or (previousRevision == '' and revision != '')

A link on a task binds only what the tasks up to it recorded: a failure in phase 1 of a release that is not the
first binds `revision` "", which removes phase 1 and leaves the running release untouched.
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
    create_deployment,
    deployment_link_input,
    restore_deployment,
)

VERIFY_DEPLOYMENT = "Verify Deployment"
DEPLOY_PHASE_1 = "Deploy Phase 1"
VERIFY_PHASE_1 = "Verify Phase 1"
CHECK_PHASE_1_HEALTH = "Check Phase 1 Health"
DEPLOY_ROLLOUT_PHASE = "Deploy Rollout Phase"
FINISH_ROLLOUT_PHASE = "Finish Rollout Phase"
VERIFY_ROLLOUT_PHASE = "Verify Rollout Phase"
CHECK_ROLLOUT_HEALTH = "Check Rollout Health"
REMOVE_PHASE_1 = "Remove Phase 1"
PHASE_1 = "phase1"


def plan(release: Release) -> ModelPlan:
    """The rolling upgrade of one environment: in place in Development, in two phases in Production."""
    return _in_phases(release) if release.production else _in_place(release)


def _in_place(release: Release) -> ModelPlan:
    app = release.app
    stage = (
        release.setup((CREATE_SERVICE, release.apply([app.service])))
        .then((CREATE_DEPLOYMENT, release.apply([release.deployment()])), linked=True)
        .then((VERIFY_DEPLOYMENT, release.verify(app.deployment_name, CREATE_DEPLOYMENT)), linked=True)
        .then((CHECK_HEALTH, release.health_check()), linked=True)
    )
    return ModelPlan(
        stage, deployment_link_input(release, CREATE_DEPLOYMENT), restore_deployment(release), dict(DEPLOYMENT_INPUTS)
    )


def _in_phases(release: Release) -> ModelPlan:
    app = release.app
    name = f"{app.deployment_name}-{PHASE_1}"
    phase_1 = release.deployment(name, 1, **{TRACK_LABEL: PHASE_1})
    stage = (
        release.setup((CREATE_SERVICE, release.apply([app.service])))
        .then(create_deployment(release), linked=True)
        .then((DEPLOY_PHASE_1, release.apply([phase_1])), linked=True)
        .then((VERIFY_PHASE_1, release.verify(name, DEPLOY_PHASE_1)), linked=True)
        .then((CHECK_PHASE_1_HEALTH, release.health_check()), linked=True)
        .then((DEPLOY_ROLLOUT_PHASE, release.apply([release.deployment()])), linked=True)
        .then((FINISH_ROLLOUT_PHASE, release.delete([phase_1])), linked=True)
        .then((VERIFY_ROLLOUT_PHASE, release.verify(app.deployment_name, DEPLOY_ROLLOUT_PHASE)), linked=True)
        .then((CHECK_ROLLOUT_HEALTH, release.health_check()), linked=True)
    )
    rollback = restore_deployment(release, (REMOVE_PHASE_1, release.delete([phase_1])))
    return ModelPlan(
        stage,
        deployment_link_input(release, DEPLOY_ROLLOUT_PHASE, CREATE_DEPLOYMENT),
        rollback,
        dict(DEPLOYMENT_INPUTS),
    )
