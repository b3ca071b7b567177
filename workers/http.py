"""The HTTP adapter that REST and POLL tasks call through (httpx), and the output shape of a response."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.errors import EndpointError

MAX_BODY_CHARS = 1_000_000
DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class HttpResponse:
    """What a task saw of an HTTP answer."""

    status_code: int
    headers: Mapping[str, str]
    body: str
    json: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def as_output(self) -> dict[str, Any]:
        """Code Stream's names for a response in a task's output."""
        return {
            "responseCode": self.status_code,
            "responseHeaders": dict(self.headers),
            "responseBody": self.body,
            "responseJson": self.json,
        }


def _body(payload: object, headers: dict[str, str]) -> bytes | None:
    if payload is None or payload == "":
        return None
    if isinstance(payload, str):
        return payload.encode()
    headers.setdefault("content-type", "application/json")
    return json.dumps(payload).encode()


def _decode(response: httpx.Response) -> HttpResponse:
    body = response.text[:MAX_BODY_CHARS]
    try:
        parsed = json.loads(body) if body.strip() else None
    except ValueError:
        parsed = None
    return HttpResponse(response.status_code, dict(response.headers), body, parsed)


class HttpClient:
    """Sends one request and reads the answer; raises EndpointError when there is no answer."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._client = httpx.Client(timeout=timeout, follow_redirects=True)

    def request(
        self, method: str, url: str, headers: Mapping[str, object] | None = None, payload: object = None
    ) -> HttpResponse:
        sent = {str(name).lower(): str(value) for name, value in (headers or {}).items()}
        content = _body(payload, sent)
        try:
            response = self._client.request(method.upper(), url, headers=sent, content=content)
        except httpx.TimeoutException as error:
            raise EndpointError(f"{method.upper()} {url} timed out: {error}") from error
        except (httpx.HTTPError, ValueError) as error:
            raise EndpointError(f"{method.upper()} {url} failed: {error or type(error).__name__}") from error
        return _decode(response)

    def close(self) -> None:
        self._client.close()
