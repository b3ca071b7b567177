"""Endpoints: the clusters (and later other systems) tasks talk to, with their credentials.

An `Endpoint` here holds credentials in the clear; the store keeps them encrypted (`vault.py`) and the API
never returns them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from orchestrator import gitsource
from orchestrator.errors import BadRequest, Problem
from orchestrator.kubeconfig import TOKEN_TEXT, read_access, unsendable

MAX_NAME_LENGTH = 200
KUBERNETES = "kubernetes"
# A mail server for email notifications: `smtp://host:port`, optional `username`/`password` (sealed like every
# credential), `from`, and `starttls` (upgrade the connection before logging in).
SMTP = "smtp"
# The hosts SSH tasks may log in to: `knownHosts` holds their keys as OpenSSH's known_hosts lines (`host key-type
# base64-key`, `[host]:port ...`, hashed `|1|...` names). A host whose key is not there, or differs, is refused.
SSH = "ssh"
# A Git repository K8S tasks read their YAML from (`filepath`, see `gitsource.py`): `url` (https://, http:// or
# git://), `branch` (main when not given), optional `username`/`password` (a token, sealed) sent over http(s).
GIT = "git"
ENDPOINT_TYPES = (KUBERNETES, SMTP, SSH, GIT)
# Host key types a known_hosts line may name (what OpenSSH and paramiko speak).
SSH_KEY_TYPES = frozenset(
    {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}
)


@dataclass(frozen=True)
class Probe:
    """When an endpoint was last asked whether it answers with its credentials, and what it said.

    `message` is written for people (`credentials refused (HTTP 401)`, `unreachable: ...`) and never holds the
    endpoint's credentials.
    """

    at: datetime
    ok: bool
    message: str


@dataclass(frozen=True)
class Endpoint:
    """A Kubernetes API (its URL with a bearer token and CA data, or `insecure`, or a kubeconfig), a mail server
    (`smtp`), or the known hosts of SSH tasks (`ssh`)."""

    id: str
    name: str
    project: str
    type: str
    url: str
    insecure: bool = False
    token: str | None = None
    ca_data: str | None = None
    kubeconfig: str | None = None
    restricted: bool = False
    """Only an admin may mark it, change it or delete it; a non-admin's task that uses it waits for an admin."""
    username: str | None = None
    password: str | None = None
    sender: str | None = None
    """An smtp endpoint's `from` address."""
    starttls: bool = False
    known_hosts: str | None = None
    """An ssh endpoint's known_hosts lines."""
    branch: str | None = None
    """A git endpoint's branch."""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    probe: Probe | None = None
    """Its last probe (`readiness.py`); None until it is first probed, and again after its URL or credentials change."""

    @property
    def has_credentials(self) -> bool:
        return bool(self.token or self.ca_data or self.kubeconfig)


def probe_of(row: object) -> Probe | None:
    """The probe recorded in an endpoints row, or None when it was never probed (or reset since)."""
    at = getattr(row, "probed_at", None)
    if not isinstance(at, datetime):
        return None
    return Probe(at, bool(getattr(row, "probe_ok", False)), str(getattr(row, "probe_message", "") or ""))


FIELDS = frozenset(
    {"name", "project", "type", "url", "token", "caData", "insecure", "kubeconfig", "restricted"}
    | {"username", "password", "from", "starttls", "knownHosts", "branch"}
)
CREDENTIALS = {"token": "token", "caData": "ca_data", "kubeconfig": "kubeconfig"}


def _text(body: Mapping[str, Any], name: str, problems: list[Problem]) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        problems.append(Problem(name, f"must be a string, not {type(value).__name__}"))
        return None
    return value or None


def _check_url(url: str | None, kubeconfig: str | None, problems: list[Problem], kind: str = KUBERNETES) -> None:
    if kind == SMTP:
        _check_smtp_url(url, problems)
    elif kind == SSH:
        pass  # see _check_ssh
    elif kind == GIT:
        if (problem := gitsource.url_problem(url)) is not None:
            problems.append(Problem("url", problem))
    elif url is None and kubeconfig is None:
        problems.append(Problem("url", "is required (or give a kubeconfig)"))
    elif url is not None and not url.lower().startswith(("http://", "https://")):
        problems.append(Problem("url", f"must be an http:// or https:// URL, not {url!r}"))


def _check_ssh(body: Mapping[str, Any], kind: str, problems: list[Problem]) -> None:
    """An ssh endpoint is its known hosts (the task says which host it logs in to, and as whom)."""
    known = body.get("knownHosts")
    if kind != SSH:
        if known is not None:
            problems.append(Problem("knownHosts", "is only for an ssh endpoint"))
        return
    problems += [
        Problem(name, "is not for an ssh endpoint (its tasks give host and credentials)")
        for name in ("url", "token", "caData", "kubeconfig", "insecure")
        if body.get(name)
    ]
    if not isinstance(known, str) or not known.strip():
        problems.append(Problem("knownHosts", "is required: the hosts' keys as OpenSSH known_hosts lines"))
        return
    problems += [
        Problem(f"knownHosts[{number}]", problem)
        for number, line in enumerate(known.splitlines(), 1)
        if (problem := known_hosts_problem(line)) is not None
    ]


def known_hosts_problem(line: str) -> str | None:
    """What is wrong with one known_hosts line, if anything (blank lines and # comments are fine)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("@"):
        return "markers (@cert-authority, @revoked) are not supported: list each host's key"
    fields = text.split()
    if len(fields) < 3:
        return "must be 'host[,host...] key-type base64-key'"
    if fields[1] not in SSH_KEY_TYPES:
        return f"key type must be one of {', '.join(sorted(SSH_KEY_TYPES))}, not {fields[1]!r}"
    try:
        base64.b64decode(fields[2], validate=True)
    except (ValueError, binascii.Error):
        return "the key must be base64, as ssh-keyscan prints it"
    return None


def _check_smtp_url(url: str | None, problems: list[Problem]) -> None:
    try:
        parts = urlsplit(url or "")
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    if parts.scheme != "smtp" or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
        problems.append(Problem("url", f"must be smtp://host or smtp://host:port, not {url!r}"))
    elif port == 0:
        problems.append(Problem("url", "must name a port from 1 to 65535"))


def _check_git(body: Mapping[str, Any], kind: str, problems: list[Problem]) -> None:
    """A git endpoint is a repository URL, a branch, and optional credentials for http(s)."""
    branch = body.get("branch")
    if kind != GIT:
        if branch is not None:
            problems.append(Problem("branch", "is only for a git endpoint"))
        return
    problems += [
        Problem(name, "is not for a git endpoint")
        for name in ("token", "caData", "kubeconfig", "from")
        if body.get(name)
    ]
    if branch is not None and not isinstance(branch, str):
        problems.append(Problem("branch", f"must be a string, not {type(branch).__name__}"))
    elif (problem := gitsource.branch_problem(branch)) is not None:
        problems.append(Problem("branch", problem))


def _check_smtp(body: Mapping[str, Any], kind: str, problems: list[Problem]) -> None:
    """An smtp endpoint's own fields; another type of endpoint takes none of them (a git one takes a login)."""
    given = [name for name in ("username", "password", "from", "starttls") if body.get(name) not in (None, False)]
    if kind == GIT:
        given = [name for name in given if name not in ("username", "password")]
    if kind != SMTP:
        problems += [Problem(name, "is only for an smtp endpoint") for name in given]
        return
    problems += [
        Problem(name, "is not for an smtp endpoint") for name in ("token", "caData", "kubeconfig") if body.get(name)
    ]
    if not isinstance(body.get("starttls", False), bool):
        problems.append(Problem("starttls", "must be true or false"))
    sender = body.get("from")
    if sender is not None and (not isinstance(sender, str) or "@" not in sender or any(c in sender for c in "\r\n")):
        problems.append(Problem("from", "must be a mail address such as rollway@example.com"))


def _check_ca(ca_data: str | None, problems: list[Problem]) -> None:
    if ca_data is None:
        return
    try:
        base64.b64decode(ca_data, validate=True)
    except (ValueError, binascii.Error):
        problems.append(Problem("caData", "must be base64 (as certificate-authority-data in a kubeconfig)"))


def _check_kubeconfig(kubeconfig: str | None, problems: list[Problem]) -> None:
    """A kubeconfig must be usable from inline data alone: no plugin to run, no file to read (see kubeconfig.py)."""
    if kubeconfig is None:
        return
    try:
        read_access(kubeconfig)
    except BadRequest as refused:
        problems.extend(refused.details)


def endpoint_from_body(body: Mapping[str, Any], endpoint_id: str, default_project: str = "default") -> Endpoint:
    """Read an endpoint from a request body; raises BadRequest listing every problem with its field."""
    problems = [Problem(name, "is not a known field") for name in sorted(set(body) - FIELDS)]
    name = _text(body, "name", problems)
    project = _text(body, "project", problems) or default_project
    kind = _text(body, "type", problems) or KUBERNETES
    url = _text(body, "url", problems)
    kubeconfig = _text(body, "kubeconfig", problems)
    ca_data = _text(body, "caData", problems)
    token = _text(body, "token", problems)  # read before the check: a wrongly typed token is refused, never dropped
    insecure = body.get("insecure", False)
    restricted = body.get("restricted", False)
    if not name or not name.strip() or len(name) > MAX_NAME_LENGTH:
        problems.append(Problem("name", f"is required, at most {MAX_NAME_LENGTH} characters"))
    if kind not in ENDPOINT_TYPES:
        problems.append(Problem("type", f"must be one of {', '.join(ENDPOINT_TYPES)}, not {kind!r}"))
    if not isinstance(insecure, bool):
        problems.append(Problem("insecure", "must be true or false"))
    if not isinstance(restricted, bool):
        problems.append(Problem("restricted", "must be true or false"))
    _check_url(url, kubeconfig, problems, kind)
    _check_smtp(body, kind, problems)
    _check_ssh(body, kind, problems)
    _check_git(body, kind, problems)
    username = _text(body, "username", problems)
    password = _text(body, "password", problems)
    _check_ca(ca_data, problems)
    if token is not None and unsendable(token):
        problems.append(Problem("token", TOKEN_TEXT))
    _check_kubeconfig(kubeconfig, problems)
    if problems:
        raise BadRequest(f"the endpoint has {len(problems)} problem(s)", problems)
    return Endpoint(
        id=endpoint_id,
        name=str(name),
        project=project,
        type=kind,
        url=url or "",
        insecure=bool(insecure),
        token=token,
        ca_data=ca_data,
        kubeconfig=kubeconfig,
        restricted=bool(restricted),
        username=username,
        password=password,
        sender=body.get("from") or None,
        starttls=body.get("starttls") is True,
        known_hosts=body.get("knownHosts") if kind == SSH else None,
        branch=body.get("branch") if kind == GIT else None,
    )


# The credentials that belong to the URL they were given for; a kubeconfig carries its own server, so it stays.
URL_CREDENTIALS = ("token", "caData", "password")


def changed_body(endpoint: Endpoint, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The body an endpoint would be created from with `changes` made (a null credential removes it).

    Changing the URL drops the stored token and CA data unless the same change gives them again: a token is only
    ever sent to the server it was given for, and a CA trusted for one server says nothing about another.
    """
    body: dict[str, Any] = {
        "name": endpoint.name,
        "project": endpoint.project,
        "type": endpoint.type,
        "url": endpoint.url or None,
        "insecure": endpoint.insecure,
        "token": endpoint.token,
        "caData": endpoint.ca_data,
        "kubeconfig": endpoint.kubeconfig,
        "restricted": endpoint.restricted,
    }
    if endpoint.type == SMTP:
        body |= {"username": endpoint.username, "password": endpoint.password, "from": endpoint.sender}
        body |= {"starttls": endpoint.starttls}
    if endpoint.type == SSH:
        body |= {"knownHosts": endpoint.known_hosts}
    if endpoint.type == GIT:
        body |= {"branch": endpoint.branch, "username": endpoint.username, "password": endpoint.password}
    if "url" in changes and changes["url"] != body["url"]:
        body |= dict.fromkeys(URL_CREDENTIALS)
    return body | dict(changes)
