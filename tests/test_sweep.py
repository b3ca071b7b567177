"""The sweep and the task-run lifecycle around it, on SQLite and PostgreSQL: lost workers, lost messages, long
waits kept in the database, rollbacks that settle their parent, queued releases that start, and the history
every change leaves. Task runs run in-process through the inline dispatcher and the real executors."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import update
from werkzeug import Request, Response

from orchestrator.document import load_pipeline
from orchestrator.engine import Engine
from orchestrator.execution import Execution, PipelineRecord, TaskRun
from orchestrator.outcome import Waiting
from orchestrator.schema import executions, now, task_runs
from orchestrator.status import ExecutionStatus, RunStatus
from orchestrator.store import Store
from orchestrator.sweep import Sweeper
from workers.constants import QUEUE_DEFAULT, queue_for
from workers.dispatcher import InlineDispatcher
from workers.executors import build_executors
from workers.heartbeat import Heartbeat
from workers.http import HttpClient
from workers.runner import TaskRunner

Doc = dict[str, Any]
LEASE = 30.0


@dataclass
class Deployment:
    """An engine, its sweep and one worker's runner, with dispatched messages kept until `drain()`."""

    store: Store
    engine: Engine
    dispatcher: InlineDispatcher
    runner: TaskRunner
    sweeper: Sweeper

    def save(self, document: Doc) -> PipelineRecord:
        return self.store.add_pipeline(load_pipeline(document, self.store.rollback_target))

    def execution(self, execution: Execution) -> Execution:
        return self.store.get_execution(execution.id)

    def run(self, name: str, execution: Execution) -> TaskRun:
        return next(run for run in self.store.task_runs(execution.id) if run.name == name)

    def claim_and_die(self, holder: str = "worker-1 pid 99") -> TaskRun:
        """A worker takes the next message's run, and dies before it reports: its lease then runs out."""
        item = self.dispatcher.pending.popleft()
        claimed = self.store.claim(item.task_run_id, item.attempt, holder, lease_seconds=LEASE)
        assert claimed is not None
        self.age(task_runs.c.lease_expires_at, claimed.id, LEASE + 1)
        return claimed

    def age(self, column: Any, task_run_id: str, seconds: float) -> None:
        """Move a task run's timestamp `seconds` into the past, as if that much time had gone by."""
        with self.store.transaction() as tx:
            tx.conn.execute(
                update(task_runs)
                .where(task_runs.c.id == task_run_id)
                .values({column: now() - timedelta(seconds=seconds)})
            )

    def shift(self, task_run_id: str, seconds: float) -> None:
        """Move a task run's due and sent times `seconds` into the past, as if that much time had gone by."""
        back = timedelta(seconds=seconds)
        run = self.store.get_task_run(task_run_id)
        assert run.sent_at is not None and run.dispatch_after is not None
        with self.store.transaction() as tx:
            tx.conn.execute(
                update(task_runs)
                .where(task_runs.c.id == task_run_id)
                .values(sent_at=run.sent_at - back, dispatch_after=run.dispatch_after - back)
            )


@pytest.fixture
def deployment(store: Store) -> Iterator[Deployment]:
    dispatcher = InlineDispatcher(sleep=lambda _seconds: None)
    engine = Engine(store, dispatcher, horizon=5.0)
    http = HttpClient(timeout=5)
    runner = TaskRunner(store, engine, build_executors(http, store.get_endpoint), Heartbeat(store, LEASE))
    yield Deployment(store, engine, dispatcher, runner, Sweeper(engine, LEASE))
    http.close()


def condition(text: str) -> Doc:
    return {"type": "Condition", "input": {"condition": text}}


def rest(url: str, action: str = "post", **fields: Any) -> Doc:
    return {"type": "REST", "input": {"action": action, "url": url, **fields}}


def pipeline(name: str, tasks: dict[str, Doc], **fields: Any) -> Doc:
    stage = {"taskOrder": list(tasks), "tasks": tasks}
    return {"name": name, "enabled": True, "stageOrder": ["Deploy"], "stages": {"Deploy": stage}, **fields}


def counting(requests: list[Request]) -> Any:
    def handle(request: Request) -> Response:
        requests.append(request)
        return Response('{"id": 1}', status=201, content_type="application/json")

    return handle


def test_a_run_lost_with_its_worker_runs_again_as_a_new_attempt(deployment: Deployment) -> None:
    # Given a release whose first task a worker claimed and then died with
    record = deployment.save(pipeline("Lost", {"Check": condition("true"), "After": condition("true")}))
    execution = deployment.engine.trigger(record, {}, requested_by="ana")
    lost = deployment.claim_and_die()

    # When the sweep runs
    report = deployment.sweeper.sweep()

    # Then it reclaimed the run as its next attempt, naming the lost worker, and the release completes
    assert report.reclaimed == 1
    again = deployment.run("Check", execution)
    assert again.status is RunStatus.QUEUED and again.attempt == lost.attempt + 1
    assert "attempt 1 was lost with its worker (worker-1 pid 99)" in again.status_message
    deployment.dispatcher.drain(deployment.runner)
    assert deployment.execution(execution).status is ExecutionStatus.COMPLETED
    # ... and a second sweep finds nothing more to do
    assert deployment.sweeper.sweep().reclaimed == 0


def test_a_post_lost_with_its_worker_is_not_sent_again_and_its_rollback_runs(
    deployment: Deployment, web: HTTPServer
) -> None:
    # Given a release whose POST a worker was sending when it died, with a rollback for its stage
    posts: list[Request] = []
    web.expect_request("/orders", method="POST").respond_with_handler(counting(posts))
    deployment.save(pipeline("Undo", {"Back": condition("true")}))
    document = pipeline("Order", {"Create": rest(web.url_for("/orders"))})
    document["stages"]["Deploy"]["rollback"] = {"pipeline": "Undo"}
    execution = deployment.engine.trigger(deployment.save(document), {})
    deployment.claim_and_die("worker-7 pid 12")

    # When the sweep finds its lease expired
    deployment.sweeper.sweep()
    deployment.dispatcher.drain(deployment.runner)

    # Then the POST is not sent again: the task failed naming the lost worker, and the rollback ran
    assert posts == []
    failed = deployment.run("Create", execution)
    assert failed.status is RunStatus.FAILED and "worker-7 pid 12" in failed.status_message
    assert "not safe to send twice" in failed.status_message
    assert deployment.execution(execution).status is ExecutionStatus.ROLLBACK_COMPLETED


def test_a_post_that_says_it_is_idempotent_is_sent_again_with_the_same_idempotency_key(
    deployment: Deployment, web: HTTPServer
) -> None:
    # Given a POST to an endpoint that honours Idempotency-Key, lost with its worker once
    posts: list[Request] = []
    web.expect_request("/orders", method="POST").respond_with_handler(counting(posts))
    record = deployment.save(pipeline("Order", {"Create": rest(web.url_for("/orders"), idempotent=True)}))
    execution = deployment.engine.trigger(record, {})
    lost = deployment.claim_and_die()
    deployment.dispatcher.pending.clear()

    # When the sweep reclaims it, and the new attempt runs
    deployment.sweeper.sweep()
    deployment.dispatcher.drain(deployment.runner)

    # Then it completed, and the request carried the task run's id as its Idempotency-Key
    assert deployment.execution(execution).status is ExecutionStatus.COMPLETED
    assert [request.headers.get("Idempotency-Key") for request in posts] == [lost.id]


def test_a_message_that_was_never_sent_or_was_lost_is_sent_by_the_sweep(deployment: Deployment) -> None:
    # Given two releases whose first messages never reached a worker: one was never sent (the broker was down)
    first = deployment.engine.trigger(deployment.save(pipeline("One", {"A": condition("true")})), {})
    second = deployment.engine.trigger(deployment.save(pipeline("Two", {"A": condition("true")})), {})
    deployment.dispatcher.pending.clear()
    unsent, lost = deployment.run("A", first), deployment.run("A", second)
    deployment.store.mark_sent([(unsent.id, unsent.attempt)], None)
    # ... the other was sent, but a lease ago, and nobody claimed it (it died with a Redis restart)
    deployment.age(task_runs.c.sent_at, lost.id, LEASE + 1)
    deployment.age(task_runs.c.dispatch_after, lost.id, LEASE + 1)

    # When the sweep runs
    report = deployment.sweeper.sweep()

    # Then it sent both again, and both releases complete; a message sent just now is left alone
    assert report.sent == 2
    assert {item.task_run_id for item in deployment.dispatcher.pending} == {unsent.id, lost.id}
    deployment.dispatcher.drain(deployment.runner)
    assert deployment.execution(first).status is ExecutionStatus.COMPLETED
    assert deployment.execution(second).status is ExecutionStatus.COMPLETED
    third = deployment.engine.trigger(deployment.save(pipeline("Three", {"A": condition("true")})), {})
    assert deployment.sweeper.sweep().sent == 0
    deployment.dispatcher.drain(deployment.runner)
    assert deployment.execution(third).status is ExecutionStatus.COMPLETED


def test_a_message_nobody_claims_is_sent_again_at_doubling_intervals_not_once_per_lease(
    deployment: Deployment,
) -> None:
    # Given a release whose message nobody claims (all workers busy, or its copies lost)
    execution = deployment.engine.trigger(deployment.save(pipeline("One", {"A": condition("true")})), {})
    waiting = deployment.run("A", execution)
    sends = []
    # When a lease and some seconds go by, four times, the sweep running after each (the margins are seconds, far
    # more than the real time the test itself takes)
    for seconds in (LEASE + 1, LEASE + 5, LEASE + 5, LEASE + 5):
        deployment.dispatcher.pending.clear()
        deployment.shift(waiting.id, seconds)
        sends.append(deployment.sweeper.sweep().sent)
    # Then it was sent again a lease after it was due, again a lease later (it had waited L+1 when last sent), and
    # then not after one more lease but only after two (it had waited 2L+6 when last sent): each re-send waits as
    # long as the run had waited when it was last sent
    assert sends == [1, 1, 0, 1]
    deployment.dispatcher.drain(deployment.runner)
    assert deployment.execution(execution).status is ExecutionStatus.COMPLETED


def test_a_long_wait_is_kept_in_the_database_and_sent_when_it_comes_due(deployment: Deployment) -> None:
    # Given a running task that answers "not yet, ask me again in ten minutes"
    record = deployment.save(pipeline("Slow", {"A": condition("true")}))
    execution = deployment.engine.trigger(record, {})
    item = deployment.dispatcher.pending.popleft()
    claimed = deployment.store.claim(item.task_run_id, item.attempt, "worker-1", LEASE)
    assert claimed is not None

    # When it reports that wait
    deployment.engine.task_finished(claimed, Waiting(600.0, {"polls": 1}, "poll 1 of 9"))

    # Then no message was sent: the wait is in the database, and the sweep leaves it until it is due
    waiting = deployment.run("A", execution)
    assert waiting.status is RunStatus.QUEUED and waiting.sent_at is None
    assert not deployment.dispatcher.pending and deployment.sweeper.sweep().sent == 0
    # ... once it is due within the next sweep, the sweep sends it with what is left of the wait
    deployment.age(task_runs.c.dispatch_after, waiting.id, 0 - 3.0)
    assert deployment.sweeper.sweep().sent == 1
    (sent,) = deployment.dispatcher.pending
    assert sent.attempt == waiting.attempt and 0 < sent.countdown <= 3.0
    deployment.dispatcher.drain(deployment.runner)
    assert deployment.execution(execution).status is ExecutionStatus.COMPLETED


def rolling_back(deployment: Deployment) -> tuple[PipelineRecord, Execution]:
    """A pipeline of concurrency 1 with a stage rollback, and a release of it that failed and is rolling back."""
    deployment.save(pipeline("Undo", {"Back": condition("true")}))
    document = pipeline("Deploy", {"Check": condition("${input.good} == 'yes'")}, concurrency=1, input={"good": ""})
    document["stages"]["Deploy"]["rollback"] = {"pipeline": "Undo"}
    record = deployment.save(document)
    broken = deployment.engine.trigger(record, {"good": "no"})
    first = deployment.dispatcher.pending.popleft()
    deployment.runner.run(first.task_run_id, first.attempt)
    return record, broken


def test_with_concurrency_one_a_release_waits_for_the_rollback_before_it(deployment: Deployment) -> None:
    # Given a pipeline of concurrency 1 whose release fails and rolls back
    record, broken = rolling_back(deployment)
    assert deployment.execution(broken).status is ExecutionStatus.ROLLING_BACK

    # When the next release is triggered while it is rolling back
    following = deployment.engine.trigger(record, {"good": "yes"})

    # Then it waits in QUEUED, and starts only once the rollback has settled the one before it
    assert following.status is ExecutionStatus.QUEUED
    deployment.dispatcher.drain(deployment.runner)
    settled, ran = deployment.execution(broken), deployment.execution(following)
    assert settled.status is ExecutionStatus.ROLLBACK_COMPLETED and ran.status is ExecutionStatus.COMPLETED
    assert settled.finished_at is not None and ran.started_at is not None and settled.finished_at <= ran.started_at


def test_the_sweep_settles_a_parent_and_starts_the_release_behind_it_when_that_follow_up_was_lost(
    deployment: Deployment,
) -> None:
    # Given a release of concurrency 1 rolling back, and the next release queued behind it
    record, parent = rolling_back(deployment)
    behind = deployment.engine.trigger(record, {"good": "yes"})
    # ... whose rollback's last step committed, but the process died before it settled the parent
    item = deployment.dispatcher.pending.popleft()
    claimed = deployment.store.claim(item.task_run_id, item.attempt, "worker-1", LEASE)
    assert claimed is not None
    with deployment.store.transaction() as tx:
        assert tx.finish_task_run(claimed, RunStatus.COMPLETED, "", {"result": True})
        assert tx.transition(claimed.execution_id, ExecutionStatus.COMPLETED)
    assert deployment.execution(parent).status is ExecutionStatus.ROLLING_BACK

    # When the sweep runs
    report = deployment.sweeper.sweep()

    # Then the parent is settled, and the release behind it starts and completes
    assert report.settled == 1
    assert deployment.execution(parent).status is ExecutionStatus.ROLLBACK_COMPLETED
    assert deployment.execution(behind).status is ExecutionStatus.RUNNING
    deployment.dispatcher.drain(deployment.runner)
    assert deployment.execution(behind).status is ExecutionStatus.COMPLETED


def test_the_sweep_starts_the_next_manual_rollback_when_the_step_after_the_first_was_lost(
    deployment: Deployment,
) -> None:
    # Given a completed release of two stages, each linked to a rollback pipeline, rolled back by hand
    for name in ("Undo-Dev", "Undo-Prod"):
        deployment.save(pipeline(name, {"Back": condition("true")}))
    document = pipeline("Deploy", {"A": condition("true")})
    document["stages"]["Prod"] = {**document["stages"]["Deploy"], "rollback": {"pipeline": "Undo-Prod"}}
    document["stages"]["Deploy"]["rollback"] = {"pipeline": "Undo-Dev"}
    document["stageOrder"] = ["Deploy", "Prod"]
    release = deployment.engine.trigger(deployment.save(document), {})
    deployment.dispatcher.drain(deployment.runner)
    assert deployment.execution(release).status is ExecutionStatus.COMPLETED
    deployment.engine.roll_back(release.id, "olga")
    prod, dev = deployment.store.children([release.id])[release.id]
    assert (prod.pipeline_name, prod.status, dev.status) == ("Undo-Prod", ExecutionStatus.RUNNING, "NOT_STARTED")
    # ... whose first rollback's last step committed, but the process died before it started the next one
    item = deployment.dispatcher.pending.popleft()
    claimed = deployment.store.claim(item.task_run_id, item.attempt, "worker-1", LEASE)
    assert claimed is not None
    with deployment.store.transaction() as tx:
        assert tx.finish_task_run(claimed, RunStatus.COMPLETED, "", {"result": True})
        assert tx.transition(claimed.execution_id, ExecutionStatus.COMPLETED)

    # When the sweep runs, Then it starts the dev rollback, once: a second pass finds it running
    assert deployment.sweeper.sweep().settled == 1
    assert deployment.store.get_execution(dev.id).status is ExecutionStatus.RUNNING
    assert deployment.sweeper.sweep().settled == 0
    # ... and once that one completes the release ends ROLLBACK_COMPLETED, with nothing left for the sweep
    deployment.dispatcher.drain(deployment.runner)
    settled = deployment.execution(release)
    assert settled.status is ExecutionStatus.ROLLBACK_COMPLETED, settled.status_message
    assert "manual rollback requested by olga" in settled.status_message
    assert deployment.sweeper.sweep().settled == 0


def test_every_change_of_an_execution_and_its_tasks_is_in_its_history(deployment: Deployment) -> None:
    # Given a release of two tasks, run by a worker
    record = deployment.save(pipeline("History", {"A": condition("true"), "B": condition("true")}))
    execution = deployment.engine.trigger(record, {}, requested_by="ana")
    deployment.dispatcher.drain(deployment.runner)

    # When its history is read
    events = deployment.store.events(execution.id)

    # Then it lists every change in order, each with where it came from and who made it
    changes = [(event.task, event.previous, event.status) for event in events]
    assert changes == [
        (None, None, "RUNNING"),
        ("A", "NOT_STARTED", "QUEUED"),
        ("A", "QUEUED", "RUNNING"),
        ("A", "RUNNING", "COMPLETED"),
        ("B", "NOT_STARTED", "QUEUED"),
        ("B", "QUEUED", "RUNNING"),
        ("B", "RUNNING", "COMPLETED"),
        (None, "RUNNING", "COMPLETED"),
    ]
    assert events[0].actor == "ana"
    assert events[2].actor.startswith("worker claim ") and events[2].actor == events[3].actor
    assert all(later.at >= earlier.at for earlier, later in itertools.pairwise(events))


def test_two_sweeps_at_once_do_not_both_work(pg_url: str) -> None:
    # Given one sweep holding the sweep lock on PostgreSQL (SQLite serializes its writers: it needs none)
    store = Store.connect(pg_url)
    engine = Engine(store, InlineDispatcher())
    try:
        with store.sweep_lock() as held:
            # When another sweep starts meanwhile
            report = Sweeper(engine, LEASE).sweep()
        # Then it skips, and once the first is done the next one works
        assert held and report.skipped
        assert not Sweeper(engine, LEASE).sweep().skipped
    finally:
        store.dispose()


def test_an_attempt_that_runs_past_its_limit_is_no_longer_renewed(deployment: Deployment) -> None:
    # Given a heartbeat holding two running attempts, one of them started past the attempt limit
    record = deployment.save(pipeline("Wedged", {"A": condition("true"), "B": condition("true")}))
    first = deployment.engine.trigger(record, {})
    second = deployment.engine.trigger(record, {})
    claimed = [
        deployment.store.claim(item.task_run_id, item.attempt, f"worker {index}", LEASE)
        for index, item in enumerate(deployment.dispatcher.pending)
    ]
    assert all(claimed) and {run.execution_id for run in claimed if run} == {first.id, second.id}
    heartbeat = Heartbeat(deployment.store, LEASE, attempt_timeout=60.0)
    healthy, wedged = claimed
    assert healthy is not None and wedged is not None

    # When it beats, with the wedged one held for longer than the limit
    with heartbeat.hold(healthy, healthy.worker), heartbeat.hold(wedged, wedged.worker):
        heartbeat._held[wedged.id, wedged.attempt] = replace(heartbeat._held[wedged.id, wedged.attempt], since=0.0)
        renewed = heartbeat.beat()

    # Then only the healthy lease was renewed: the wedged one runs out, and the sweep will reclaim it
    assert renewed == 1
    assert deployment.run("A", second).lease_expires_at == wedged.lease_expires_at
    later = deployment.run("A", first).lease_expires_at
    assert later is not None and healthy.lease_expires_at is not None and later > healthy.lease_expires_at


def test_the_sweep_settles_a_pipeline_task_whose_nested_execution_ended_when_that_follow_up_was_lost(
    deployment: Deployment,
) -> None:
    # Given a release whose Pipeline task runs Child, a pipeline of one Condition
    deployment.save(pipeline("Child", {"Check": condition("1 == 1")}, output={"said": "yes"}))
    record = deployment.save(pipeline("Release", {"Run": {"type": "Pipeline", "input": {"pipeline": "Child"}}}))
    parent = deployment.engine.trigger(record, {})
    # ... whose child's task went to the ordinary queue of its type (a nested execution is no rollback)
    item = deployment.dispatcher.pending.popleft()
    assert queue_for(item.type, item.rollback) == QUEUE_DEFAULT
    # ... and whose child's last step committed, but the process died before it settled the parent's task
    claimed = deployment.store.claim(item.task_run_id, item.attempt, "worker-1", LEASE)
    assert claimed is not None
    with deployment.store.transaction() as tx:
        assert tx.finish_task_run(claimed, RunStatus.COMPLETED, "", {"result": True})
        assert tx.transition(claimed.execution_id, ExecutionStatus.COMPLETED, output={"said": "yes"})
    assert deployment.run("Run", parent).status is RunStatus.WAITING

    # When the sweep runs
    report = deployment.sweeper.sweep()

    # Then the task completes with the child's output, and the release completes
    assert report.settled == 1
    run = deployment.run("Run", parent)
    assert run.status is RunStatus.COMPLETED
    assert run.output == {
        "executionId": claimed.execution_id,
        "status": "COMPLETED",
        "outputProperties": {"said": "yes"},
    }
    assert deployment.execution(parent).status is ExecutionStatus.COMPLETED
    assert deployment.sweeper.sweep().settled == 0


def test_a_paused_execution_is_left_alone_by_the_sweep_and_its_runs_are_sent_after_a_lost_resume(
    deployment: Deployment,
) -> None:
    # Given a release paused before its first task's message reached a worker
    record = deployment.save(pipeline("Release", {"Check": condition("1 == 1")}))
    release = deployment.engine.trigger(record, {})
    deployment.engine.pause(release.id, "alice")

    # When the message arrives, and the sweep runs long after
    deployment.dispatcher.drain(deployment.runner)
    deployment.age(task_runs.c.sent_at, deployment.run("Check", release).id, LEASE + 1)
    with deployment.store.transaction() as tx:
        tx.conn.execute(
            update(executions)
            .where(executions.c.id == release.id)
            .values(updated_at=now() - timedelta(seconds=LEASE + 1))
        )
    report = deployment.sweeper.sweep()

    # Then the run was not run and is still queued, and the sweep neither sent it nor took the release for stalled
    assert deployment.run("Check", release).status is RunStatus.QUEUED
    assert (report.sent, report.advanced) == (0, 0)
    assert deployment.execution(release).status is ExecutionStatus.PAUSED

    # When it is resumed but the resume's message is lost, and a lease later the sweep runs
    deployment.engine.resume(release.id, "alice")
    deployment.dispatcher.pending.clear()
    deployment.age(task_runs.c.sent_at, deployment.run("Check", release).id, LEASE + 1)
    deployment.age(task_runs.c.dispatch_after, deployment.run("Check", release).id, LEASE + 1)
    report = deployment.sweeper.sweep()

    # Then the sweep sends it, and the release completes
    assert report.sent == 1
    deployment.dispatcher.drain(deployment.runner)
    assert deployment.execution(release).status is ExecutionStatus.COMPLETED
