"""A small client of the Rollway HTTP API, for the command line.

Every way the call can go wrong (no server, a server that is not Rollway, an API error) is an `ApiError` whose
message is one line naming the URL or the API's reason, so the command line never shows a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from orchestrator.errors import RollwayError


class ApiError(RollwayError):
    """The API answered with an error, or could not be reached, or what answered is not the Rollway API."""


def _one_line(text: str, limit: int = 120) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class Client:
    """Calls the API at `url` with a bearer token."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, *, text: bool = False, **kwargs: Any) -> Any:
        """The decoded JSON answer (with `text`, the answer's text); raises ApiError with the API's message and
        details, or naming the URL when what answered is not the Rollway API."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.InvalidURL as error:
            raise ApiError(f"{self.url} is not a URL the Rollway API can be at: {error}") from error
        except httpx.HTTPError as error:
            raise ApiError(f"cannot reach the Rollway API at {self.url}: {_one_line(str(error))}") from error
        if response.status_code >= 400:
            raise ApiError(self._refusal(response))
        if not response.content:
            return None
        if text:
            return response.text
        try:
            if "json" not in response.headers.get("content-type", ""):
                raise ValueError("not JSON")
            return response.json()
        except ValueError as error:
            raise ApiError(self._foreign(response)) from error

    def rows(self, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        """A GET answering a list of objects; ApiError when the server answers anything else."""
        found = self.call("GET", path, **kwargs)
        if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
            raise ApiError(f"{self.url} is not the Rollway API: GET {path} did not answer a list")
        return found

    def object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A call answering one object; ApiError when the server answers anything else."""
        found = self.call(method, path, **kwargs)
        if not isinstance(found, dict):
            raise ApiError(f"{self.url} is not the Rollway API: {method} {path} did not answer an object")
        return found

    def _refusal(self, response: httpx.Response) -> str:
        try:
            error = response.json()["error"]
            message = error["message"]
        except (ValueError, KeyError, TypeError):
            return self._foreign(response)
        lines = [f"{message} (HTTP {response.status_code})"]
        lines += [f"  - {item.get('path')}: {item.get('message')}" for item in error.get("details") or []]
        return "\n".join(lines)

    def _foreign(self, response: httpx.Response) -> str:
        """One line for an answer the Rollway API would not give: the URL, the status and what came back."""
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        request = response.request
        return (
            f"{self.url} does not answer like the Rollway API: {request.method} {request.url.path} got HTTP "
            f"{response.status_code} ({kind}): {_one_line(response.text, 80)!r}; check --url or ROLLWAY_URL"
        )

    def find_pipeline(self, name: str, project: str | None) -> dict[str, Any] | None:
        params = {"name": name} | ({"project": project} if project else {})
        found = self.rows("/api/pipelines", params=params)
        if len(found) > 1:
            projects = ", ".join(item["project"] for item in found)
            raise ApiError(f"pipeline '{name}' exists in several projects ({projects}); name one with --project")
        return found[0] if found else None

    def pipeline(self, name: str, project: str | None) -> dict[str, Any]:
        """The pipeline of that name; ApiError when there is none."""
        found = self.find_pipeline(name, project)
        if found is None:
            where = f" in project '{project}'" if project else ""
            raise ApiError(f"there is no pipeline named '{name}'{where}")
        return found

    def resolve_user_operation(self, prefix: str) -> str:
        """The full id of the user operation whose id starts with `prefix` (ACTIVE ones first); ApiError when
        none or several match."""
        wanted = _wanted(prefix, "a user operation id")
        for status in ("ACTIVE", None):
            found = self.rows("/api/user-operations", params={"status": status} if status else {})
            matches = [item for item in found if str(item["id"]).lower().startswith(wanted)]
            if matches:
                return pick(prefix, "user operation", matches, _operation_label)
        raise ApiError(f"there is no user operation whose id starts with '{prefix}'")

    def resolve_token(self, prefix: str) -> str:
        """The full id of the API token whose id starts with `prefix`; ApiError when none or several match."""
        wanted = _wanted(prefix, "a token id")
        matches = [item for item in self.rows("/api/tokens") if str(item["id"]).lower().startswith(wanted)]
        if not matches:
            raise ApiError(f"there is no token whose id starts with '{prefix}'")
        return pick(prefix, "token", matches, lambda item: f"{item['name']}, {item['role']} of {item['project']}")


# What one page of `GET /api/executions` holds at most (the API's own limit), and the length of a whole id (a UUID).
PAGE = 1000
FULL_ID = 36
SHOWN_CANDIDATES = 5


def _wanted(prefix: str, what: str) -> str:
    wanted = prefix.strip().lower()
    if not wanted:
        raise ApiError(f"give {what} (or the start of one)")
    return wanted


def _operation_label(item: dict[str, Any]) -> str:
    return f"{item.get('pipeline')} #{item.get('executionIndex')} {item.get('stage')}.{item.get('task')}"


def _execution_label(item: dict[str, Any]) -> str:
    return f"{item['pipeline']} #{item['index']} {item['status']}"


def pick(prefix: str, kind: str, matches: list[dict[str, Any]], label: Callable[[dict[str, Any]], str]) -> str:
    """The id of the one match; ApiError naming the candidates (a few, with what they are) when there are more."""
    if len(matches) == 1:
        return str(matches[0]["id"])
    named = [f"{item['id']} ({label(item)})" for item in matches[:SHOWN_CANDIDATES]]
    more = f" and {len(matches) - SHOWN_CANDIDATES} more" if len(matches) > SHOWN_CANDIDATES else ""
    raise ApiError(f"'{prefix}' is the start of {len(matches)} {kind} ids: {', '.join(named)}{more}; give more of it")


def resolve_execution(client: Client, prefix: str) -> str:
    """The full id of the execution whose id starts with `prefix`; ApiError when none or several match.

    A whole id is taken as given (the API answers 404 if it is unknown); a shorter one is looked for among the
    executions the token sees, newest first, a page at a time.
    """
    wanted = _wanted(prefix, "an execution id")
    if len(wanted) == FULL_ID:
        return wanted
    matches: list[dict[str, Any]] = []
    for page in _pages(client):
        matches += [item for item in page if str(item["id"]).lower().startswith(wanted)]
    if not matches:
        raise ApiError(f"there is no execution whose id starts with '{prefix}'")
    return pick(prefix, "execution", matches, _execution_label)


def _pages(client: Client) -> Iterable[list[dict[str, Any]]]:
    offset = 0
    while True:
        page = client.rows("/api/executions", params={"limit": PAGE, "offset": offset})
        yield page
        if len(page) < PAGE:
            return
        offset += PAGE
