"""`python -m bench overhead` runs end to end and reports both measurements and their ratio (timings are
printed for people, never asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

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
