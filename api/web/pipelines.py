"""The Pipelines pages: the list with enable and disable, one pipeline drawn as Code Stream draws it (stages and
tasks in order, a rollback icon where a rollback is linked), its run form generated from `_inputMeta`, and its YAML.

Like every page they act through the API's own functions, so they check, refuse and audit exactly as the API does.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api import pipelines as api_pipelines
from api.auth import allow, visible_project
from api.services import services
from api.web.blueprint import blueprint
from orchestrator.errors import RollwayError
from orchestrator.pipeline import Pipeline, RollbackLink
from orchestrator.policy import Action

# The run form names each input field `input.<name>`, apart from its own fields (csrf, comments, force).
INPUT_PREFIX = "input."
# How many of the newest executions the list looks through for each pipeline's last run.
RECENT_RUNS = 500


@blueprint.get("/pipelines")
@allow(Action.READ)
def pipelines() -> str:
    rows = api_pipelines.list_().get_json()
    last: dict[str, Any] = {}
    for execution in services().store.list_executions(project=visible_project(None), limit=RECENT_RUNS):
        if execution.pipeline_id is not None:
            last.setdefault(execution.pipeline_id, execution)
    for row in rows:
        row["last"] = last.get(row["id"])
    return render_template("pipelines.html", rows=sorted(rows, key=lambda row: (row["project"], row["name"])))


@blueprint.post("/pipelines/<pipeline_id>/<state>")
@allow(Action.EDIT)
def switch(pipeline_id: str, state: str) -> Response:
    """Enable or disable a pipeline; back to the page it was done from."""
    back = _back(pipeline_id)
    if state not in ("enable", "disable"):
        flash(f"there is no action '{state}'; expected enable or disable", "error")
        return redirect(back)
    try:
        current = api_pipelines.visible_pipeline(pipeline_id)
        record = api_pipelines.change_pipeline(current, {"enabled": state == "enable"})
    except RollwayError as error:
        flash(error.message, "error")
        return redirect(back)
    flash(f"pipeline '{record.name}' is now {'enabled' if record.pipeline.enabled else 'disabled'}", "info")
    return redirect(back)


def _back(pipeline_id: str) -> str:
    return (
        url_for("web.pipeline", pipeline_id=pipeline_id)
        if request.form.get("from") == "pipeline"
        else url_for("web.pipelines")
    )


@blueprint.get("/pipelines/<pipeline_id>")
@allow(Action.READ)
def pipeline(pipeline_id: str) -> str:
    record = api_pipelines.visible_pipeline(pipeline_id)
    store = services().store
    linked = {link.pipeline for link in rollback_links(record.pipeline)}
    found = {name: store.find_pipeline(record.project, name) for name in linked}
    return render_template(
        "pipeline.html",
        pipeline=api_pipelines.get(pipeline_id).get_json(),
        drawing=drawing(record.pipeline, {name: item.id for name, item in found.items() if item is not None}),
        form=run_form(record.pipeline),
    )


@blueprint.get("/pipelines/<pipeline_id>/export.yaml")
@allow(Action.READ)
def pipeline_yaml(pipeline_id: str) -> Response:
    """The pipeline's YAML as a download (the API's export: secrets stay out of it)."""
    return api_pipelines.export(pipeline_id)


@blueprint.post("/pipelines/<pipeline_id>/run")
@allow(Action.RUN)
def run(pipeline_id: str) -> Response:
    record = api_pipelines.visible_pipeline(pipeline_id)
    given = submitted_input(record.pipeline, request.form)
    try:
        execution = api_pipelines.start_run(
            record, given, request.form.get("comments", ""), force=request.form.get("force") == "true"
        )
    except RollwayError as error:
        flash(error.message, "error")
        for problem in error.details:
            flash(f"{problem.path}: {problem.message}", "error")
        return redirect(url_for("web.pipeline", pipeline_id=pipeline_id) + "#run")
    flash(f"{record.name} #{execution.index} started", "info")
    return redirect(url_for("web.execution", execution_id=execution.id))


def rollback_links(pipeline: Pipeline) -> list[RollbackLink]:
    """Every rollback linked to a stage or a task of `pipeline`."""
    stages = [stage.rollback for stage in pipeline.stages.values() if stage.rollback is not None]
    return stages + [task.rollback for _, _, task, _ in pipeline.ordered_tasks() if task.rollback is not None]


def drawing(pipeline: Pipeline, rollback_ids: dict[str, str]) -> list[dict[str, Any]]:
    """The pipeline's stages in order, each with its task groups (a group's tasks run side by side) and the
    rollback linked to the stage or task, with the id of that rollback pipeline's page when it exists."""

    def link(found: RollbackLink | None) -> dict[str, Any] | None:
        if found is None:
            return None
        return {"pipeline": found.pipeline, "id": rollback_ids.get(found.pipeline), "input": dict(found.input)}

    stages = []
    for name in pipeline.stage_order:
        stage = pipeline.stages[name]
        groups = [
            [
                {"name": task, "type": stage.tasks[task].type, "rollback": link(stage.tasks[task].rollback)}
                for task in group
            ]
            for group in stage.groups
        ]
        stages.append({"name": name, "groups": groups, "rollback": link(stage.rollback)})
    return stages


def run_form(pipeline: Pipeline) -> list[dict[str, Any]]:
    """One field per input: its default as text, whether `_inputMeta` marks it mandatory, and its description."""
    fields = []
    for name, default in pipeline.input.items():
        meta = pipeline.input_meta.get(name)
        fields.append(
            {
                "name": name,
                "field": INPUT_PREFIX + name,
                "value": _text(default),
                "mandatory": bool(meta and meta.mandatory),
                "description": meta.description if meta else "",
            }
        )
    return fields


def submitted_input(pipeline: Pipeline, form: Any) -> dict[str, Any]:
    """The run form's inputs: text as typed; a field left at a non-text default keeps the default's own type."""
    given: dict[str, Any] = {}
    for name, default in pipeline.input.items():
        field = INPUT_PREFIX + name
        if field not in form:
            continue
        typed = form[field]
        given[name] = default if not isinstance(default, str) and typed == _text(default) else typed
    return given


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
