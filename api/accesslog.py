"""The access log: one INFO line per request on logger `rollway.access`, after it is answered.

`GET /api/executions 200 12.3ms token=release-bot`: the method, the path without its query string (a query may
carry what should not be kept), the status, how long the answer took, and the name of the token that asked (never
the token). Control characters of the path are escaped, so a request cannot write lines of its own.
"""

from __future__ import annotations

import logging
import sys
import time

from flask import Flask, Response, g, request

from orchestrator.policy import Principal

log = logging.getLogger("rollway.access")

STARTED = "access_started"
NO_TOKEN = "-"


def install(app: Flask) -> None:
    """Log every request `app` answers. Call it before any other `before_request`, so that a request refused there
    (401, 403) is timed too."""
    app.before_request(_start)
    app.after_request(record)
    _ensure_output()


def _start() -> None:
    setattr(g, STARTED, time.perf_counter())


def record(response: Response) -> Response:
    """Log the answer to the current request; never changes it."""
    started = g.get(STARTED)
    elapsed = 0.0 if started is None else (time.perf_counter() - started) * 1000
    found = g.get("principal")
    who = found.name if isinstance(found, Principal) else NO_TOKEN
    log.info("%s %s %s %.1fms token=%s", request.method, printable(request.path), response.status_code, elapsed, who)
    return response


def printable(text: str) -> str:
    """`text` with control characters escaped (a newline in a path must not start a forged log line)."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _ensure_output() -> None:
    """Without any logging set up (a bare `rollway serve`), INFO lines would go nowhere: give the access log a
    handler of its own on stderr. Where the process configured logging, its handlers take the lines instead."""
    log.setLevel(logging.INFO)
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log.addHandler(handler)
    log.propagate = False
