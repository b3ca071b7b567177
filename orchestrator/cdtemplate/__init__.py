"""The smart CD template: from an application's Kubernetes YAML, a deployment pipeline and its rollback pipelines.

`process(yaml)` says what a YAML holds; `read_request(body, endpoint_url)` checks a template request;
`generate(request)` makes the pipeline documents, and the SECRET variables that hold the values of the YAML's
Secrets (`secrets.py`); `load_generated(...)` validates them against each other, as they are saved together. All
of it is pure: the caller looks endpoints up and saves the variables and the pipelines.

The deployment models and the rollback pipelines they generate (with their inputs) are described in
`rolling.py`, `bluegreen.py` and `canary.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.cdtemplate import bluegreen, canary, rolling
from orchestrator.cdtemplate.manifest import describe, read_manifest
from orchestrator.cdtemplate.pipelines import main_document, rollback_document
from orchestrator.cdtemplate.request import (
    BLUE_GREEN,
    CANARY,
    MODELS,
    ROLLING_UPGRADE,
    EndpointUrl,
    TemplateRequest,
    read_request,
    request_body,
)
from orchestrator.cdtemplate.secrets import SecretValue, as_variables, extract
from orchestrator.cdtemplate.tasks import ModelPlan, Release
from orchestrator.document import RollbackTarget, load_pipeline
from orchestrator.gaps import EndpointLookup, VariableLookup
from orchestrator.pipeline import Pipeline

Doc = dict[str, Any]

__all__ = [
    "MODELS",
    "EndpointUrl",
    "GeneratedPipelines",
    "SecretValue",
    "TemplateRequest",
    "as_variables",
    "generate",
    "load_generated",
    "process",
    "read_request",
    "request_body",
]

PLANS: dict[str, Callable[[Release], ModelPlan]] = {
    ROLLING_UPGRADE: rolling.plan,
    BLUE_GREEN: bluegreen.plan,
    CANARY: canary.plan,
}


@dataclass(frozen=True)
class GeneratedPipelines:
    """The documents of a template: the main pipeline and, unless rollback is off, one rollback per environment;
    and the SECRET variables its `${var...}` bindings name (the values of the YAML's Secrets)."""

    main: Doc
    dev_rollback: Doc | None
    prod_rollback: Doc | None
    secrets: tuple[SecretValue, ...] = field(default=())

    @property
    def rollbacks(self) -> list[Doc]:
        return [doc for doc in (self.dev_rollback, self.prod_rollback) if doc is not None]


def process(kubernetes_yaml: object) -> dict[str, Any]:
    """What a Kubernetes YAML holds: namespaces, services, deployments, secrets (and other objects), by name.

    Raises BadRequest when the YAML cannot be read.
    """
    return describe(read_manifest(kubernetes_yaml))


def generate(request: TemplateRequest) -> GeneratedPipelines:
    """The pipeline documents of a checked request, and the SECRET variables they refer to."""
    app, secrets = extract(request.app, request.name)
    request = replace(request, app=app)
    plans = [
        (release, PLANS[request.model](release))
        for release in (Release(request.app, environment, request.health) for environment in request.environments)
    ]
    main = main_document(request, plans)
    if not request.rollback:
        return GeneratedPipelines(main, None, None, secrets)
    dev, prod = (rollback_document(request, release, plan) for release, plan in plans)
    return GeneratedPipelines(main, dev, prod, secrets)


def load_generated(
    generated: GeneratedPipelines, endpoints: EndpointLookup | None, variables: VariableLookup | None = None
) -> list[Pipeline]:
    """Validate the documents, rollback pipelines first: the main one's links name them, and only them.

    `${var...}` bindings may name the variables the template makes, and those `variables` finds (by default no
    others). Returns the pipelines in the order they are saved; raises PipelineInvalid on a problem.
    """
    made = frozenset(item.variable for item in generated.secrets)

    def known(project: str, name: str) -> bool:
        return name in made or (variables is not None and variables(project, name))

    rollbacks = [
        load_pipeline(document, _no_targets, endpoints=endpoints, variables=known) for document in generated.rollbacks
    ]
    targets = {
        pipeline.name: RollbackTarget(pipeline.name, frozenset(pipeline.input), frozenset(pipeline.mandatory_inputs()))
        for pipeline in rollbacks
    }
    main = load_pipeline(generated.main, lambda _project, name: targets.get(name), endpoints=endpoints, variables=known)
    return [*rollbacks, main]


def _no_targets(_project: str, _name: str) -> RollbackTarget | None:
    return None
