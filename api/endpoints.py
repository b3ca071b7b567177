"""The endpoints API: the clusters tasks deploy to. Credentials go in, never come out; each endpoint shows its last
probe (whether it answered with its credentials: what a release whose rollback uses it is checked against)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import allow, principal, project_for_new, require_visible, visible_project
from api.serialize import timestamp
from api.services import json_object, services
from orchestrator.endpoints import GIT, SMTP, SSH, Endpoint, Probe, changed_body, endpoint_from_body
from orchestrator.errors import Forbidden
from orchestrator.policy import Action
from orchestrator.transaction import new_id

blueprint = Blueprint("endpoints", __name__)


def endpoint_view(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint as the API shows it: which credentials it has, never what they are."""
    return {
        "id": endpoint.id,
        "name": endpoint.name,
        "project": endpoint.project,
        "type": endpoint.type,
        "url": endpoint.url,
        "insecure": endpoint.insecure,
        "restricted": endpoint.restricted,
        "hasToken": bool(endpoint.token),
        "hasCaData": bool(endpoint.ca_data),
        "hasKubeconfig": bool(endpoint.kubeconfig),
        **_smtp_view(endpoint),
        **({"knownHosts": endpoint.known_hosts} if endpoint.type == SSH else {}),
        **_git_view(endpoint),
        "createdAt": timestamp(endpoint.created_at),
        "updatedAt": timestamp(endpoint.updated_at),
        "probe": probe_view(endpoint.probe),
    }


def _git_view(endpoint: Endpoint) -> dict[str, Any]:
    """A git endpoint's branch and whether it logs in, never the password."""
    if endpoint.type != GIT:
        return {}
    return {"branch": endpoint.branch, "username": endpoint.username, "hasPassword": bool(endpoint.password)}


def _smtp_view(endpoint: Endpoint) -> dict[str, Any]:
    """An smtp endpoint's own fields: its sender and whether it logs in, never the password."""
    if endpoint.type != SMTP:
        return {}
    return {
        "from": endpoint.sender,
        "starttls": endpoint.starttls,
        "username": endpoint.username,
        "hasPassword": bool(endpoint.password),
    }


def probe_view(probe: Probe | None) -> dict[str, Any] | None:
    """An endpoint's last probe (None: never probed, or not since its URL or credentials changed)."""
    if probe is None:
        return None
    return {"at": timestamp(probe.at), "ok": probe.ok, "message": probe.message}


@blueprint.post("/endpoints")
@allow(Action.EDIT)
def create() -> tuple[Response, int]:
    endpoint = endpoint_from_body(json_object(), new_id(), project_for_new(None))
    project_for_new(endpoint.project)
    _require_admin_for(endpoint, "create")
    endpoint = services().store.add_endpoint(endpoint)
    return jsonify(endpoint_view(endpoint)), 201


@blueprint.get("/endpoints")
@allow(Action.READ)
def list_() -> Response:
    found = services().store.list_endpoints(visible_project(request.args.get("project")))
    return jsonify([endpoint_view(item) for item in found])


@blueprint.get("/endpoints/<endpoint_id>")
@allow(Action.READ)
def get(endpoint_id: str) -> Response:
    return jsonify(endpoint_view(_visible_endpoint(endpoint_id)))


@blueprint.patch("/endpoints/<endpoint_id>")
@allow(Action.EDIT)
def patch(endpoint_id: str) -> Response:
    """Change some fields; a credential set to null is removed."""
    current = _visible_endpoint(endpoint_id)
    changed = endpoint_from_body(changed_body(current, json_object()), endpoint_id)
    project_for_new(changed.project)
    _require_admin_for(current, "change")
    _require_admin_for(changed, "change")
    return jsonify(endpoint_view(services().store.replace_endpoint(changed)))


@blueprint.delete("/endpoints/<endpoint_id>")
@allow(Action.EDIT)
def delete(endpoint_id: str) -> tuple[str, int]:
    _require_admin_for(_visible_endpoint(endpoint_id), "delete")
    services().store.delete_endpoint(endpoint_id)
    return "", 204


def _require_admin_for(endpoint: Endpoint, change: str) -> None:
    """403 unless the caller is an admin, for an endpoint that is (or is to be) restricted: marking one, or changing
    one that is, would otherwise let anyone who may edit undo what an admin restricted."""
    if endpoint.restricted and not principal().is_admin:
        raise Forbidden(f"only an admin may {change} a restricted endpoint")


def _visible_endpoint(endpoint_id: str) -> Endpoint:
    """An endpoint of a project the caller sees; 404, like a missing one, otherwise."""
    endpoint = services().store.get_endpoint(endpoint_id)
    require_visible(endpoint.project, f"endpoint with id '{endpoint_id}'")
    return endpoint
