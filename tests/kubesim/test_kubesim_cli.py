"""The command line: ``python -m kubesim`` serves until told to stop."""

from __future__ import annotations

import signal
import subprocess
import sys

from kubesim.cli import build_parser

from kubesim_support import http


def test_parser_collects_repeated_image_options() -> None:
    # Given repeated image options
    # When they are parsed
    options = build_parser().parse_args(["--port", "0", "--unpullable", "a:*", "--unpullable", "b", "--crashing", "c"])

    # Then every value is kept
    assert (options.port, options.unpullable, options.crashing) == (0, ["a:*", "b"], ["c"])
    assert build_parser().parse_args([]).port == 6443


def test_module_serves_until_terminated() -> None:
    # Given the emulator started as a module on a free port with a bad image
    process = subprocess.Popen(
        [sys.executable, "-m", "kubesim", "--port", "0", "--unpullable", "nginx:bad*", "--ready-delay", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # When it announces its address and is queried
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        url = line.removeprefix("kubesim listening on ")
        code, lists = http("GET", f"{url}/kubesim/images")
        version = http("GET", f"{url}/version")[1]
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()

    # Then it served with the options given and exited cleanly on SIGTERM
    assert line.startswith("kubesim listening on http://127.0.0.1:")
    assert (code, lists["unpullable"]) == (200, ["nginx:bad*"])
    assert version["major"] == "1"
    assert returncode == 0
