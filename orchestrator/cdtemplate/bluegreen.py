"""Blue-green: each release is a Deployment of its own beside the live one; the Service switches to it once it is
verified, and the old one is removed once the switch is verified.

Colours cannot be computed with pipeline expressions, so releases are named by execution: release `r<N>` of
execution #N is the Deployment `<deployment>-r<N>`, whose pods (and selector) carry the label
`rollway-release: r<N>`. The Service selects the live release by that label; `rollway-release: none` means no
release is live (the Service was just created). A preview Service `<service>-preview` always selects the
release being made, so it is health-checked before it takes any traffic. Each environment's stage:

    [Create Namespace]
      -> Create Service (CREATE selecting `none`, continueOnConflict: an existing Service is left as it is),
         Create Preview Service (APPLY <service>-preview selecting r<N>), [Create Secret], [Create Resources]
      -> Read Service (GET the Service: the live release is its spec.selector.rollway-release)
      -> Create Deployment (APPLY <deployment>-r<N>) -> Verify Deployment (VERIFY)
      -> Check Preview Health (POLL through <service>-preview)
      -> Switch Traffic (APPLY the Service selecting r<N>) -> Check Health (POLL through the Service)
      -> Remove Old Release (DELETE <deployment>-<live release>, when there was one; ignoreFailure: the new
         release is live and verified by then, so a failed clean-up does not roll it back)

The rollback pipelines take as input:

    release          "r${executionIndex}": the release the failed execution made
    previousRelease  Read Service's spec.selector.rollway-release: the release that was live before ("none":
                     none was, a first release; "": the execution failed before reading it)

and run, in one stage `Rollback`:

    Switch Traffic Back    APPLY the Service selecting previousRelease   if previousRelease is neither '' nor 'none'
    Verify Rollback        VERIFY <deployment>-<previousRelease>          same condition
    Remove Failed Release  DELETE <deployment>-<release>                  if release != ''
    Remove Application     DELETE the Service, the preview Service, the Secrets and other objects of the YAML
                                                                          if previousRelease == 'none'
"""

from __future__ import annotations

from orchestrator.cdtemplate.manifest import RELEASE_LABEL, dump, preview_service, reference, with_selector
from orchestrator.cdtemplate.tasks import (
    CHECK_HEALTH,
    CREATE_SERVICE,
    REMOVE_APPLICATION,
    VERIFY_ROLLBACK,
    Bound,
    ModelPlan,
    Release,
    TaskList,
    given,
)

CREATE_PREVIEW_SERVICE = "Create Preview Service"
READ_SERVICE = "Read Service"
CREATE_DEPLOYMENT = "Create Deployment"
VERIFY_DEPLOYMENT = "Verify Deployment"
CHECK_PREVIEW_HEALTH = "Check Preview Health"
SWITCH_TRAFFIC = "Switch Traffic"
REMOVE_OLD_RELEASE = "Remove Old Release"
SWITCH_TRAFFIC_BACK = "Switch Traffic Back"
REMOVE_FAILED_RELEASE = "Remove Failed Release"
THIS_RELEASE = "r${executionIndex}"
NO_RELEASE = "none"
INPUTS = {
    "release": "the release the failed execution made (r<execution index>)",
    "previousRelease": "the release live before it ('none': none was, a first release; '': not known)",
}


def _known(value: str) -> str:
    """A preCondition: a release value names a release."""
    return f"{value} != '' and {value} != '{NO_RELEASE}'"


def plan(release: Release) -> ModelPlan:
    """The blue-green release of one environment."""
    app = release.app
    live = release.output(READ_SERVICE, f"response.services.{app.service_name}.spec.selector.{RELEASE_LABEL}")
    deployment = f"{app.deployment_name}-{THIS_RELEASE}"
    preview = preview_service(app.service, f"{app.service_name}-preview", {RELEASE_LABEL: THIS_RELEASE})
    stage = (
        release.setup(
            (CREATE_SERVICE, _create_service(release)),
            (CREATE_PREVIEW_SERVICE, release.apply([preview])),
        )
        .then((READ_SERVICE, release.k8s("GET", yaml=dump([reference(app.service)]))))
        .then((CREATE_DEPLOYMENT, release.apply([_release_deployment(release, THIS_RELEASE)])), linked=True)
        .then((VERIFY_DEPLOYMENT, release.verify(deployment, CREATE_DEPLOYMENT)), linked=True)
        .then((CHECK_PREVIEW_HEALTH, release.health_check(f"{app.service_name}-preview")), linked=True)
        .then((SWITCH_TRAFFIC, _switch(release, THIS_RELEASE)), linked=True)
        .then((CHECK_HEALTH, release.health_check()), linked=True)
        .then((REMOVE_OLD_RELEASE, _removal(release, live) | {"preCondition": _known(live), "ignoreFailure": True}))
    )
    link_input = {"release": Bound(THIS_RELEASE), "previousRelease": Bound(live, READ_SERVICE)}
    return ModelPlan(stage, link_input, _rollback(release, preview), dict(INPUTS))


def _create_service(release: Release) -> dict[str, object]:
    service = with_selector(release.app.service, {RELEASE_LABEL: NO_RELEASE})
    return release.k8s("CREATE", yaml=dump([service]), continueOnConflict=True)


def _release_deployment(release: Release, name: str) -> dict[str, object]:
    return release.deployment(f"{release.app.deployment_name}-{name}", None, **{RELEASE_LABEL: name})


def _switch(release: Release, name: str) -> dict[str, object]:
    return release.apply([with_selector(release.app.service, {RELEASE_LABEL: name})])


def _removal(release: Release, name: str) -> dict[str, object]:
    return release.delete([_release_deployment(release, name)])


def _rollback(release: Release, preview: dict[str, object]) -> TaskList:
    previous, failed = "${input.previousRelease}", "${input.release}"
    back = _known(previous)
    first = f"{previous} == '{NO_RELEASE}'"
    return (
        TaskList()
        .then((SWITCH_TRAFFIC_BACK, _switch(release, previous) | {"preCondition": back}))
        .then((VERIFY_ROLLBACK, release.verify(f"{release.app.deployment_name}-{previous}") | {"preCondition": back}))
        .then((REMOVE_FAILED_RELEASE, _removal(release, failed) | {"preCondition": given("release")}))
        .then((REMOVE_APPLICATION, release.removal(preview) | {"preCondition": first}))
    )
