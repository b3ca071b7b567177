"""The store, the same stories on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest

from orchestrator.document import load_pipeline
from orchestrator.errors import Conflict, NotFound
from orchestrator.execution import PipelineRecord, Relation
from orchestrator.inputs import BoundTask
from orchestrator.outbox import Schedule
from orchestrator.pipeline import Pipeline
from orchestrator.schema import now
from orchestrator.status import ExecutionStatus, RunStatus
from orchestrator.store import Store

# Queued runs due and sent at once.
NOW = Schedule(now(), now())


def pipeline(name: str, project: str = "shop", rollback: str | None = None, **fields: Any) -> Pipeline:
    stage: dict[str, Any] = {
        "taskOrder": ["Build", "Test,Lint"],
        "tasks": {task: {"type": "Condition", "input": {"condition": "true"}} for task in ("Build", "Test", "Lint")},
    }
    if rollback:
        stage["rollback"] = {"pipeline": rollback}
    document = {"name": name, "project": project, "enabled": True, "stageOrder": ["CI"], "stages": {"CI": stage}}
    return load_pipeline(document | fields, targets=None)


def start(store: Store, record: PipelineRecord, given: dict[str, Any] | None = None) -> str:
    with store.transaction() as tx:
        return tx.insert_execution(record, given or {}, "", requested_by="tester").id


def test_pipelines_are_saved_found_replaced_and_named_once_per_project(store: Store) -> None:
    # Given a saved pipeline
    saved = store.add_pipeline(pipeline("Build"))

    # Then it reads back equal, by id, by project and name, and in lists
    assert store.get_pipeline(saved.id).pipeline == pipeline("Build")
    assert store.find_pipeline("shop", "Build") == saved
    assert [record.name for record in store.list_pipelines(project="shop")] == ["Build"]
    assert store.find_pipeline("other", "Build") is None
    assert saved.created_at.tzinfo is not None and saved.created_at.utcoffset() == UTC.utcoffset(None)
    # ... a second pipeline of that name in that project is refused, but another project may have one
    with pytest.raises(Conflict, match="already has a pipeline named 'Build'"):
        store.add_pipeline(pipeline("Build"))
    store.add_pipeline(pipeline("Build", project="other"))
    # ... and replacing keeps the id and changes the content
    replaced = store.replace_pipeline(saved.id, pipeline("Build", concurrency=3))
    assert (replaced.id, replaced.pipeline.concurrency) == (saved.id, 3)
    with pytest.raises(NotFound):
        store.replace_pipeline("no-such-id", pipeline("Build"))


def test_a_pipeline_named_as_a_rollback_cannot_be_deleted_while_linked(store: Store) -> None:
    # Given a rollback pipeline and a pipeline linking to it
    undo = store.add_pipeline(pipeline("Undo"))
    deploy = store.add_pipeline(pipeline("Deploy", rollback="Undo"))

    # When the rollback pipeline is deleted, Then that is refused, naming the linking pipeline
    with pytest.raises(Conflict, match="'Deploy'"):
        store.delete_pipeline(undo.id)
    # ... and once the link is gone, both can go
    store.delete_pipeline(deploy.id)
    store.delete_pipeline(undo.id)
    assert store.list_pipelines() == []
    with pytest.raises(NotFound):
        store.delete_pipeline(undo.id)


def test_executions_are_numbered_per_pipeline_with_a_task_run_per_task(store: Store) -> None:
    # Given two pipelines
    build = store.add_pipeline(pipeline("Build"))
    other = store.add_pipeline(pipeline("Other"))

    # When executions are recorded
    first, second, elsewhere = start(store, build), start(store, build), start(store, other)

    # Then each pipeline counts its own, and every task has a run waiting, in run order
    assert [store.get_execution(item).index for item in (first, second, elsewhere)] == [1, 2, 1]
    runs = store.task_runs(first)
    assert [(run.stage, run.name, run.status) for run in runs] == [
        ("CI", "Build", RunStatus.NOT_STARTED),
        ("CI", "Test", RunStatus.NOT_STARTED),
        ("CI", "Lint", RunStatus.NOT_STARTED),
    ]


def test_executions_beyond_the_concurrency_are_queued_then_promoted_oldest_first(store: Store) -> None:
    # Given a pipeline running two at a time, with two running
    record = store.add_pipeline(pipeline("Two", concurrency=2))
    running = [start(store, record), start(store, record)]

    # When two more are recorded
    waiting = [start(store, record), start(store, record)]

    # Then they are QUEUED, and nothing is promoted while two run
    assert [store.get_execution(item).status for item in waiting] == [ExecutionStatus.QUEUED] * 2
    with store.transaction() as tx:
        assert tx.promote_queued(record.id) == []
    # ... and when one ends, the oldest waiting one is promoted
    with store.transaction() as tx:
        assert tx.transition(running[0], ExecutionStatus.COMPLETED)
        assert tx.promote_queued(record.id) == [waiting[0]]
    assert store.get_execution(waiting[0]).status is ExecutionStatus.RUNNING
    assert store.get_execution(waiting[1]).status is ExecutionStatus.QUEUED


def test_a_task_run_is_claimed_once_per_attempt(store: Store) -> None:
    # Given a queued task run
    execution_id = start(store, store.add_pipeline(pipeline("Claim")))
    given = BoundTask({"url": "https://example.com"}, {"input.env": "prod"})
    with store.transaction() as tx:
        (queued,) = tx.queue_task_runs(execution_id, [(("CI", "Build"), given)], NOW)
        assert tx.queue_task_runs(execution_id, [(("CI", "Build"), given)], NOW) == []

    # When its message is delivered twice, and a message for another attempt arrives
    claimed = store.claim(queued.id, queued.attempt, "worker-1", 60)
    again = store.claim(queued.id, queued.attempt, "worker-2", 60)
    stale = store.claim(queued.id, queued.attempt + 1, "worker-3", 60)

    # Then only the first delivery gets it, with what it was given when queued, and holds its lease
    assert claimed is not None and again is None and stale is None
    assert claimed.status is RunStatus.RUNNING and claimed.started_at is not None
    assert (claimed.input, claimed.bindings) == ({"url": "https://example.com"}, {"input.env": "prod"})
    assert claimed.worker == "worker-1" and claimed.lease_expires_at is not None
    # ... a claim retried by the same holder (its first answer was lost) finds its own claim
    assert store.claim(queued.id, queued.attempt, "worker-1", 60) == claimed
    # ... and once put back for its next attempt, that attempt claims it, with the state the last one kept
    with store.transaction() as tx:
        requeued = tx.requeue_task_run(claimed, {"iteration": 1}, "poll 1 of 3", NOW)
    assert requeued is not None and requeued.attempt == claimed.attempt + 1
    reclaimed = store.claim(claimed.id, requeued.attempt, "worker-2", 60)
    assert reclaimed is not None and reclaimed.state == {"iteration": 1} and reclaimed.input == claimed.input


def test_a_task_run_of_an_execution_that_ended_is_not_claimed_but_canceled(store: Store) -> None:
    # Given a queued task run whose execution then failed
    execution_id = start(store, store.add_pipeline(pipeline("Ended")))
    with store.transaction() as tx:
        (queued,) = tx.queue_task_runs(execution_id, [(("CI", "Build"), BoundTask({}))], NOW)
        tx.transition(execution_id, ExecutionStatus.FAILED, "a sibling failed")

    # When its message arrives
    claimed = store.claim(queued.id, queued.attempt, "worker-1", 60)

    # Then no worker runs it, and the execution's end already CANCELED it, saying why
    assert claimed is None and not store.cancel_abandoned(queued.id, queued.attempt)
    run = store.get_task_run(queued.id)
    assert run.status is RunStatus.CANCELED and "the execution is FAILED" in run.status_message


def test_status_changes_follow_the_transition_table(store: Store) -> None:
    # Given a FAILED execution and a finished task run
    execution_id = start(store, store.add_pipeline(pipeline("Table")))
    with store.transaction() as tx:
        run = tx.queue_task_runs(execution_id, [(("CI", "Build"), BoundTask({"in": 1}))], NOW)[0]
    claimed = store.claim(run.id, run.attempt, "worker-1", 60)
    assert claimed is not None
    with store.transaction() as tx:
        assert tx.finish_task_run(claimed, RunStatus.COMPLETED, "", {"ok": True})
        assert tx.transition(execution_id, ExecutionStatus.FAILED, "it broke")

    # When something tries to move them on again
    with store.transaction() as tx:
        moved_execution = tx.transition(execution_id, ExecutionStatus.RUNNING)
        moved_run = tx.finish_task_run(claimed, RunStatus.FAILED, "late")

    # Then nothing changes
    assert not moved_execution and not moved_run
    execution = store.get_execution(execution_id)
    assert (execution.status, execution.status_message) == (ExecutionStatus.FAILED, "it broke")
    assert execution.finished_at is not None
    finished = store.get_task_run(run.id)
    assert (finished.status, finished.output, finished.input) == (RunStatus.COMPLETED, {"ok": True}, {"in": 1})


def test_executions_are_listed_newest_first_and_filtered(store: Store) -> None:
    # Given executions of two pipelines, one of them a rollback of another
    build = store.add_pipeline(pipeline("Build"))
    undo = store.add_pipeline(pipeline("Undo"))
    first = start(store, build)
    second = start(store, build)
    with store.transaction() as tx:
        tx.transition(first, ExecutionStatus.FAILED)
        given = {"why": "ünïcode ✓"}
        rollback = tx.insert_execution(
            undo, given, "undo", requested_by="x", parent_id=first, relation=Relation.ROLLBACK
        ).id

    # Then lists are newest first and filter by pipeline name or id, status and rollback
    assert [item.id for item in store.list_executions()] == [rollback, second, first]
    assert [item.id for item in store.list_executions(pipeline="Build")] == [second, first]
    assert [item.id for item in store.list_executions(pipeline=build.id)] == [second, first]
    assert [item.id for item in store.list_executions(status=[ExecutionStatus.FAILED])] == [first]
    assert [item.id for item in store.list_executions(rollback=True)] == [rollback]
    assert [item.id for item in store.list_executions(rollback=False)] == [second, first]
    assert [item.id for item in store.list_executions(limit=1, offset=1)] == [second]
    recorded = store.get_execution(rollback)
    assert (recorded.rollback, recorded.parent_id, recorded.input) == (True, first, {"why": "ünïcode ✓"})
    assert [child.id for child in store.children([first, second])[first]] == [rollback]
    assert store.children([second]) == {}


def test_deleting_a_pipeline_keeps_its_executions(store: Store) -> None:
    # Given a pipeline with an execution
    record = store.add_pipeline(pipeline("Gone"))
    execution_id = start(store, record)

    # When the pipeline is deleted
    store.delete_pipeline(record.id)

    # Then the execution is still there, with the pipeline it ran
    execution = store.get_execution(execution_id)
    assert (execution.pipeline_id, execution.pipeline_name) == (None, "Gone")
    assert store.load_state(execution_id).pipeline.name == "Gone"
    with pytest.raises(NotFound):
        store.get_execution("no-such-execution")


def test_a_pipeline_named_as_a_rollback_cannot_be_renamed_or_moved_while_linked(store: Store) -> None:
    # Given a rollback pipeline and a pipeline linking to it
    undo = store.add_pipeline(pipeline("Undo"))
    store.add_pipeline(pipeline("Deploy", rollback="Undo"))

    # When the rollback pipeline is renamed, or moved to another project
    # Then each is refused, naming the linking pipeline, and nothing changed
    for renamed in (pipeline("Undo-2"), pipeline("Undo", project="elsewhere")):
        with pytest.raises(Conflict, match="rollback of 'Deploy' and cannot be renamed or moved"):
            store.replace_pipeline(undo.id, renamed)
    assert store.get_pipeline(undo.id).pipeline == pipeline("Undo")
    # ... while a change that keeps its name is fine, and created/updated times tell the story
    changed = store.replace_pipeline(undo.id, pipeline("Undo", concurrency=2))
    assert changed.pipeline.concurrency == 2 and changed.updated_at > changed.created_at == undo.created_at
    assert undo.created_at == undo.updated_at
