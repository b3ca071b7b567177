"""`rollway demo`: a release that succeeds, then one that fails its health check and rolls back by itself.

Everything runs in this process on embedded defaults: a SQLite file in a temporary folder, Redis on
localhost when one answers (else Celery's in-memory transport), a Celery worker on threads, the HTTP API
on a free port, and a small web service standing in for the application being released. The demo talks
to Rollway only through its HTTP API, and exits 0 only if every outcome is the one it announces.
"""

from __future__ import annotations

import json
import logging
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from werkzeug import Request, Response
from werkzeug.serving import make_server

from api.app import create_app
from api.cli import executions_table
from api.client import Client
from orchestrator.settings import DEFAULT_REDIS_URL, Settings, sqlite_url
from workers.celery_app import make_celery
from workers.embedded import EmbeddedWorker

PIPELINE = "Release-Example"
ROLLBACK = "Release-Example_Rollback"
TERMINAL = {"COMPLETED", "FAILED", "CANCELED", "ROLLBACK_COMPLETED", "ROLLBACK_FAILED"}
Echo = Callable[[str], None]
STARTUP_SECONDS = 0.4
NO_ROLLBACK = {"status": "not started", "rollbackOf": None, "comments": ""}


class Storefront:
    """The application being released: it runs one version; a version named *-broken reports itself DOWN."""

    def __init__(self) -> None:
        self.version = "0.9"
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_json(silent=True) or {}
        with self.lock:
            if request.path in ("/deploy", "/restore") and request.method == "POST":
                time.sleep(STARTUP_SECONDS)  # a new version takes a moment to start
                previous, self.version = self.version, str(body.get("version", ""))
                answer: dict[str, Any] = {"version": self.version, "previousVersion": previous}
            elif request.path == "/health":
                answer = {"status": "DOWN" if self.version.endswith("-broken") else "UP", "version": self.version}
            else:
                return Response("not found", status=404)(environ, start_response)
        return Response(json.dumps(answer), content_type="application/json")(environ, start_response)


def _documents(storefront_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    health = {
        "type": "POLL",
        "input": {
            "url": f"{storefront_url}/health",
            "pollCount": 10,
            "pollIntervalSeconds": 0.3,
            "exitCriteria": {
                "success": "${responseJson.status} == 'UP'",
                "failure": "${responseJson.status} == 'DOWN'",
            },
        },
    }
    rollback = {
        "kind": "PIPELINE",
        "name": ROLLBACK,
        "project": "demo",
        "enabled": True,
        "input": {"previousVersion": ""},
        "_inputMeta": {"previousVersion": {"mandatory": True, "description": "the version to put back"}},
        "stageOrder": ["Restore"],
        "stages": {
            "Restore": {
                "taskOrder": ["Restore Version", "Verify Health"],
                "tasks": {
                    "Restore Version": {
                        "type": "REST",
                        "input": {
                            "action": "post",
                            "url": f"{storefront_url}/restore",
                            "payload": {"version": "${input.previousVersion}"},
                        },
                    },
                    "Verify Health": health,
                },
            }
        },
    }
    release = {
        "kind": "PIPELINE",
        "name": PIPELINE,
        "project": "demo",
        "enabled": False,
        "input": {"version": ""},
        "_inputMeta": {"version": {"mandatory": True, "description": "the version to release"}},
        "output": {"released": "${Release.Deploy Version.output.responseJson.version}"},
        "stageOrder": ["Release"],
        "stages": {
            "Release": {
                "rollback": {
                    "pipeline": ROLLBACK,
                    "input": {"previousVersion": "${Release.Deploy Version.output.responseJson.previousVersion}"},
                },
                "taskOrder": ["Check Version", "Deploy Version", "Verify Health"],
                "tasks": {
                    "Check Version": {"type": "Condition", "input": {"condition": "${input.version} != ''"}},
                    "Deploy Version": {
                        "type": "REST",
                        "input": {
                            "action": "post",
                            "url": f"{storefront_url}/deploy",
                            "payload": {"version": "${input.version}"},
                        },
                    },
                    "Verify Health": health,
                },
            }
        },
    }
    return rollback, release


def embedded_settings(folder: Path, use_redis: bool = True) -> Settings:
    """SQLite in `folder`; Redis on localhost if it answers, under a key prefix of its own, else in-memory."""
    settings = Settings(database_url=sqlite_url(folder / "rollway.db"), redis_url=None, api_token=secrets.token_hex(16))
    if not use_redis:
        return settings
    try:
        redis.Redis.from_url(DEFAULT_REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return settings
    return settings.with_changes(redis_url=DEFAULT_REDIS_URL, redis_prefix=f"rollway-demo-{uuid.uuid4()}:")


@contextmanager
def _served(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _watch(client: Client, execution_id: str, echo: Echo, timeout: float = 120.0) -> dict[str, Any]:
    """Print each status change of an execution, and of the rollback it starts, until it ends."""
    seen: dict[str, str] = {}
    watched = [execution_id]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        views = [client.call("GET", f"/api/executions/{current}") for current in watched]
        for view in reversed(views):  # a rollback's news before its parent's, which it explains
            _report(view, seen, echo)
        rollback_id = views[0].get("rollbackExecutionId")
        if rollback_id and rollback_id not in watched:
            watched.append(rollback_id)
            continue
        if views[0]["status"] in TERMINAL:
            return dict(views[0])
        time.sleep(0.05)
    raise TimeoutError(f"execution {execution_id} did not end within {timeout:.0f}s")


def _report(found: dict[str, Any], seen: dict[str, str], echo: Echo) -> None:
    """Print what changed in an execution: its tasks, and its status (before them when it starts running)."""
    label = f"{found['pipeline']} #{found['index']}"
    lines = []
    for stage in found["stages"]:
        for task in stage["tasks"]:
            key = f"{found['id']}/{stage['name']}/{task['name']}"
            if task["status"] not in ("NOT_STARTED", "QUEUED") and seen.get(key) != task["status"]:
                seen[key] = task["status"]
                note = f"  ({task['statusMessage']})" if task["status"] == "FAILED" else ""
                lines.append(f"  {label}  {stage['name']} / {task['name']}: {task['status']}{note}")
    if seen.get(found["id"]) != found["status"]:
        seen[found["id"]] = found["status"]
        status = f"{label}: {found['status']}"
        lines = [status, *lines] if found["status"] == "RUNNING" else [*lines, status]
    for line in lines:
        echo(line)


def _checks(first: dict[str, Any], second: dict[str, Any], child: dict[str, Any], storefront: Storefront) -> list[str]:
    """What the demo promised, as failures (empty when everything held)."""
    expectations = [
        (first["status"] == "COMPLETED", f"the first release ended {first['status']}, not COMPLETED"),
        (second["status"] == "ROLLBACK_COMPLETED", f"the broken release ended {second['status']}"),
        (child["status"] == "COMPLETED", f"its rollback ended {child['status']}"),
        (child["rollbackOf"] == second["id"], "the rollback execution does not name the execution it rolled back"),
        ("Verify Health" in child["comments"], "the rollback's comments do not name the task that failed"),
        (storefront.version == "1.0", f"the storefront runs {storefront.version}, not 1.0 again"),
    ]
    return [message for held, message in expectations if not held]


def run_demo(echo: Echo, use_redis: bool = True) -> int:
    """Run the demo; 0 when everything turned out as announced. Without `use_redis`, never touch Redis."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="rollway-demo-") as folder:
        settings = embedded_settings(Path(folder), use_redis)
        celery = make_celery(settings)
        storefront = Storefront()
        broker = f"Redis at {settings.redis_url}" if settings.redis_url else "Celery's in-memory transport"
        echo(f"Rollway demo: SQLite in {folder}, {broker}, an embedded worker, the API on a free local port")
        with (
            EmbeddedWorker(celery),
            _served(storefront) as storefront_url,
            _served(create_app(settings, celery)) as url,
        ):
            client = Client(url, settings.api_token)
            rollback, release = _documents(storefront_url)
            client.call("POST", "/api/pipelines", json=rollback)
            created = client.call("POST", "/api/pipelines", json=release)
            client.call("PATCH", f"/api/pipelines/{created['id']}", json={"enabled": True})
            echo(f"pipelines {PIPELINE} and {ROLLBACK} created; the storefront runs {storefront.version}\n")
            runs = []
            for version, note in (("1.0", "a good release"), ("2.0-broken", "a release whose health check fails")):
                echo(f"== run {PIPELINE} with version {version}: {note}")
                body = {"input": {"version": version}, "comments": f"demo: {note}"}
                answer = client.call("POST", f"/api/pipelines/{created['id']}/executions", json=body)
                runs.append(_watch(client, answer["executionId"], echo))
                echo(f"   the storefront now runs {storefront.version}\n")
            child_id = runs[1].get("rollbackExecutionId")
            child = client.call("GET", f"/api/executions/{child_id}") if child_id else NO_ROLLBACK
            echo(executions_table(client.call("GET", "/api/executions")))
            echo(f"\nrollback comments: {child['comments']}")
            failures = _checks(runs[0], runs[1], child, storefront)
    for failure in failures:
        echo(f"demo FAILED: {failure}")
    if not failures:
        echo("demo OK: the broken release rolled back by itself and the storefront runs 1.0 again")
    return 1 if failures else 0
