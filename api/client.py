"""A small client of the Rollway HTTP API, for the command line."""

from __future__ import annotations

from typing import Any

import httpx

from orchestrator.errors import RollwayError


class ApiError(RollwayError):
    """The API answered with an error, or could not be reached."""


class Client:
    """Calls the API at `url` with a bearer token."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer; raises ApiError with the API's message and details."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ApiError(f"cannot reach the Rollway API at {self.url}: {error}") from error
        if response.status_code >= 400:
            raise ApiError(_describe(response))
        if not response.content:
            return None
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.text

    def find_pipeline(self, name: str, project: str | None) -> dict[str, Any] | None:
        params = {"name": name} | ({"project": project} if project else {})
        found = self.call("GET", "/api/pipelines", params=params)
        if len(found) > 1:
            projects = ", ".join(item["project"] for item in found)
            raise ApiError(f"pipeline '{name}' exists in several projects ({projects}); name one with --project")
        return found[0] if found else None

    def resolve_user_operation(self, prefix: str) -> str:
        """The full id of the user operation whose id starts with `prefix` (ACTIVE ones first); ApiError when
        none or several match."""
        wanted = prefix.strip().lower()
        if not wanted:
            raise ApiError("give a user operation id (or the start of one)")
        for status in ("ACTIVE", None):
            params = {"status": status} if status else {}
            found = [item["id"] for item in self.call("GET", "/api/user-operations", params=params)]
            matches = [item for item in found if str(item).lower().startswith(wanted)]
            if len(matches) == 1:
                return str(matches[0])
            if len(matches) > 1:
                raise ApiError(f"'{prefix}' is the start of {len(matches)} user operation ids; give more of it")
        raise ApiError(f"there is no user operation whose id starts with '{prefix}'")


# What one page of `GET /api/executions` holds at most (the API's own limit), and the length of a whole id (a UUID).
PAGE = 1000
FULL_ID = 36


def resolve_execution(client: Client, prefix: str) -> str:
    """The full id of the execution whose id starts with `prefix`; ApiError when none or several match.

    A whole id is taken as given (the API answers 404 if it is unknown); a shorter one is looked for among the
    executions the token sees, newest first, a page at a time.
    """
    wanted = prefix.strip().lower()
    if not wanted:
        raise ApiError("give an execution id (or the start of one)")
    if len(wanted) == FULL_ID:
        return wanted
    matches: list[str] = []
    offset = 0
    while True:
        page = client.call("GET", "/api/executions", params={"limit": PAGE, "offset": offset})
        matches += [str(item["id"]) for item in page if str(item["id"]).lower().startswith(wanted)]
        if len(matches) > 1:
            raise ApiError(f"'{prefix}' is the start of {len(matches)} execution ids; give more of it")
        if len(page) < PAGE:
            break
        offset += PAGE
    if not matches:
        raise ApiError(f"there is no execution whose id starts with '{prefix}'")
    return matches[0]


def _describe(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:500]}"
    lines = [f"{error.get('message')} (HTTP {response.status_code})"]
    lines += [f"  - {item.get('path')}: {item.get('message')}" for item in error.get("details") or []]
    return "\n".join(lines)
