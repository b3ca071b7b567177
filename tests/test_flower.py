"""Flower alongside Rollway: `rollway flower` runs real Flower 2.2 on Rollway's broker under ROLLWAY_REDIS_PREFIX; its
task list names each run as pipeline / stage / task; an `ignoreFailure` failure is not a FAILURE there; and a task
revoked from Flower, waiting or running (terminated), never strands its execution: it runs again or fails into its
rollback.

Real processes throughout: `rollway flower`, `rollway worker` (one of them with the sweep's beat), the API over HTTP,
on PostgreSQL and Redis; Flower is driven over its HTTP API (/api/tasks, /api/workers, /api/task/revoke).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from orchestrator.settings import Settings
from workers.flower import NOT_INSTALLED

from rollway_testing import (
    SECRET_KEY,
    TOKEN,
    ServedApp,
    ended,
    rollway_command,
    settings_env,
    started,
    task_of,
    wait_until,
)
from serve_process import free_port

pytest.importorskip("flower")

Doc = dict[str, Any]
PREFIX = "team-a:"
RUN_TASK = "rollway.run_task"


@pytest.fixture
def settings(pg_url: str, redis_url: str) -> Settings:
    """A deployment whose Redis keys start with a prefix; short leases and sweeps, so lost work is found fast."""
    return Settings(
        database_url=pg_url,
        redis_url=redis_url,
        api_token=TOKEN,
        secret_key=SECRET_KEY,
        redis_prefix=PREFIX,
        lease_seconds=3,
        sweep_seconds=1,
    )


@pytest.fixture
def flower(settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    """`rollway flower` on the test settings, behind basic auth, and a client of its HTTP API."""
    port = free_port()
    log_path = tmp_path / "flower.log"
    with log_path.open("wb") as log:
        command = [*rollway_command(), "flower", f"--port={port}", "--address=127.0.0.1", "--basic_auth=ops:pass"]
        process = subprocess.Popen(command, env=settings_env(settings), stdout=log, stderr=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=("ops", "pass"), timeout=10)

    def answers() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            return client.get("/api/workers").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, timeout=60, interval=0.2, what="Flower to answer")
        yield client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def flower_tasks(flower: httpx.Client) -> list[Doc]:
    answer = flower.get("/api/tasks")
    assert answer.status_code == 200, answer.text
    return [task | {"uuid": uuid} for uuid, task in answer.json().items()]


def flower_task(flower: httpx.Client, name: str, *states: str) -> Doc:
    """The one task Flower lists under `name`, once it is in one of `states`."""

    seen: list[list[Doc]] = []

    def found() -> Doc | None:
        listed = flower_tasks(flower)
        seen[:] = [listed]
        matching = [task for task in listed if task["name"] == name]
        return matching[0] if len(matching) == 1 and matching[0]["state"] in states else None

    try:
        return wait_until(found, timeout=60, interval=0.2, what=f"Flower to list {name} as {states}")
    except AssertionError as error:
        brief = [(task["name"], task["state"], task["uuid"]) for task in seen[0]] if seen else []
        raise AssertionError(f"{error}; Flower listed {brief}") from None


def pipeline(api: ServedApp, web: HTTPServer, name: str, path: str, method: str = "get", **task: Any) -> Doc:
    """`name`: stage `Deliver` with one REST task `Call` to `path`; its stage rolled back by `Restore`."""
    if "Restore" not in {found["name"] for found in api.http.get("/api/pipelines").json()}:
        note = {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}}
        api.create(
            {"name": "Restore", "project": "shop", "enabled": True, "stageOrder": ["Undo"]}
            | {"stages": {"Undo": {"taskOrder": ["Note"], "tasks": note}}}
        )
    call = {"type": "REST", "input": {"action": method, "url": web.url_for(path)}, **task}
    stage = {"taskOrder": ["Call"], "tasks": {"Call": call}, "rollback": {"pipeline": "Restore"}}
    document = {"name": name, "project": "shop", "enabled": True, "concurrency": 10, "stageOrder": ["Deliver"]}
    return api.create(document | {"stages": {"Deliver": stage}})


class HeldFirst:
    """A web handler that holds the first request until the test lets it go (or a minute passes) and answers every
    later one at once."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.release = threading.Event()
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.count += 1
            first = self.count == 1
        if first:
            self.asked.set()
            self.release.wait(timeout=60)
        return Response('{"ok": true}', content_type="application/json")


def test_flower_lists_each_run_as_pipeline_stage_task_and_an_ignored_failure_is_no_failure(
    api: ServedApp, worker_factory: Any, flower: httpx.Client, web: HTTPServer
) -> None:
    # Given a worker (under the Redis prefix, as Flower is), a pipeline that succeeds and one whose task fails with
    # ignoreFailure
    web.expect_request("/ok").respond_with_json({"ok": True})
    web.expect_request("/broken").respond_with_json({"error": "down"}, status=500)
    worker = worker_factory("-c", "2")
    release = pipeline(api, web, "Release", "/ok")
    tolerant = pipeline(api, web, "Tolerant", "/broken", ignoreFailure=True)

    # When both run
    done = [started(api.http, release), started(api.http, tolerant)]
    assert [ended(api, execution_id)["status"] for execution_id in done] == ["COMPLETED", "COMPLETED"]

    # Then Flower lists each run by pipeline / stage / task, neither as a FAILURE, and the live worker
    ok = flower_task(flower, f"{RUN_TASK}[Release #1 / Deliver / Call]", "SUCCESS")
    ignored = flower_task(flower, f"{RUN_TASK}[Tolerant #1 / Deliver / Call]", "SUCCESS")
    assert ok["worker"] == ignored["worker"]
    # ... and its Result column says what became of the attempt
    assert "succeeded" in str(ok["result"]) and "failed" in str(ignored["result"])
    workers = wait_until(lambda: flower.get("/api/workers", params={"refresh": "1"}).json(), what="Flower's workers")
    [name] = workers
    assert name.startswith("rollway-") and name == ok["worker"]
    assert {queue["name"] for queue in workers[name]["active_queues"]} >= {"http", "rollback", "orchestrator"}
    assert worker.process.poll() is None


@pytest.mark.parametrize(
    ("method", "outcome"), [("get", "COMPLETED"), ("post", "ROLLBACK_COMPLETED")], ids=["repeatable", "not-repeatable"]
)
def test_a_running_task_terminated_from_flower_runs_again_or_fails_into_its_rollback(
    api: ServedApp, worker_factory: Any, flower: httpx.Client, web: HTTPServer, method: str, outcome: str
) -> None:
    # Given a worker on the http queue running a REST call that the server holds, and another worker with the sweep
    held = HeldFirst()
    web.expect_request("/deploy").respond_with_handler(held)
    worker_factory("-Q", "http", "-c", "1")
    worker_factory("-Q", "rollback,orchestrator,kubernetes,default", "-c", "1", "--beat")
    execution_id = started(api.http, pipeline(api, web, "Release", "/deploy", method))
    assert held.asked.wait(timeout=60)
    task = flower_task(flower, f"{RUN_TASK}[Release #1 / Deliver / Call]", "STARTED")

    # When it is revoked from Flower with terminate
    revoked = flower.post(f"/api/task/revoke/{task['uuid']}", params={"terminate": "true"})
    assert revoked.status_code == 200, revoked.text

    # Then the execution does not hang: a GET runs again and completes, a POST (not safe to repeat) fails and its
    # stage's rollback runs
    done = ended(api, execution_id)
    held.release.set()
    assert done["status"] == outcome, done
    call = task_of(done, "Deliver", "Call")
    assert call["status"] == ("COMPLETED" if method == "get" else "FAILED"), call
    assert held.count == (2 if method == "get" else 1)


def test_a_waiting_task_revoked_from_flower_is_sent_again_and_completes(
    api: ServedApp, worker_factory: Any, flower: httpx.Client, web: HTTPServer
) -> None:
    # Given a worker on the http queue busy with one release's held call, a second release waiting in the queue
    # behind it, and another worker with the sweep
    held = HeldFirst()
    web.expect_request("/deploy").respond_with_handler(held)
    worker_factory("-Q", "http", "-c", "1")
    worker_factory("-Q", "rollback,orchestrator,kubernetes,default", "-c", "1", "--beat")
    release = pipeline(api, web, "Release", "/deploy")
    first = started(api.http, release)
    assert held.asked.wait(timeout=60)
    second = started(api.http, release)
    name = f"{RUN_TASK}[Release #2 / Deliver / Call]"
    waiting = wait_until(
        lambda: [task["uuid"] for task in flower_tasks(flower) if task["name"] == name and task["state"] == "PENDING"],
        what="Flower to list the waiting message",
    )

    # When every message Flower lists for it is revoked (the sweep may have sent it again meanwhile: a run not
    # claimed within a lease is sent again), and the busy worker is then let go
    for uuid in waiting:
        revoked = flower.post(f"/api/task/revoke/{uuid}")
        assert revoked.status_code == 200, revoked.text
    held.release.set()

    # Then both releases complete: the revoked messages were dropped, and the sweep sent the run again
    assert [ended(api, first)["status"], ended(api, second)["status"]] == ["COMPLETED", "COMPLETED"]
    assert held.count == 2
    states = wait_until(
        lambda: (
            (found := {task["uuid"]: task["state"] for task in flower_tasks(flower) if task["name"] == name})
            and "SUCCESS" in found.values()
            and found
        ),
        what="Flower to see the run sent again succeed",
    )
    assert all(states.get(uuid) == "REVOKED" for uuid in waiting), states


def test_rollway_flower_without_flower_installed_says_so_in_one_line(tmp_path: Path) -> None:
    # Given a Python in which Flower cannot be imported (`sys.modules` holds None for it, as for a missing module)
    hide = (
        "import sys; sys.modules['flower'] = None; from api.cli import main; sys.argv = ['rollway', 'flower']; main()"
    )
    env = settings_env(Settings(database_url=f"sqlite:///{tmp_path}/rollway.db"))

    # When `rollway flower` runs there
    result = subprocess.run(
        [sys.executable, "-c", hide], check=False, env=env, capture_output=True, text=True, timeout=60
    )

    # Then it ends with one line naming what to install, and no traceback
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == f"Error: {NOT_INSTALLED}"
    assert "pip install flower" in NOT_INSTALLED
