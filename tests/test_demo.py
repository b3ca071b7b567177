"""`rollway demo`: the seed scenario from a clean install, and the README shows what it prints."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from rollway_testing import rollway_command

README = Path(__file__).resolve().parent.parent / "README.md"
VARYING = [
    (re.compile(r"/tmp/rollway-demo-\w+|\S+/rollway-demo-\w+"), "<folder>"),
    (re.compile(r"Redis at redis://\S+?,|Celery's in-memory transport,"), "<broker>,"),
    (re.compile(r"http://127\.0\.0\.1:\d+"), "<url>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"(storefront-)[0-9a-f]{6,10}\b"), r"\1<hash>"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "<id>"),
]


def normalized(text: str) -> set[str]:
    """The lines of a demo run, with what differs from run to run (paths, ports, ids) replaced."""
    lines = set()
    for line in text.splitlines():
        kept = line
        for pattern, replacement in VARYING:
            kept = pattern.sub(replacement, kept)
        if kept.strip():
            lines.add(kept.rstrip())
    return lines


def readme_demo() -> str:
    text = README.read_text()
    section = text[text.index("## What the demo shows") :]
    return section[section.index("```text") + len("```text") : section.index("```\n", section.index("```text") + 7)]


def test_the_demo_rolls_back_the_broken_release_and_prints_what_the_readme_shows(tmp_path: Path) -> None:
    # Given a machine where the demo must not touch Redis (in-memory transport, embedded worker)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROLLWAY_")}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path))

    # When the demo runs
    done = subprocess.run(
        [*rollway_command(), "demo", "--no-redis"], env=env, capture_output=True, text=True, timeout=200, check=False
    )

    # Then it exits 0 having checked every outcome, with no traceback
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo OK" in done.stdout and "Traceback" not in done.stdout + done.stderr
    # ... and it printed the lines the README shows, but for paths, ports and ids
    shown, printed = normalized(readme_demo()), normalized(done.stdout)
    assert shown == printed, f"in the README only: {sorted(shown - printed)}\nprinted only: {sorted(printed - shown)}"
