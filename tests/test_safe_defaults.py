"""Safe defaults: no open API off loopback, no unbounded request bodies, no default secrets in compose.yaml."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.cli import is_loopback
from orchestrator import defaults
from orchestrator.settings import Settings

from rollway_testing import TOKEN, rollway_command
from serve_process import ServeProcess, free_port, rollway_env

ROOT = Path(__file__).resolve().parent.parent
# `${NAME:?message}`: compose refuses to start while NAME is unset or empty.
REQUIRED = re.compile(r"^\$\{(?P<name>[A-Z_]+):\?[^}]*\}$")
SECRETS = ("ROLLWAY_API_TOKEN", "ROLLWAY_SECRET_KEY", "POSTGRES_PASSWORD")


def serve_env(settings: Settings, **variables: str) -> dict[str, str]:
    """The environment of `rollway serve` on the test database and Redis, with no token unless given."""
    return rollway_env(
        ROLLWAY_DATABASE_URL=settings.database_url, ROLLWAY_REDIS_URL=settings.redis_url or "", **variables
    )


# -- rollway serve: no token, no public address


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "rollway.example.com"])
def test_serve_on_a_non_loopback_address_without_a_token_refuses_to_start(host: str, settings: Settings) -> None:
    # Given a deployment with no ROLLWAY_API_TOKEN (its database ready, so only the token can stop it)
    env = serve_env(settings)

    # When `rollway serve` is asked to listen on an address other machines reach
    command = [*rollway_command(), "serve", "--host", host, "--port", str(free_port())]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=60)

    # Then it exits at once with an error naming the missing variable, and nothing listens
    assert done.returncode != 0
    assert "ROLLWAY_API_TOKEN" in done.stderr and host in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_serve_on_loopback_without_a_token_starts(host: str, settings: Settings, tmp_path: Path) -> None:
    # Given a deployment with no ROLLWAY_API_TOKEN
    served = ServeProcess(serve_env(settings), tmp_path / "serve.log", host=host)

    # When `rollway serve` listens on loopback only
    try:
        served.start()
        answer = httpx.get(f"{served.url}/api/pipelines", timeout=10)
    finally:
        served.stop()

    # Then it serves, open as before (for one machine: the demo, a laptop)
    assert answer.status_code == 200, answer.text


def test_serve_on_every_address_with_a_token_starts_and_asks_for_it(settings: Settings, tmp_path: Path) -> None:
    # Given a deployment with ROLLWAY_API_TOKEN
    served = ServeProcess(serve_env(settings, ROLLWAY_API_TOKEN=TOKEN), tmp_path / "serve.log", host="0.0.0.0")

    # When `rollway serve` listens on every address
    try:
        served.start()
        anonymous = httpx.get(f"{served.url}/api/pipelines", timeout=10)
        with_token = httpx.get(f"{served.url}/api/pipelines", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    finally:
        served.stop()

    # Then it serves those who have the token only
    assert (anonymous.status_code, with_token.status_code) == (401, 200)


def test_loopback_means_this_machine_only() -> None:
    # Then loopback addresses and the name localhost count as this machine, and nothing else does
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "", "10.0.0.1", "my-host", "127.0.0.1.nip.io"))


# -- request bodies


def raw_request(url: str, head: str, body: bytes = b"") -> bytes:
    """Send a request's head and part of its body over a socket; all the server answers before it closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Any:
    process = ServeProcess(serve_env(settings, ROLLWAY_API_TOKEN=TOKEN), tmp_path / "serve.log").start()
    yield process
    process.stop()


def test_a_body_over_the_limit_is_refused_413_before_it_is_read_even_without_a_token(served: ServeProcess) -> None:
    # Given a request, without a token, that announces a body one byte over the limit but sends only a little
    length = defaults.MAX_REQUEST_BYTES + 1
    head = (
        f"POST /api/pipelines HTTP/1.1\r\nHost: rollway\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n"
    )

    # When it reaches the server
    answer = raw_request(served.url, head, b"{" * 1024)

    # Then the server answers 413 at once, without waiting for (or buffering) the rest of the body
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_body_up_to_the_limit_reaches_the_api(served: ServeProcess) -> None:
    # Given a body of exactly the limit, with the token
    body = b" " * (defaults.MAX_REQUEST_BYTES - 2) + b"{}"

    # When it is sent
    answer = httpx.post(
        f"{served.url}/api/pipelines",
        content=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=30,
    )

    # Then the API reads it and answers about the document (too large for a pipeline), not the server about size
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"].startswith("the document is larger than")


# -- compose.yaml


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def test_compose_has_no_default_secrets() -> None:
    # Given the services of compose.yaml (anchors merged)
    services = compose()["services"]

    # Then every secret a service is given comes from a variable compose requires, never from a default
    given = {
        (service, name): str(value)
        for service, spec in services.items()
        for name, value in (spec.get("environment") or {}).items()
        if name in SECRETS
    }
    assert {name for _, name in given} == set(SECRETS)
    for (service, name), value in given.items():
        match = REQUIRED.match(value)
        assert match is not None and match["name"] == name, f"{service}: {name} is {value!r}"
    # ... and the database URL takes its password from the same required variable
    urls = [spec["environment"].get("ROLLWAY_DATABASE_URL") for spec in services.values() if "environment" in spec]
    for url in filter(None, urls):
        assert re.match(r"^postgresql://postgres:\$\{POSTGRES_PASSWORD:\?[^}]*\}@", url), url


def test_compose_publishes_flower_on_this_host_only_and_behind_a_password() -> None:
    # Given Flower's service in compose.yaml
    flower = compose()["services"]["flower"]
    command = flower["command"] if isinstance(flower["command"], list) else str(flower["command"]).split()

    # Then it asks for a password from a required variable
    auth = [part for part in command if str(part).startswith("--basic-auth=")]
    assert len(auth) == 1 and REQUIRED.match(auth[0].removeprefix("--basic-auth=")), command
    # ... and any port it publishes is bound to loopback
    for port in flower.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), port
