"""The smart CD template API: what a Kubernetes YAML holds, and generating a release pipeline with its rollbacks.

Generating saves the three pipelines all together or none: a request with any problem (including a name
already taken) leaves nothing behind. The values of the YAML's Secrets are saved as SECRET variables of the
project (`cdtemplate/secrets.py`) just before the pipelines, which refer to them; that needs ROLLWAY_SECRET_KEY.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from api.auth import allow, project_in
from api.services import json_object, services
from api.variables import variables
from orchestrator.cdtemplate import (
    EndpointUrl,
    GeneratedPipelines,
    as_variables,
    generate,
    load_generated,
    process,
    read_request,
)
from orchestrator.errors import BadRequest, Conflict, Problem
from orchestrator.execution import PipelineRecord
from orchestrator.pipeline import Pipeline
from orchestrator.policy import Action
from orchestrator.store import Store
from orchestrator.transaction import new_id

blueprint = Blueprint("templates", __name__)


@blueprint.post("/templates/cd/process")
@allow(Action.READ)
def process_yaml() -> Response:
    """The namespaces, services (ports, selector, the deployments selected), deployments and secrets of a YAML."""
    body = json_object(frozenset({"kubernetesYaml"}))
    return jsonify(process(body.get("kubernetesYaml")))


@blueprint.post("/templates/cd")
@allow(Action.EDIT)
def create() -> tuple[Response, int]:
    """Generate and save `<Name>` (disabled) and its rollback pipelines (enabled)."""
    store = services().store
    body = json_object()
    # The project first: the endpoints the request names are looked up in it.
    body["project"] = project_in(body)
    template = read_request(body, _endpoint_url(store))
    generated = generate(template)
    pipelines = load_generated(generated, store.endpoint_exists, variables().exists)
    _refuse_taken(store, pipelines)
    _save_secrets(template.project, generated)
    *rollbacks, main = store.add_pipelines(pipelines)
    answer = {"pipeline": _summary(main), "rollbackPipelines": [_summary(record) for record in rollbacks]}
    return jsonify(answer), 201


def _save_secrets(project: str, generated: GeneratedPipelines) -> None:
    """Save the YAML's Secret values as SECRET variables (a second run of the template gives them new values)."""
    if not generated.secrets:
        return
    try:
        variables().put_secrets(project, as_variables(generated.secrets), new_id)
    except BadRequest as error:
        raise BadRequest(
            "the Kubernetes YAML holds Secret data, which Rollway keeps as SECRET variables: "
            "set ROLLWAY_SECRET_KEY on the Rollway server to seal them",
            [Problem("kubernetesYaml", "holds Secret data, and ROLLWAY_SECRET_KEY is not set to seal it")],
        ) from error


def _endpoint_url(store: Store) -> EndpointUrl:
    def url(project: str, name: str) -> str | None:
        return next((item.url for item in store.list_endpoints(project) if item.name == name), None)

    return url


def _refuse_taken(store: Store, pipelines: list[Pipeline]) -> None:
    """Name every pipeline name already taken (the store refuses them too, in one transaction, but less precisely)."""
    taken = [pipeline.name for pipeline in pipelines if store.find_pipeline(pipeline.project, pipeline.name)]
    if taken:
        names = ", ".join(f"'{name}'" for name in taken)
        raise Conflict(f"project '{pipelines[0].project}' already has pipeline(s) named {names}; nothing was created")


def _summary(record: PipelineRecord) -> dict[str, Any]:
    return {"id": record.id, "name": record.name, "project": record.project, "enabled": record.pipeline.enabled}
