"""The engine on each store backend (SQLite and PostgreSQL), with task runs run in-process by the inline
dispatcher and the real executors, against a local HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from orchestrator.document import load_pipeline
from orchestrator.engine import Engine
from orchestrator.errors import InputInvalid, InvalidTransition, PipelineDisabled, RollbackNotReady
from orchestrator.execution import Execution, PipelineRecord, Relation
from orchestrator.outcome import Lost
from orchestrator.status import ExecutionStatus, RunStatus
from orchestrator.store import Store
from workers.dispatcher import InlineDispatcher
from workers.executors import build_executors
from workers.heartbeat import Heartbeat
from workers.http import HttpClient
from workers.runner import TaskRunner

Doc = dict[str, Any]


@dataclass
class Harness:
    """An engine whose dispatched task runs run when `drain()` is called."""

    store: Store
    engine: Engine
    dispatcher: InlineDispatcher
    runner: TaskRunner

    def save(self, document: Doc) -> PipelineRecord:
        return self.store.add_pipeline(load_pipeline(document, self.store.rollback_target))

    def run(self, record: PipelineRecord, given: Doc | None = None) -> Execution:
        execution = self.engine.trigger(record, given or {}, "test", "tester")
        self.dispatcher.drain(self.runner)
        return self.store.get_execution(execution.id)

    def statuses(self, execution: Execution) -> dict[str, RunStatus]:
        return {f"{run.stage}.{run.name}": run.status for run in self.store.task_runs(execution.id)}


@pytest.fixture
def harness(store: Store) -> Iterator[Harness]:
    dispatcher = InlineDispatcher(sleep=lambda _seconds: None)
    engine = Engine(store, dispatcher)
    http = HttpClient(timeout=5)
    heartbeat = Heartbeat(store, lease_seconds=60)
    yield Harness(
        store, engine, dispatcher, TaskRunner(store, engine, build_executors(http, store.get_endpoint), heartbeat)
    )
    http.close()


def rollback_of(harness: Harness, parent_id: str) -> Execution:
    """The one rollback execution a parent started."""
    [child] = harness.store.children([parent_id])[parent_id]
    assert child.relation is Relation.ROLLBACK
    return harness.store.get_execution(child.id)


def condition(text: str, **fields: Any) -> Doc:
    return {"type": "Condition", "input": {"condition": text}, **fields}


def pipeline(name: str, stages: dict[str, Doc], **fields: Any) -> Doc:
    return {"name": name, "enabled": True, "stageOrder": list(stages), "stages": stages, **fields}


def stage(*order: str, **tasks: Doc) -> Doc:
    return {"taskOrder": list(order), "tasks": {name.replace("_", " "): task for name, task in tasks.items()}}


def test_a_pipeline_runs_its_stages_in_order_and_binds_outputs(harness: Harness, web: HTTPServer) -> None:
    # Given a service that hands out a build number, and a pipeline that checks it in a later stage
    web.expect_request("/builds", method="POST").respond_with_json({"build": 7})
    record = harness.save(
        pipeline(
            "Build",
            {
                "Build": stage(
                    "Start", Start={"type": "REST", "input": {"action": "post", "url": web.url_for("/builds")}}
                ),
                "Check": stage("Is Seven", Is_Seven=condition("${Build.Start.output.responseJson.build} == 7")),
            },
            output={"build": "${Build.Start.output.responseJson.build}", "run": "#${executionIndex}"},
        )
    )

    # When it runs
    execution = harness.run(record)

    # Then it completes with its output bound, typed where the binding is the whole value
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.output == {"build": 7, "run": "#1"}
    assert harness.statuses(execution) == {"Build.Start": RunStatus.COMPLETED, "Check.Is Seven": RunStatus.COMPLETED}
    assert execution.finished_at is not None and execution.started_at is not None


def test_a_parallel_group_is_dispatched_together_and_the_next_group_waits_for_it(harness: Harness) -> None:
    # Given a group of two tasks followed by a third
    record = harness.save(
        pipeline("Fan", {"S": stage("A,B", "C", A=condition("true"), B=condition("true"), C=condition("true"))})
    )

    # When it is triggered
    execution = harness.engine.trigger(record, {})

    # Then both tasks of the group are queued at once, and the third is not
    queued = {item.task_run_id for item in harness.dispatcher.pending}
    runs = {run.name: run for run in harness.store.task_runs(execution.id)}
    assert queued == {runs["A"].id, runs["B"].id}
    assert runs["C"].status is RunStatus.NOT_STARTED
    # ... and once the first finishes, the third still waits for the second
    item = harness.dispatcher.pending.popleft()
    harness.runner.run(item.task_run_id, item.attempt)
    assert harness.store.get_task_run(runs["C"].id).status is RunStatus.NOT_STARTED
    harness.dispatcher.drain(harness.runner)
    assert harness.store.get_execution(execution.id).status is ExecutionStatus.COMPLETED


def test_a_false_precondition_skips_the_task_and_the_run_goes_on(harness: Harness) -> None:
    # Given a task that only runs for production, and a task after it
    record = harness.save(
        pipeline(
            "Maybe",
            {
                "Only Prod": stage("Deploy", Deploy=condition("true", preCondition="${input.env} == 'prod'")),
                "After": stage("Done", Done=condition("true")),
            },
            input={"env": "dev"},
        )
    )

    # When it runs for dev
    execution = harness.run(record)

    # Then the task is skipped, the next stage still runs, and the run completes
    assert execution.status is ExecutionStatus.COMPLETED
    assert harness.statuses(execution) == {"Only Prod.Deploy": RunStatus.SKIPPED, "After.Done": RunStatus.COMPLETED}
    skipped = harness.store.task_runs(execution.id)[0]
    assert "is false" in skipped.status_message


def test_a_failing_task_rolls_back_with_bound_input_and_comments(harness: Harness, web: HTTPServer) -> None:
    # Given a deploy that records the previous version, then fails its check; a stage link to a rollback
    web.expect_request("/deploy", method="POST").respond_with_json({"previous": "1.0"})
    web.expect_request("/restore", method="POST").respond_with_json({"ok": True})
    harness.save(
        pipeline(
            "Undo",
            {
                "Restore": stage(
                    "Put Back",
                    Put_Back={
                        "type": "REST",
                        "input": {
                            "action": "post",
                            "url": web.url_for("/restore"),
                            "payload": {"version": "${input.version}"},
                        },
                    },
                )
            },
            input={"version": ""},
        )
    )
    record = harness.save(
        pipeline(
            "Deploy",
            {
                "Prod": {
                    **stage(
                        "Push",
                        "Verify",
                        Push={"type": "REST", "input": {"action": "post", "url": web.url_for("/deploy")}},
                        Verify=condition("${input.healthy} == true"),
                    ),
                    "rollback": {"pipeline": "Undo", "input": {"version": "${Prod.Push.output.responseJson.previous}"}},
                }
            },
            input={"healthy": "false"},
        )
    )

    # When it runs
    parent = harness.run(record)

    # Then the parent ended ROLLBACK_COMPLETED, linked to a COMPLETED rollback execution
    assert parent.status is ExecutionStatus.ROLLBACK_COMPLETED
    child = rollback_of(harness, parent.id)
    assert child.status is ExecutionStatus.COMPLETED
    assert (child.rollback, child.parent_id, child.relation, child.pipeline_name) == (
        True,
        parent.id,
        Relation.ROLLBACK,
        "Undo",
    )
    assert child.input == {"version": "1.0"}
    assert child.requested_by == "tester"
    assert "Deploy #1" in child.comments and parent.id in child.comments
    assert "task 'Verify' in stage 'Prod'" in child.comments and "is false" in child.comments
    restored = next(request for request, _ in web.log if request.path == "/restore")
    assert restored.get_json() == {"version": "1.0"}
    assert "Prod.Verify failed" in parent.status_message and "Undo #1 COMPLETED" in parent.status_message


def test_a_rollback_binding_to_a_task_that_never_ran_is_empty(harness: Harness) -> None:
    # Given a stage whose first task fails before the task the rollback reads from has run
    harness.save(pipeline("Undo", {"R": stage("Note", Note=condition("true"))}, input={"version": ""}))
    record = harness.save(
        pipeline(
            "Early",
            {
                "S": {
                    **stage("Fail", "Later", Fail=condition("false"), Later=condition("true")),
                    "rollback": {"pipeline": "Undo", "input": {"version": "${S.Later.output.result}"}},
                }
            },
        )
    )

    # When it fails
    parent = harness.run(record)

    # Then the rollback still runs, with an empty value for what it could not read
    assert parent.status is ExecutionStatus.ROLLBACK_COMPLETED
    assert rollback_of(harness, parent.id).input == {"version": ""}


def test_a_task_link_wins_and_a_failing_rollback_gives_rollback_failed(harness: Harness) -> None:
    # Given a failing task linked to a rollback that fails itself, in a stage linked to one that works
    harness.save(pipeline("Stage Undo", {"R": stage("Fine", Fine=condition("true"))}))
    harness.save(pipeline("Task Undo", {"R": stage("Broken", Broken=condition("1 == 2"))}))
    record = harness.save(
        pipeline(
            "Linked",
            {
                "S": {
                    **stage("Check", Check=condition("false", rollback={"pipeline": "Task Undo"})),
                    "rollback": {"pipeline": "Stage Undo"},
                }
            },
        )
    )

    # When it fails
    parent = harness.run(record)

    # Then the task's rollback ran (not the stage's), failed, and the parent is ROLLBACK_FAILED
    assert parent.status is ExecutionStatus.ROLLBACK_FAILED
    rollbacks = harness.store.list_executions(rollback=True)
    assert [(item.pipeline_name, item.status) for item in rollbacks] == [("Task Undo", ExecutionStatus.FAILED)]


def test_the_engine_refuses_a_release_whose_rollback_is_disabled_and_force_records_the_override(
    harness: Harness,
) -> None:
    # Given a release linked to a rollback pipeline that is disabled (the check is the engine's: every way of
    # triggering goes through it, the API, webhooks, the CLI and the demo alike)
    harness.save(pipeline("Undo", {"R": stage("Fine", Fine=condition("true"))}, enabled=False))
    record = harness.save(
        pipeline("Release", {"S": {**stage("Go", Go=condition("true")), "rollback": {"pipeline": "Undo"}}})
    )

    # When it is triggered, Then it is refused with the reason, and nothing was inserted
    with pytest.raises(RollbackNotReady) as refused:
        harness.engine.trigger(record, {}, "", "tester")
    assert [problem.message for problem in refused.value.details] == ["rollback pipeline 'Undo' is disabled"]
    assert harness.store.list_executions() == []

    # When it is forced, Then it runs, and its first event says who forced it past what
    execution = harness.engine.trigger(record, {}, "", "tester", force=True)
    harness.dispatcher.drain(harness.runner)
    assert harness.store.get_execution(execution.id).status is ExecutionStatus.COMPLETED
    first = harness.store.events(execution.id)[0]
    assert (first.actor, first.message) == (
        "tester",
        "forced: tester started it although its rollback could not run (1 problem(s)): "
        "rollback pipeline 'Undo' is disabled",
    )


def test_without_a_link_a_failure_fails_the_execution_and_ignore_failure_lets_it_complete(harness: Harness) -> None:
    # Given one pipeline whose failing task has no link, and one whose failing task is ignored
    failing = harness.save(
        pipeline("Fails", {"S": stage("Bad", "Never", Bad=condition("false"), Never=condition("true"))})
    )
    ignoring = harness.save(
        pipeline(
            "Ignores", {"S": stage("Bad", "Next", Bad=condition("false", ignoreFailure=True), Next=condition("true"))}
        )
    )

    # When both run
    failed = harness.run(failing)
    completed = harness.run(ignoring)

    # Then the first is FAILED and stopped there; the second COMPLETED with the failure recorded on its task
    assert failed.status is ExecutionStatus.FAILED
    assert failed.status_message == "task S.Bad failed: condition 'false' is false"
    assert harness.statuses(failed) == {"S.Bad": RunStatus.FAILED, "S.Never": RunStatus.NOT_STARTED}
    assert completed.status is ExecutionStatus.COMPLETED
    assert harness.statuses(completed) == {"S.Bad": RunStatus.FAILED, "S.Next": RunStatus.COMPLETED}
    assert harness.store.list_executions(rollback=True) == []


def test_a_precondition_that_cannot_be_evaluated_fails_the_task(harness: Harness) -> None:
    # Given a preCondition comparing a word with a number
    record = harness.save(
        pipeline(
            "Odd",
            {"S": stage("A", A=condition("true", preCondition="${input.config} > 3"))},
            input={"config": "abc"},
        )
    )

    # When it runs
    execution = harness.run(record)

    # Then the task failed before it started, saying why, and so did the execution
    assert execution.status is ExecutionStatus.FAILED
    run = harness.store.task_runs(execution.id)[0]
    assert run.status is RunStatus.FAILED and "could not be evaluated" in run.status_message


def test_a_disabled_pipeline_and_a_missing_mandatory_input_are_refused(harness: Harness) -> None:
    # Given a disabled pipeline and an enabled one with a mandatory input
    disabled = harness.save(pipeline("Off", {"S": stage("A", A=condition("true"))}, enabled=False))
    mandatory = harness.save(
        pipeline(
            "Needs",
            {"S": stage("A", A=condition("true"))},
            input={"image": ""},
            _inputMeta={"image": {"mandatory": True, "description": "the image to deploy"}},
        )
    )

    # When they are triggered, Then each is refused with a reason and no execution is recorded
    with pytest.raises(PipelineDisabled):
        harness.engine.trigger(disabled, {})
    with pytest.raises(InputInvalid) as refused:
        harness.engine.trigger(mandatory, {"imag": "nginx"})
    assert [problem.path for problem in refused.value.details] == ["input.imag", "input.image"]
    assert "the image to deploy" in refused.value.details[1].message
    assert harness.store.list_executions() == []


def test_executions_beyond_the_concurrency_wait_in_queued_and_start_in_order(harness: Harness) -> None:
    # Given a pipeline that runs one execution at a time
    record = harness.save(pipeline("One", {"S": stage("A", A=condition("true"))}, concurrency=1))

    # When three are triggered before any task has run
    first, second, third = (harness.engine.trigger(record, {}) for _ in range(3))

    # Then the later two wait in QUEUED, saying why
    assert [first.status, second.status, third.status] == [ExecutionStatus.RUNNING, *[ExecutionStatus.QUEUED] * 2]
    assert "concurrency 1" in second.status_message
    # ... and as each ends, the next one starts, until all completed
    harness.dispatcher.drain(harness.runner)
    ended = [harness.store.get_execution(item.id) for item in (first, second, third)]
    assert [item.status for item in ended] == [ExecutionStatus.COMPLETED] * 3
    assert ended[0].finished_at <= ended[1].started_at and ended[1].finished_at <= ended[2].started_at  # type: ignore[operator]


def test_a_run_lost_with_its_worker_runs_again_and_a_late_report_of_the_old_attempt_changes_nothing(
    harness: Harness,
) -> None:
    # Given a running execution whose only task a worker claimed and then died with
    record = harness.save(pipeline("Dies", {"S": stage("A", A=condition("true"))}))
    execution = harness.engine.trigger(record, {})
    item = harness.dispatcher.pending.popleft()
    claimed = harness.store.claim(item.task_run_id, item.attempt, "worker-1 pid 7", lease_seconds=0.0)
    assert claimed is not None

    # When the sweep reports its lease lost, twice (two sweeps raced)
    harness.engine.task_finished(claimed, Lost(claimed.worker), "sweep")
    harness.engine.task_finished(claimed, Lost(claimed.worker), "sweep")

    # Then it is queued once as the next attempt, saying which worker was lost, and that attempt completes it
    again = harness.store.get_task_run(item.task_run_id)
    assert again.status is RunStatus.QUEUED and again.attempt == claimed.attempt + 1
    assert "lost with its worker (worker-1 pid 7)" in again.status_message
    assert [pending.attempt for pending in harness.dispatcher.pending] == [again.attempt]
    harness.dispatcher.drain(harness.runner)
    assert harness.store.get_execution(execution.id).status is ExecutionStatus.COMPLETED
    # ... and a late message for the lost attempt runs nothing
    harness.runner.run(item.task_run_id, item.attempt)
    assert harness.store.get_task_run(item.task_run_id).attempt == again.attempt


def test_editing_a_pipeline_does_not_change_a_running_execution(harness: Harness) -> None:
    # Given an execution started on version 1 of a pipeline
    document = pipeline("Versioned", {"S": stage("A", A=condition("true"))})
    record = harness.save(document)
    execution = harness.engine.trigger(record, {})

    # When the pipeline is changed to fail before the execution's task runs
    harness.store.replace_pipeline(
        record.id,
        load_pipeline(pipeline("Versioned", {"S": stage("A", A=condition("false"))}), harness.store.rollback_target),
    )
    harness.dispatcher.drain(harness.runner)

    # Then the execution ran the version it started with, and the next one runs the new version
    assert harness.store.get_execution(execution.id).status is ExecutionStatus.COMPLETED
    assert harness.run(harness.store.get_pipeline(record.id)).status is ExecutionStatus.FAILED


def test_a_poll_waits_by_requeueing_until_its_criteria_hold(harness: Harness, web: HTTPServer) -> None:
    # Given a job that is done at the third poll
    answers = iter(["RUNNING", "RUNNING", "DONE"])
    web.expect_request("/job").respond_with_handler(
        lambda _request: Response(json.dumps({"state": next(answers)}), content_type="application/json")
    )
    poll = {
        "type": "POLL",
        "input": {
            "url": web.url_for("/job"),
            "pollCount": 5,
            "pollIntervalSeconds": 0.5,
            "exitCriteria": {"success": "${responseJson.state} == 'DONE'"},
        },
    }
    record = harness.save(pipeline("Poller", {"S": stage("Wait", Wait=poll)}))
    waits: list[float] = []
    harness.dispatcher.sleep = waits.append

    # When it runs
    execution = harness.run(record)

    # Then it took three attempts, re-dispatched with the interval as countdown, and completed
    assert execution.status is ExecutionStatus.COMPLETED
    run = harness.store.task_runs(execution.id)[0]
    assert run.attempt == 3 and run.output is not None and run.output["iterationCount"] == 3
    assert waits == [0.5, 0.5]


def test_a_failing_request_records_its_output_for_the_rollback(harness: Harness, web: HTTPServer) -> None:
    # Given a REST task whose server answers 500 with a JSON body
    def broken(_request: Request) -> Response:
        return Response(json.dumps({"error": "boom"}), status=500, content_type="application/json")

    web.expect_request("/api").respond_with_handler(broken)
    record = harness.save(
        pipeline("Rest", {"S": stage("Call", Call={"type": "REST", "input": {"url": web.url_for("/api")}})})
    )

    # When it runs
    execution = harness.run(record)

    # Then the task failed naming the answer, and kept the response as its output
    run = harness.store.task_runs(execution.id)[0]
    assert run.status is RunStatus.FAILED and run.status_message.endswith("answered 500")
    assert run.output is not None and run.output["responseJson"] == {"error": "boom"}
    assert run.input == {"url": web.url_for("/api")}


def test_a_task_whose_bindings_cannot_be_resolved_fails_before_it_is_queued(harness: Harness) -> None:
    # Given a task reading the output of a task that was skipped
    record = harness.save(
        pipeline(
            "Unbound",
            {
                "S": stage(
                    "Maybe",
                    "Reader",
                    Maybe=condition("true", preCondition="1 == 2"),
                    Reader=condition("${S.Maybe.output.result} == true"),
                )
            },
        )
    )

    # When it runs
    execution = harness.run(record)

    # Then the reading task failed without running, saying which binding had no value
    assert execution.status is ExecutionStatus.FAILED
    runs = {run.name: run for run in harness.store.task_runs(execution.id)}
    assert runs["Maybe"].status is RunStatus.SKIPPED
    assert runs["Reader"].status is RunStatus.FAILED and runs["Reader"].attempt == 0
    assert "could not be bound" in runs["Reader"].status_message
    assert "'S.Maybe' has not completed" in runs["Reader"].status_message


def test_a_queued_task_shows_the_input_it_was_given(harness: Harness) -> None:
    # Given a pipeline whose second task reads the first one's output and the execution's input
    record = harness.save(
        pipeline(
            "Shows",
            {"S": stage("A", "B", A=condition("true"), B=condition("${S.A.output.result} == true and ${input.go}"))},
            input={"go": "true"},
        )
    )

    # When it has run
    execution = harness.run(record)

    # Then each task run shows what it was given, the expression's bindings with their values
    runs = {run.name: run for run in harness.store.task_runs(execution.id)}
    assert runs["B"].input == {"condition": "${S.A.output.result} == true and ${input.go}"}
    assert runs["B"].bindings == {"S.A.output.result": True, "input.go": "true"}
    assert execution.status is ExecutionStatus.COMPLETED


def test_when_parallel_tasks_fail_to_start_the_one_not_ignored_decides(harness: Harness) -> None:
    # Given a parallel group where both tasks read an output that never came, only the first ignored
    record = harness.save(
        pipeline(
            "Both",
            {
                "S": stage(
                    "Maybe",
                    "Ignored,Counted",
                    Maybe=condition("true", preCondition="false"),
                    Ignored=condition("${S.Maybe.output.result}", ignoreFailure=True),
                    Counted=condition("${S.Maybe.output.result}"),
                )
            },
        )
    )

    # When it runs
    execution = harness.run(record)

    # Then the execution ends FAILED on the task that was not ignored, instead of waiting forever
    assert execution.status is ExecutionStatus.FAILED
    assert execution.status_message.startswith("task S.Counted failed")


def test_a_canceled_execution_starts_nothing_more_and_lets_the_next_one_run(harness: Harness) -> None:
    # Given a pipeline running one execution at a time, one running with its first task queued, one waiting
    record = harness.save(
        pipeline("Stop", {"S": stage("A", "B", A=condition("true"), B=condition("true"))}, concurrency=1)
    )
    running = harness.engine.trigger(record, {})
    waiting = harness.engine.trigger(record, {})

    # When the running one is canceled
    canceled = harness.engine.cancel(running.id, "alice")

    # Then it is CANCELED saying by whom, its queued task is canceled, nothing of it runs, and the next one ran
    assert (canceled.status, canceled.status_message) == (ExecutionStatus.CANCELED, "canceled by alice")
    harness.dispatcher.drain(harness.runner)
    assert harness.statuses(canceled) == {"S.A": RunStatus.CANCELED, "S.B": RunStatus.NOT_STARTED}
    assert harness.store.get_execution(waiting.id).status is ExecutionStatus.COMPLETED
    # ... and an ended execution cannot be canceled
    with pytest.raises(InvalidTransition, match="cannot go from COMPLETED to CANCELED"):
        harness.engine.cancel(waiting.id)


def test_canceling_a_rollback_fails_the_rollback_of_its_parent(harness: Harness, web: HTTPServer) -> None:
    # Given a failed deploy whose rollback waits on a slow job
    web.expect_request("/job").respond_with_json({"state": "RUNNING"})
    poll = {
        "type": "POLL",
        "input": {"url": web.url_for("/job"), "exitCriteria": {"success": "${responseJson.state} == 'DONE'"}},
    }
    harness.save(pipeline("Slow Undo", {"R": stage("Wait", Wait=poll)}))
    record = harness.save(
        pipeline("Fails", {"S": {**stage("Bad", Bad=condition("false")), "rollback": {"pipeline": "Slow Undo"}}})
    )
    parent = harness.engine.trigger(record, {})
    item = harness.dispatcher.pending.popleft()
    harness.runner.run(item.task_run_id, item.attempt)
    rolling = harness.store.get_execution(parent.id)
    assert rolling.status is ExecutionStatus.ROLLING_BACK

    # When the rollback is canceled (the parent itself cannot be: it is rolling back)
    with pytest.raises(InvalidTransition):
        harness.engine.cancel(parent.id)
    harness.engine.cancel(rollback_of(harness, parent.id).id)

    # Then the parent ends ROLLBACK_FAILED, saying its rollback was canceled
    ended = harness.store.get_execution(parent.id)
    assert ended.status is ExecutionStatus.ROLLBACK_FAILED
    assert "Slow Undo #1 CANCELED" in ended.status_message
