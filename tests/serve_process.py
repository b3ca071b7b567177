"""`rollway serve` as a real process on a free local port (waitress, as deployed), for tests of the server itself."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

from rollway_testing import rollway_command


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rollway_env(**variables: str) -> dict[str, str]:
    """This environment without any ROLLWAY_* variable, plus the given ones."""
    return {name: value for name, value in os.environ.items() if not name.startswith("ROLLWAY_")} | variables


class ServeProcess:
    """`rollway serve --host HOST --port PORT`, answering on 127.0.0.1 once `start` returns; `stop` ends it."""

    def __init__(self, env: dict[str, str], log_path: Path, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = [*rollway_command(), "serve", "--host", host, "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def start(self, timeout: float = 60.0) -> ServeProcess:
        """Wait until it answers HTTP (any status); RuntimeError with the log if it ends or never answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                httpx.get(f"{self.url}/api/pipelines", timeout=2)
                return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"rollway serve did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
