"""Load: a burst of executions of a 5-task pipeline over HTTP on W `rollway worker` processes beside a burst of raw
Celery chains of five no-op tasks on the same Redis and workers, in the same run; and how soon a failure's rollback
task starts, idle and amid the burst, beside a no-op task sent idle and amid the raw burst."""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx
import redis
from celery import Celery, chain
from celery.result import AsyncResult
from sqlalchemy import create_engine, text

from orchestrator.settings import Settings
from orchestrator.status import ExecutionStatus
from workers.celery_app import make_celery
from workers.constants import TASK_PING

Doc = dict[str, Any]

DEFAULT_REDIS = "redis://127.0.0.1:6379/12"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"
BENCH_DB = "rollway_bench_load"
LOAD, FAILING, ROLLBACK = "Bench-Load", "Bench-Load-Failing", "Bench-Load-Rollback"
# The document's maximum: a burst of up to this many executions never queues on the pipeline's concurrency.
PIPELINE_CONCURRENCY = 1000
NOT_TERMINAL = ",".join(status for status in ExecutionStatus if not status.is_terminal)
START_SECONDS = 90.0  # for the API and the workers to answer, on a busy two-core machine
STOP_SECONDS = 15.0  # for a process group to end after SIGTERM, before SIGKILL
EXECUTION_SECONDS = 60.0  # for one execution (or ping) alone to end


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executions", type=int, default=300, help="executions in the burst, and raw chains")
    parser.add_argument("--workers", type=int, default=2, help="`rollway worker` processes")
    parser.add_argument("--concurrency", type=int, default=2, help="`-c` of each worker")
    parser.add_argument("--clients", type=int, default=4, help="HTTP client threads triggering the burst")
    parser.add_argument("--samples", type=int, default=5, help="failures and pings measured idle, and amid bursts")


# --- the web service the pipelines call ---------------------------------------------------------------------


class _WebHandler(BaseHTTPRequestHandler):
    """Answers at once: POST /fail with 500, any other POST with 201 and an id, any GET with a ready state."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(500 if self.path == "/fail" else 201, b'{"id": "D-1"}')

    def do_GET(self) -> None:
        self._answer(200, b'{"state": "READY", "ok": true}')

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: thousands of requests would drown the report."""


@contextmanager
def _web_service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _documents(base: str) -> list[Doc]:
    """The rollback pipeline (first: the failing one links to it), the failing one, and the 5-task one."""

    def pipeline(name: str, stage: str, tasks: dict[str, Doc], **link: Any) -> Doc:
        stages = {stage: {"taskOrder": list(tasks), "tasks": tasks, **link}}
        fields = {"project": "bench", "enabled": True, "concurrency": PIPELINE_CONCURRENCY}
        return {"kind": "PIPELINE", "name": name, **fields, "stageOrder": [stage], "stages": stages}

    def rest(action: str, path: str) -> Doc:
        return {"type": "REST", "input": {"action": action, "url": f"{base}{path}"}}

    def condition(expression: str) -> Doc:
        return {"type": "Condition", "input": {"condition": expression}}

    poll = {
        "url": base + "/deployments/${Release.Open.output.responseJson.id}",
        "pollCount": 3,
        "pollIntervalSeconds": 0.1,
        "exitCriteria": {"success": "${responseJson.state} == 'READY'"},
    }
    load = {
        "Open": rest("post", "/deployments"),
        "Wait Ready": {"type": "POLL", "input": poll},
        "Check Opened": condition("${Release.Open.output.responseCode} == 201"),
        "Verify": rest("get", "/verify"),
        "Check Verified": condition("${Release.Verify.output.responseJson.ok} == true"),
    }
    return [
        pipeline(ROLLBACK, "Undo", {"Undo": rest("get", "/undo")}),
        pipeline(FAILING, "Deploy", {"Open": rest("post", "/fail")}, rollback={"pipeline": ROLLBACK, "input": {}}),
        pipeline(LOAD, "Release", load),
    ]


# --- services and processes ---------------------------------------------------------------------------------


def _admin(*statements: str) -> None:
    admin = create_engine(f"{DEFAULT_POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    admin.dispose()


def _rollway() -> list[str]:
    script = shutil.which("rollway", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "api"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class _Processes:
    """Rollway processes, each in a process group of its own so that stopping one stops its children."""

    folder: Path
    env: dict[str, str]
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[IO[bytes]] = field(default_factory=list)

    def has_command(self, *command: str) -> bool:
        """Whether `rollway <command> --help` exits 0 (commands being added may not exist yet)."""
        help_command = [*_rollway(), *command, "--help"]
        quiet = subprocess.DEVNULL
        return subprocess.call(help_command, env=self.env, cwd=self.folder, stdout=quiet, stderr=quiet, timeout=60) == 0

    def upgrade(self) -> None:
        """`rollway db upgrade`: serve and workers start only on the current schema."""
        done = subprocess.run(
            [*_rollway(), "db", "upgrade"],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"`rollway db upgrade` exited with {done.returncode}:\n{done.stdout}{done.stderr}")

    def start(self, name: str, *command: str) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        self.logs.append(log)
        self.running[name] = subprocess.Popen(
            [*_rollway(), *command], env=self.env, cwd=self.folder, stdout=log, stderr=log, start_new_session=True
        )

    def check(self) -> None:
        """Raise if the API or a worker has exited, with the end of its log (beat is optional, being added)."""
        for name in self.running.keys() - {"beat"}:
            code = self.running[name].poll()
            if code is not None:
                tail = (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"`rollway {name}` exited with {code}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM every process (a worker then stops its pool), wait a bounded time, then SIGKILL its group."""
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.running.values():
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_SECONDS)
        for log in self.logs:
            log.close()


# --- the API ------------------------------------------------------------------------------------------------


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


class _Api:
    """The Rollway API over HTTP. Reads retry a few times: the API may misbehave briefly while it is changed."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.http = _client(url, token)

    def get(self, path: str, **params: str | int) -> Any:
        problem = ""
        for _ in range(5):
            try:
                answer = self.http.get(path, params=params)
                if answer.status_code == 200:
                    return answer.json()
                problem = f"{answer.status_code} {answer.text[:300]}"
            except httpx.HTTPError as error:
                problem = repr(error)
            time.sleep(0.2)
        raise RuntimeError(f"GET {path} {params} failed: {problem}")

    def post(self, path: str, body: Doc, expected: int, field: str) -> str:
        """POST a body that must be answered `expected`; the answer's `field`."""
        answer = self.http.post(path, json=body)
        if answer.status_code != expected:
            raise RuntimeError(f"POST {path} answered {answer.status_code}: {answer.text[:500]}")
        value: str = answer.json()[field]
        return value

    def trigger(self, pipeline_id: str) -> str:
        return self.post(
            f"/api/pipelines/{pipeline_id}/executions", {"input": {}, "comments": "bench"}, 202, "executionId"
        )

    def finished(self, execution_id: str) -> Doc:
        deadline = time.monotonic() + EXECUTION_SECONDS
        found: Doc = {"status": "not read"}
        while time.monotonic() < deadline:
            found = self.get(f"/api/executions/{execution_id}")
            if ExecutionStatus(found["status"]).is_terminal:
                return found
            time.sleep(0.02)
        raise RuntimeError(f"execution {execution_id} did not end within {EXECUTION_SECONDS:g} s: {found['status']}")

    def executions(self, pipeline_id: str) -> Iterator[Doc]:
        """Every execution of a pipeline, a page at a time."""
        offset = 0
        while page := self.get("/api/executions", pipeline=pipeline_id, limit=1000, offset=offset):
            yield from page
            offset += len(page)


def _wait_ready(api: _Api, celery: Celery, workers: int, processes: _Processes) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        processes.check()
        with suppress(httpx.HTTPError):
            if api.http.get("/api/executions", params={"limit": 1}).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"`rollway serve` did not answer within {START_SECONDS:g} s")
        time.sleep(0.2)
    while len(celery.control.ping(timeout=0.5) or []) < workers:
        processes.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {workers} workers answered within {START_SECONDS:g} s")


# --- measurements -------------------------------------------------------------------------------------------


def _at(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


@dataclass
class _Sample:
    """One failing execution: how it ended, and seconds from its failure to its rollback's first task start."""

    status: str
    delay: float | None = None
    rollback_started: float | None = None


def _failure_sample(api: _Api, parent_id: str) -> _Sample:
    parent = api.finished(parent_id)
    failed = [task for stage in parent["stages"] for task in stage["tasks"] if task["status"] == "FAILED"]
    if parent["status"] != "ROLLBACK_COMPLETED" or not failed or not parent["rollbackExecutionId"]:
        return _Sample(parent["status"])
    child = api.get(f"/api/executions/{parent['rollbackExecutionId']}")
    first = child["stages"][0]["tasks"][0]["startedAt"]
    if not first or not failed[0]["finishedAt"]:
        return _Sample(f"{parent['status']} without times")
    return _Sample(parent["status"], _at(first) - _at(failed[0]["finishedAt"]), _at(first))


class _Triggers:
    """The burst's shared state: how many triggers are claimed, and what every client thread saw, under one lock."""

    def __init__(self, total: int) -> None:
        self.total, self.claimed = total, 0
        self.ids: list[str] = []
        self.seconds: list[float] = []  # to each 202
        self.answers: Counter[str] = Counter()
        self.problems: list[str] = []  # the first few answers that were not 202
        self.halfway = threading.Event()
        self.lock = threading.Lock()

    def claim(self) -> bool:
        with self.lock:
            self.claimed += 1
            if self.claimed * 2 >= self.total:
                self.halfway.set()
            return self.claimed <= self.total

    def record(self, answer: str, execution_id: str | None, seconds: float, problem: str) -> None:
        with self.lock:
            self.answers[answer] += 1
            if execution_id is not None:
                self.ids.append(execution_id)
                self.seconds.append(seconds)
            elif len(self.problems) < 3:
                self.problems.append(f"{answer}: {problem[:300]}")


def _trigger_loop(api: _Api, pipeline_id: str, triggers: _Triggers) -> None:
    with _client(api.url, api.token) as http:
        while triggers.claim():
            started = time.perf_counter()
            try:
                answer = http.post(f"/api/pipelines/{pipeline_id}/executions", json={"input": {}, "comments": "load"})
            except httpx.HTTPError as error:
                triggers.record(type(error).__name__, None, 0.0, repr(error))
                continue
            execution_id = answer.json()["executionId"] if answer.status_code == 202 else None
            triggers.record(str(answer.status_code), execution_id, time.perf_counter() - started, answer.text)


@dataclass
class _Burst:
    """A burst of either kind: items per second, their start latencies, and the delays sampled amid it."""

    rate: float
    starts: list[float]
    delays: list[float]
    during: int  # how many of the sampled delays ended before the burst did
    statuses: Counter[str] = field(default_factory=Counter)  # of the burst's executions
    answers: Counter[str] = field(default_factory=Counter)  # to the burst's triggers
    failures: Counter[str] = field(default_factory=Counter)  # of the failing executions sampled amid it
    problems: list[str] = field(default_factory=list)


def _rollway_burst(api: _Api, load_id: str, failing_id: str, args: argparse.Namespace) -> _Burst:
    """Trigger the burst from client threads; once half are claimed, trigger the failing executions too."""
    triggers = _Triggers(args.executions)

    def trigger_failing() -> list[str]:
        triggers.halfway.wait()
        return [api.trigger(failing_id) for _ in range(args.samples)]

    with ThreadPoolExecutor(args.clients + 1) as pool:
        failing = pool.submit(trigger_failing)
        started = time.time()
        clients = [pool.submit(_trigger_loop, api, load_id, triggers) for _ in range(args.clients)]
        try:
            for client in clients:
                client.result()
        finally:
            triggers.halfway.set()
        failing_ids = failing.result()
    deadline = time.monotonic() + 120 + args.executions
    while api.get("/api/executions", pipeline=load_id, status=NOT_TERMINAL, limit=1) and time.monotonic() < deadline:
        time.sleep(0.25)
    accepted = set(triggers.ids)
    ours = [found for found in api.executions(load_id) if found["id"] in accepted]
    ended = max((_at(found["finishedAt"]) for found in ours if found["finishedAt"]), default=time.time())
    samples = [_failure_sample(api, parent_id) for parent_id in failing_ids]
    return _Burst(
        rate=len(ours) / (ended - started),
        starts=triggers.seconds,
        delays=[sample.delay for sample in samples if sample.delay is not None],
        during=sum(1 for sample in samples if sample.rollback_started is not None and sample.rollback_started < ended),
        statuses=Counter(found["status"] for found in ours),
        answers=triggers.answers,
        failures=Counter(sample.status for sample in samples),
        problems=triggers.problems,
    )


def _ping(celery: Celery) -> tuple[AsyncResult[Any], float]:
    sent = time.time()
    return celery.send_task(TASK_PING), sent


def _done_at(result: AsyncResult[Any], timeout: float = EXECUTION_SECONDS) -> float:
    """When the worker stored the result: its clock, as Rollway's startedAt and finishedAt are the workers'.

    The stored result is polled rather than awaited with `get()`: `get()` waits for the backend's pub/sub notice,
    which a burst of subscriptions can miss, and then waits for ever on a task that is long done.
    """
    deadline = time.monotonic() + timeout
    while not result.ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {result.id} did not finish within {timeout:g} s")
        time.sleep(0.01)
    if result.failed():
        raise RuntimeError(f"task {result.id} failed: {result.result!r}")
    if result.date_done is None:
        raise RuntimeError(f"task {result.id} has a result but no date_done")
    return result.date_done.timestamp()


def _raw_chain(celery: Celery) -> AsyncResult[Any]:
    return chain(*(celery.signature(TASK_PING, immutable=True) for _ in range(5))).apply_async()


def _raw_burst(celery: Celery, args: argparse.Namespace) -> _Burst:
    """Send the chains as fast as possible from one thread; halfway through, send the pings."""
    chains: list[AsyncResult[Any]] = []
    sends: list[float] = []
    pings: list[tuple[AsyncResult[Any], float]] = []
    started = time.time()
    for index in range(args.executions):
        if index == args.executions // 2:
            pings = [_ping(celery) for _ in range(args.samples)]
        before = time.perf_counter()
        chains.append(_raw_chain(celery))
        sends.append(time.perf_counter() - before)
    ended = max(_done_at(result, 120 + args.executions) for result in chains)
    done = [_done_at(result) for result, _ in pings]
    delays = [finished - sent for finished, (_, sent) in zip(done, pings, strict=True)]
    return _Burst(len(chains) / (ended - started), sends, delays, sum(1 for finished in done if finished < ended))


@dataclass
class _Measured:
    """Everything the report prints."""

    rollway: _Burst
    raw: _Burst
    rollback_idle: list[float]
    ping_idle: list[float]
    idle_statuses: Counter[str]
    beat: str = ""


def _measure(api: _Api, celery: Celery, ids: dict[str, str], args: argparse.Namespace) -> _Measured:
    """Warm both up, take the idle samples one at a time, then the raw burst and the Rollway burst."""
    warm = api.finished(api.trigger(ids[LOAD]))
    if warm["status"] != "COMPLETED":
        raise RuntimeError(f"the warm-up execution ended {warm['status']}: {warm['statusMessage']}")
    _failure_sample(api, api.trigger(ids[FAILING]))
    _done_at(_raw_chain(celery))
    idle = [_failure_sample(api, api.trigger(ids[FAILING])) for _ in range(args.samples)]
    ping_idle = [_done_at(result) - sent for result, sent in (_ping(celery) for _ in range(args.samples))]
    raw = _raw_burst(celery, args)
    rollway = _rollway_burst(api, ids[LOAD], ids[FAILING], args)
    delays = [sample.delay for sample in idle if sample.delay is not None]
    return _Measured(rollway, raw, delays, ping_idle, Counter(sample.status for sample in idle))


# --- the run ------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Measure and print the report; exit 1 if anything did not end as it should (timings are never judged)."""
    redis_url = os.environ.get("ROLLWAY_REDIS_URL") or DEFAULT_REDIS
    broker = redis.Redis.from_url(redis_url)
    database_url = os.environ.get("ROLLWAY_DATABASE_URL") or f"{DEFAULT_POSTGRES}/{BENCH_DB}"
    ours = not os.environ.get("ROLLWAY_DATABASE_URL")
    if ours:
        _admin(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)', f'CREATE DATABASE "{BENCH_DB}"')
    broker.flushdb()
    try:
        with tempfile.TemporaryDirectory(prefix="rollway-bench-load-") as folder:
            measured = _run(args, Path(folder), database_url, redis_url)
    finally:
        broker.flushdb()
        broker.close()
        if ours:
            _admin(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    database = "SQLite" if database_url.startswith("sqlite") else "PostgreSQL"
    queued = f" (those beyond {PIPELINE_CONCURRENCY} queue)" if args.executions > PIPELINE_CONCURRENCY else ""
    tasks = "REST POST, POLL, Condition, REST GET, Condition"
    print(f"load: {args.executions} executions{queued} of a 5-task pipeline ({tasks}) over HTTP")
    workers = f"{args.workers} x `rollway worker -c {args.concurrency}`"
    print(f"setup: {workers}, `rollway serve`, {args.clients} HTTP clients, {args.samples} latency samples each;")
    print(f"       beat {measured.beat}; {database}, broker {redis_url}")
    print("\n".join(_report(measured, args)))
    return _verdict(measured, args)


def _run(args: argparse.Namespace, folder: Path, database_url: str, redis_url: str) -> _Measured:
    token = secrets.token_urlsafe(24)
    env = dict(os.environ, ROLLWAY_DATABASE_URL=database_url, ROLLWAY_REDIS_URL=redis_url, ROLLWAY_API_TOKEN=token)
    env.setdefault("ROLLWAY_SECRET_KEY", secrets.token_urlsafe(32))
    celery = make_celery(Settings.from_env(env))
    processes = _Processes(folder, env)
    api = _Api(f"http://127.0.0.1:{_free_port()}", token)
    try:
        with _web_service() as web:
            if processes.has_command("db", "upgrade"):
                processes.upgrade()
            processes.start("serve", "serve", "--host", "127.0.0.1", "--port", api.url.rsplit(":", 1)[1])
            for number in range(args.workers):
                processes.start(f"worker-{number}", "worker", "-c", str(args.concurrency), "--loglevel", "WARNING")
            if processes.has_command("beat"):
                processes.start("beat", "beat")
            _wait_ready(api, celery, args.workers, processes)
            ids = {doc["name"]: api.post("/api/pipelines", doc, 201, "id") for doc in _documents(web)}
            measured = _measure(api, celery, ids, args)
            processes.check()
    finally:
        beat = _beat_state(processes)
        processes.stop()
        api.http.close()
        celery.close()
    measured.beat = beat
    return measured


def _beat_state(processes: _Processes) -> str:
    if "beat" not in processes.running:
        return "not started (`rollway beat --help` failed)"
    code = processes.running["beat"].poll()
    return "running" if code is None else f"started, but exited with {code}"


# --- the report ---------------------------------------------------------------------------------------------


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _times(*samples: Sequence[float]) -> list[float]:
    """p50 and p99 of each list of seconds (NaN for an empty one)."""
    return [_percentile(values, q) if values else math.nan for values in samples for q in (0.5, 0.99)]


def _row(label: str, rate: str, cells: Sequence[str], note: str = "") -> str:
    return f"{label:<28}{rate:>10}" + "".join(f"{cell:>11}" for cell in cells) + note


def _ms(seconds: Sequence[float]) -> list[str]:
    return [f"{value * 1000:.1f} ms" for value in seconds]


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items())) or "none"


def _report(measured: _Measured, args: argparse.Namespace) -> list[str]:
    ours, raw, samples, count = measured.rollway, measured.raw, args.samples, args.executions
    ours_times = _times(ours.starts, measured.rollback_idle, ours.delays)
    raw_times = _times(raw.starts, measured.ping_idle, raw.delays)
    ratios = [
        f"{mine / theirs:.2f}x" if theirs > 0 else "n/a" for mine, theirs in zip(ours_times, raw_times, strict=True)
    ]
    return [
        _row("", "rate", ("start p50", "p99", "idle p50", "p99", "burst p50", "p99")),
        _row(f"Rollway     {count} executions", f"{ours.rate:.1f}/s", _ms(ours_times), f"  {ours.during}/{samples}"),
        _row(f"raw Celery  {count} chains of 5", f"{raw.rate:.1f}/s", _ms(raw_times), f"  {raw.during}/{samples}"),
        _row("ratio (Rollway's cost)", f"{raw.rate / ours.rate:.2f}x" if ours.rate else "n/a", ratios),
        "rate: executions/s | chains/s, first trigger to last end; start: trigger POST answered 202 | apply_async",
        "returned; idle, burst: a failed task's end to its rollback's first task start | a ping sent to done;",
        "n/N: how many of the burst samples ended before the burst did",
        f"statuses: burst {_counts(ours.statuses)}; trigger answers {_counts(ours.answers)};"
        f" failing idle {_counts(measured.idle_statuses)}, amid the burst {_counts(ours.failures)}",
        *(f"problem: {problem}" for problem in ours.problems),
    ]


def _verdict(measured: _Measured, args: argparse.Namespace) -> int:
    """1 if a burst execution did not complete, a trigger was refused or a failure did not roll back."""
    ours = measured.rollway
    clean = (
        ours.statuses.get("COMPLETED", 0) == args.executions
        and len(ours.starts) == args.executions
        and len(measured.rollback_idle) == len(ours.delays) == args.samples
    )
    if not clean:
        print("FAILED: the numbers above are not a clean measurement (see the statuses)")
    return 0 if clean else 1
