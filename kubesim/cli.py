"""The ``kubesim`` command line: serve an emulated cluster until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from kubesim.simulator import KubeSim

DEFAULT_PORT = 6443


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog="kubesim", description="Serve an emulated Kubernetes API over HTTP.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on; 0 picks a free one (default: {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--unpullable",
        action="append",
        default=[],
        metavar="IMAGE",
        help="image (or glob) that fails to pull; repeatable",
    )
    crash_help = "image (or glob) whose containers crash-loop; repeatable"
    parser.add_argument("--crashing", action="append", default=[], metavar="IMAGE", help=crash_help)
    fail_help = "image (or glob) whose Job commands exit 1 (kubesim runs no command); repeatable"
    parser.add_argument("--failing", action="append", default=[], metavar="IMAGE", help=fail_help)
    parser.add_argument(
        "--ready-delay",
        type=float,
        default=0.3,
        metavar="SECONDS",
        help="seconds until a new pod is Ready (default: 0.3)",
    )
    parser.add_argument("--token", default=None, help="require this bearer token (default: accept any)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGINT or SIGTERM; returns the exit status."""
    options = build_parser().parse_args(argv)
    done = threading.Event()

    def finish(signum: int, frame: FrameType | None) -> None:
        done.set()

    sim = KubeSim(
        host=options.host,
        port=options.port,
        unpullable=options.unpullable,
        crashing=options.crashing,
        failing=options.failing,
        ready_delay=options.ready_delay,
        token=options.token,
    )
    try:
        sim.start()
    except OSError as error:
        print(f"kubesim: cannot listen on {options.host}:{options.port}: {error}", file=sys.stderr)
        return 1
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, finish)
    print(f"kubesim listening on {sim.url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0
