"""Kubeconfig documents as Rollway takes them: inline data only, never a command to run or a file to read.

An endpoint's kubeconfig is a user's document. The official loader would run its `exec` plugins and
`auth-provider` commands on the worker, and read every path it names (`tokenFile`, `certificate-authority`,
`client-key`, ...) there: a way to run code as the worker, or to read its files back through an error message.
So Rollway never hands the document to that loader: this module reads the current context itself into an
`Access` (server, CA, token, client certificate, basic auth: all inline), and refuses every field that would
name a command or a file, wherever it stands. The API checks a kubeconfig when an endpoint is saved, the worker
again before it connects (an endpoint stored before this check, or written straight into the database).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from orchestrator.errors import BadRequest, Problem

FIELD = "kubeconfig"
MAX_DEPTH = 50  # far deeper than any kubeconfig; a deeper document is refused, not walked
RUNS = "runs a command on the worker: Rollway runs no kubeconfig plugins; give a token or client certificate data"
READS = "reads a file on the worker: Rollway reads no files named by a kubeconfig; give the data inline"
# Fields that make a kubeconfig loader run something or read a path; any key ending in `-file` or `File` too.
REFUSED: Mapping[str, str] = {
    "exec": RUNS,
    "auth-provider": RUNS + " (auth providers run commands and write tokens back)",
    "cmd-path": RUNS,
    "tokenfile": READS + " (token)",
    "certificate-authority": READS + " (certificate-authority-data)",
    "client-certificate": READS + " (client-certificate-data)",
    "client-key": READS + " (client-key-data)",
}


@dataclass(frozen=True)
class Access:
    """How a kubeconfig's current context reaches its cluster; every credential inline, as decoded bytes or text."""

    server: str
    ca_pem: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    proxy_url: str | None = None
    token: str | None = None
    client_certificate: bytes | None = None
    client_key: bytes | None = None
    username: str | None = None
    password: str | None = None


TOKEN_TEXT = "must be one line of printable ASCII without spaces"


def unsendable(token: str) -> bool:
    """Whether a bearer token cannot go into an Authorization header as it is.

    HTTP libraries refuse such a header with an error that quotes it, and that error would carry the credential (or
    a file's contents) into a task's message.
    """
    return not (token.isascii() and token.isprintable() and " " not in token)


def refusal(key: str) -> str | None:
    """Why a kubeconfig may not hold this field, or None when it may."""
    found = REFUSED.get(key.lower())
    if found is not None:
        return found
    if key.endswith(("-file", "File", "_file")):
        return READS
    return None


def refused_fields(document: Any, path: str = FIELD) -> list[Problem]:
    """Every field anywhere in a document that would run a command or read a file, each named by its path."""
    problems: list[Problem] = []
    _walk(document, path, problems, set())
    return problems


def _walk(node: Any, path: str, problems: list[Problem], seen: set[int]) -> None:
    # YAML aliases share one object among many places (or make a cycle): each is searched once, at its first path.
    if not isinstance(node, Mapping | list) or id(node) in seen:
        return
    seen.add(id(node))
    if path.count(".") + path.count("[") > MAX_DEPTH:
        problems.append(Problem(path, f"is nested deeper than {MAX_DEPTH} levels"))
        return
    if isinstance(node, list):
        for index, item in enumerate(node):
            _walk(item, f"{path}[{index}]", problems, seen)
        return
    for key, value in node.items():
        where = f"{path}.{key}"
        why = refusal(str(key))
        if why is not None:
            problems.append(Problem(where, why))
        else:
            _walk(value, where, problems, seen)


def parse(text: str) -> dict[str, Any]:
    """A kubeconfig's YAML as a mapping; BadRequest when it is not one.

    The YAML error is told by its line and column only: its snippet of the document could hold a credential.
    """
    try:
        document = yaml.safe_load(text)
    except RecursionError as error:  # the parser recurses once per level of nesting
        raise BadRequest("the kubeconfig is unusable", [Problem(FIELD, "is nested too deeply")]) from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "cannot be parsed"
        problems = [Problem(FIELD, f"is not valid YAML{where}: {problem}")]
        raise BadRequest("the kubeconfig is not valid YAML", problems) from error
    if not isinstance(document, dict) or not document.get("clusters"):
        problems = [Problem(FIELD, "must be a kubeconfig with at least one cluster")]
        raise BadRequest("the kubeconfig is unusable", problems)
    return document


def read_access(text: str) -> Access:
    """The Access of a kubeconfig's current context; BadRequest listing every problem, each named by its path.

    Refused fields are refused anywhere in the document, not only in the current context: a stored kubeconfig
    must hold nothing that another tool (or a later change of context) would run.
    """
    document = parse(text)
    problems = refused_fields(document)
    cluster, user = _current(document, problems)
    access = _access(cluster, user, problems)
    if problems or access is None:
        raise BadRequest(f"the kubeconfig has {len(problems)} problem(s)", problems)
    return access


def _named(document: Mapping[str, Any], section: str) -> Iterator[tuple[str, Any, Any]]:
    """(path, name, body) of each entry of a section (`clusters`, `users`, `contexts`: a body under its singular)."""
    entries, inner = document.get(section), section.removesuffix("s")
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(entry, Mapping):
            yield f"{FIELD}.{section}[{index}].{inner}", entry.get("name"), entry.get(inner)


def _find(
    document: Mapping[str, Any], section: str, name: object, problems: list[Problem], *, named_at: str
) -> tuple[str, Mapping[str, Any]] | None:
    """The entry of `section` called `name`, with its path; a problem at `named_at` (where it is named) if none."""
    for path, found, body in _named(document, section):
        if found == name:
            if isinstance(body, Mapping):
                return path, body
            problems.append(Problem(path, "must be a mapping"))
            return None
    problems.append(Problem(named_at, f"names {name!r}, which {FIELD}.{section} does not hold"))
    return None


def _current(
    document: Mapping[str, Any], problems: list[Problem]
) -> tuple[tuple[str, Mapping[str, Any]] | None, tuple[str, Mapping[str, Any]] | None]:
    """The current context's cluster and user, each with its path (user None: the context names none)."""
    name = document.get("current-context")
    if not isinstance(name, str) or not name:
        problems.append(Problem(f"{FIELD}.current-context", "is required: the context Rollway connects with"))
        return None, None
    context = _find(document, "contexts", name, problems, named_at=f"{FIELD}.current-context")
    if context is None:
        return None, None
    path, body = context
    cluster = _find(document, "clusters", body.get("cluster"), problems, named_at=f"{path}.cluster")
    user_name = body.get("user")
    user = _find(document, "users", user_name, problems, named_at=f"{path}.user") if user_name else None
    return cluster, user


def _access(
    cluster: tuple[str, Mapping[str, Any]] | None, user: tuple[str, Mapping[str, Any]] | None, problems: list[Problem]
) -> Access | None:
    if cluster is None:
        return None
    path, body = cluster
    server = _text(body, "server", path, problems)
    if server is None or not server.lower().startswith(("http://", "https://")):
        problems.append(Problem(f"{path}.server", "is required: an http:// or https:// URL"))
        return None
    insecure = body.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        problems.append(Problem(f"{path}.insecure-skip-tls-verify", "must be true or false"))
    proxy = _text(body, "proxy-url", path, problems)
    if proxy is not None and not proxy.lower().startswith(("http://", "https://")):
        problems.append(Problem(f"{path}.proxy-url", "must be an http:// or https:// URL"))
    ca = _data(body, "certificate-authority-data", path, problems)
    cluster_part = Access(
        server=server.rstrip("/"),
        ca_pem=_certificate(ca, f"{path}.certificate-authority-data", problems),
        insecure=insecure is True,
        tls_server_name=_text(body, "tls-server-name", path, problems),
        proxy_url=proxy,
    )
    return _with_user(cluster_part, user, problems)


def _with_user(access: Access, user: tuple[str, Mapping[str, Any]] | None, problems: list[Problem]) -> Access:
    if user is None:
        return access
    path, body = user
    certificate = _data(body, "client-certificate-data", path, problems)
    key = _data(body, "client-key-data", path, problems)
    if (certificate is None) != (key is None):
        problems.append(Problem(path, "needs both client-certificate-data and client-key-data, or neither"))
    username, password = _text(body, "username", path, problems), _text(body, "password", path, problems)
    if (username is None) != (password is None):
        problems.append(Problem(path, "needs both username and password, or neither"))
    token = _text(body, "token", path, problems)
    if token is not None and unsendable(token):
        problems.append(Problem(f"{path}.token", TOKEN_TEXT))
    return dataclasses.replace(
        access,
        token=token,
        client_certificate=certificate,
        client_key=key,
        username=username,
        password=password,
    )


def _text(body: Mapping[str, Any], key: str, path: str, problems: list[Problem]) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        problems.append(Problem(f"{path}.{key}", f"must be a string, not {type(value).__name__}"))
        return None
    return value or None


def _data(body: Mapping[str, Any], key: str, path: str, problems: list[Problem]) -> bytes | None:
    """A `*-data` field decoded from base64 (the problem never quotes the value: it may be a key)."""
    text = _text(body, key, path, problems)
    if text is None:
        return None
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (ValueError, binascii.Error):
        problems.append(Problem(f"{path}.{key}", "must be base64"))
        return None


def _certificate(data: bytes | None, path: str, problems: list[Problem]) -> str | None:
    if data is None:
        return None
    text = data.decode(errors="replace")
    if "-----BEGIN CERTIFICATE-----" not in text:
        problems.append(Problem(path, "holds no PEM certificate"))
        return None
    return text
