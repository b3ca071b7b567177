"""Orchestration overhead: a pipeline of N sequential Condition tasks against a raw Celery chain of N no-op
tasks, on the same Redis and the same worker process, measured in the same run."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
from celery import Celery, chain
from sqlalchemy import create_engine, text

from orchestrator.document import load_pipeline
from orchestrator.engine import Engine
from orchestrator.execution import PipelineRecord
from orchestrator.settings import Settings, sqlite_url
from orchestrator.status import ExecutionStatus
from orchestrator.store import Store
from workers.celery_app import make_celery
from workers.constants import TASK_PING
from workers.dispatcher import CeleryDispatcher

DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"
BENCH_DB = "rollway_bench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=10, help="tasks in the pipeline and in the chain")
    parser.add_argument("--runs", type=int, default=30, help="measured runs of each")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured runs of each first")
    parser.add_argument("--concurrency", type=int, default=1, help="worker processes")
    parser.add_argument("--sqlite", action="store_true", help="use a SQLite file instead of PostgreSQL")


def _database_url(use_sqlite: bool, folder: Path) -> str:
    if os.environ.get("ROLLWAY_DATABASE_URL"):
        return os.environ["ROLLWAY_DATABASE_URL"]
    if use_sqlite:
        return sqlite_url(folder / "bench.db")
    admin = create_engine(f"{DEFAULT_POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{BENCH_DB}"'))
    admin.dispose()
    return f"{DEFAULT_POSTGRES}/{BENCH_DB}"


def _pipeline(tasks: int) -> dict[str, object]:
    names = [f"Check {number}" for number in range(1, tasks + 1)]
    return {
        "name": "Bench-Overhead",
        "project": "bench",
        "enabled": True,
        "concurrency": 1000,
        "stageOrder": ["Checks"],
        "stages": {
            "Checks": {
                "taskOrder": names,
                "tasks": {name: {"type": "Condition", "input": {"condition": "1 == 1"}} for name in names},
            }
        },
    }


def _start_worker(settings: Settings, concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, ROLLWAY_DATABASE_URL=settings.database_url, ROLLWAY_REDIS_URL=str(settings.redis_url))
    command = [sys.executable, "-m", "api", "worker", "-c", str(concurrency), "--loglevel", "WARNING"]
    worker = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return worker


def _raw_chain(celery: Celery, tasks: int) -> float:
    """Seconds from sending a chain of no-op tasks to receiving the last one's result."""
    workflow = chain(*(celery.signature(TASK_PING, immutable=True) for _ in range(tasks)))
    started = time.perf_counter()
    workflow.apply_async().get(timeout=60)
    return time.perf_counter() - started


def _summary(label: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"{label:<44} median {statistics.median(seconds) * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms"


def run(args: argparse.Namespace) -> int:
    """Measure both, print both and their ratio; exit 0 (the goal is reported, not enforced)."""
    with tempfile.TemporaryDirectory() as folder:
        redis_url = os.environ.get("ROLLWAY_REDIS_URL", DEFAULT_REDIS)
        redis.Redis.from_url(redis_url).flushdb()
        settings = Settings(database_url=_database_url(args.sqlite, Path(folder)), redis_url=redis_url)
        store = Store.connect(settings.database_url)
        celery = make_celery(settings)
        engine = Engine(store, CeleryDispatcher(celery))
        record = store.add_pipeline(load_pipeline(_pipeline(args.tasks), store.rollback_target))
        worker = _start_worker(settings, args.concurrency, Path(folder) / "worker.log")
        try:
            celery.send_task(TASK_PING).get(timeout=60)
            raw = _measure(args, lambda: _raw_chain(celery, args.tasks))
            ours = _measure(args, lambda: _pipeline_run(engine, store, record))
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            store.dispose()
    database = "SQLite" if settings.is_sqlite else "PostgreSQL"
    print(f"overhead: {args.tasks} sequential tasks, {args.runs} runs each after {args.warmup} warm-up runs")
    print(f"worker: one `rollway worker -c {args.concurrency}`; broker {redis_url}; database {database}")
    print(_summary(f"raw Celery chain of {args.tasks} no-op tasks", raw))
    print(_summary(f"Rollway pipeline of {args.tasks} Condition tasks", ours))
    ratio = statistics.median(ours) / statistics.median(raw)
    print(f"ratio (pipeline / raw chain, medians): {ratio:.2f}x   goal: within 2x")
    return 0


def _measure(args: argparse.Namespace, action: Callable[[], float]) -> list[float]:
    for _ in range(args.warmup):
        action()
    return [action() for _ in range(args.runs)]


def _pipeline_run(engine: Engine, store: Store, record: PipelineRecord) -> float:
    """Seconds from the trigger to the moment the worker recorded the execution COMPLETED.

    Taken from the recorded finish time (same machine, same clock), so how often this loop polls for the
    end does not count against the pipeline.
    """
    started = time.time()
    execution = engine.trigger(record, {}, "bench")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        finished = store.get_execution(execution.id)
        if finished.status.is_terminal:
            if finished.status is not ExecutionStatus.COMPLETED or finished.finished_at is None:
                raise RuntimeError(f"bench execution ended {finished.status}: {finished.status_message}")
            return finished.finished_at.timestamp() - started
        time.sleep(0.01)
    raise RuntimeError("bench execution did not finish in 60 s")
