"""`python -m bench overhead` and `python -m bench load` run end to end and report their measurements beside raw
Celery's, and the ratios (timings are printed for people, never asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from rollway_testing import REDIS_URL


def test_the_overhead_benchmark_prints_both_times_and_their_ratio(pg_url: str, redis_url: str) -> None:
    # Given the test PostgreSQL and Redis
    env = dict(os.environ, ROLLWAY_DATABASE_URL=pg_url, ROLLWAY_REDIS_URL=REDIS_URL)

    # When the benchmark runs a few rounds
    command = [sys.executable, "-m", "bench", "overhead", "--runs", "3", "--warmup", "1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    # Then it succeeded and printed the raw chain, the pipeline and the ratio
    assert done.returncode == 0, done.stderr
    assert re.search(r"raw Celery chain of 10 no-op tasks\s+median\s+[\d.]+ ms", done.stdout), done.stdout
    assert re.search(r"Rollway pipeline of 10 Condition tasks\s+median\s+[\d.]+ ms", done.stdout), done.stdout
    assert re.search(r"ratio \(pipeline / raw chain, medians\): [\d.]+x", done.stdout), done.stdout


@pytest.mark.timeout(300)
def test_the_load_benchmark_prints_rollway_and_raw_celery_rows_and_their_ratios(pg_url: str, redis_url: str) -> None:
    # Given the test PostgreSQL and Redis
    env = dict(os.environ, ROLLWAY_DATABASE_URL=pg_url, ROLLWAY_REDIS_URL=redis_url)

    # When the load benchmark runs a small burst on one worker
    command = [sys.executable, "-m", "bench", "load", "--executions", "12", "--workers", "1", "--samples", "2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=280, check=False)

    # Then it succeeded and printed a row of numbers for each, the ratios, and every burst execution COMPLETED
    assert done.returncode == 0, done.stdout + done.stderr
    times = r"(\s+[\d.]+ ms){6}"
    assert re.search(r"^\s+rate\s+start p50\s+p99\s+idle p50\s+p99\s+burst p50\s+p99$", done.stdout, re.M), done.stdout
    assert re.search(rf"^Rollway\s+12 executions\s+[\d.]+/s{times}", done.stdout, re.M), done.stdout
    assert re.search(rf"^raw Celery\s+12 chains of 5\s+[\d.]+/s{times}", done.stdout, re.M), done.stdout
    assert re.search(r"^ratio \(Rollway's cost\)(\s+[\d.]+x){7}$", done.stdout, re.M), done.stdout
    assert "statuses: burst COMPLETED 12; trigger answers 202 12;" in done.stdout, done.stdout
