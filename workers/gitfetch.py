"""Reading one file of a git endpoint's repository with Debian's `git`, for a K8S task's `filepath`.

The repository is fetched (one commit, no tags, no checkout) into a fresh directory and the file read from git's
object store with `git cat-file`: nothing of the repository is checked out, so no hook, filter or symbolic link of
it ever runs or is followed. git runs with an argument list (never a shell), with no configuration but ours
(`GIT_CONFIG_NOSYSTEM`, a scratch `HOME`), no prompt, only the transports of `gitsource.SCHEMES`, and the
endpoint's credentials in an environment-given header, never on the command line. The host is resolved and
checked against `ROLLWAY_EGRESS_DENY` as a REST task's is, and git is held to that address.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from orchestrator.decoding import MAX_DOCUMENT_BYTES
from orchestrator.endpoints import GIT, Endpoint
from orchestrator.errors import EndpointError
from orchestrator.gitsource import SCHEMES, branch_problem, path_problem, url_problem
from orchestrator.settings import Network
from workers.egress import refusal

GIT_BINARY = "git"
TIMEOUT_SECONDS = 120.0
DEFAULT_BRANCH = "main"
# A blob's mode in a tree: a file (100644) or an executable one (100755); a link (120000) is not followed.
FILE_MODES = ("100644", "100755")


class GitUnavailable(EndpointError):
    """The repository, its branch or the file could not be read."""


@dataclass(frozen=True)
class GitFile:
    """A file read from a repository, and the commit it was read at."""

    text: str
    commit: str


def read_file(endpoint: Endpoint, path: str, deny: Sequence[Network], timeout: float = TIMEOUT_SECONDS) -> GitFile:
    """`path` on the endpoint's branch; GitUnavailable naming repository, branch and path otherwise."""
    branch = endpoint.branch or DEFAULT_BRANCH
    where = f"{path} on branch {branch} of {endpoint.url}"
    problem = _refusal(endpoint) or path_problem(path) or branch_problem(branch)
    if problem is not None:
        raise GitUnavailable(f"cannot read {where}: {problem}")
    resolve = _pinned(endpoint.url, deny)
    with tempfile.TemporaryDirectory(prefix="rollway-git-") as scratch:
        repo = os.path.join(scratch, "repo")
        run = _runner(endpoint, scratch, resolve, timeout, where)
        run(["init", "--quiet", "--bare", "--", repo])
        run(["--git-dir", repo, "fetch", "--quiet", "--depth", "1", "--no-tags", "--", endpoint.url, branch])
        listed = run(["--git-dir", repo, "ls-tree", "-z", "FETCH_HEAD", "--", path]).rstrip(b"\0")
        if not listed:
            raise GitUnavailable(f"cannot read {where}: there is no such file")
        mode, kind, *_ = listed.split(b"\t", 1)[0].decode().split()
        if kind != "blob" or mode not in FILE_MODES:
            raise GitUnavailable(f"cannot read {where}: it is a {'link' if mode == '120000' else kind}, not a file")
        size = int(run(["--git-dir", repo, "cat-file", "-s", f"FETCH_HEAD:{path}"]).strip() or 0)
        if size > MAX_DOCUMENT_BYTES:
            raise GitUnavailable(f"cannot read {where}: it is larger than {MAX_DOCUMENT_BYTES} bytes")
        content = run(["--git-dir", repo, "cat-file", "blob", f"FETCH_HEAD:{path}"])
        commit = run(["--git-dir", repo, "rev-parse", "FETCH_HEAD"]).decode().strip()
    try:
        return GitFile(content.decode("utf-8"), commit)
    except UnicodeDecodeError as error:
        raise GitUnavailable(f"cannot read {where}: it is not UTF-8 text") from error


def branch_exists(endpoint: Endpoint, deny: Sequence[Network], timeout: float = TIMEOUT_SECONDS) -> bool:
    """Whether the repository answers and has the endpoint's branch (`git ls-remote`); GitUnavailable when it
    cannot be asked."""
    branch = endpoint.branch or DEFAULT_BRANCH
    problem = _refusal(endpoint) or branch_problem(branch)
    if problem is not None:
        raise GitUnavailable(problem)
    resolve = _pinned(endpoint.url, deny)
    with tempfile.TemporaryDirectory(prefix="rollway-git-") as scratch:
        run = _runner(endpoint, scratch, resolve, timeout, f"branch {branch} of {endpoint.url}")
        return bool(run(["ls-remote", "--heads", "--", endpoint.url, f"refs/heads/{branch}"]).strip())


def _refusal(endpoint: Endpoint) -> str | None:
    if endpoint.type != GIT:
        return f"endpoint '{endpoint.name}' is a {endpoint.type} endpoint, not a git one"
    return url_problem(endpoint.url)


def _pinned(url: str, deny: Sequence[Network]) -> str | None:
    """`host:port:address` for git's resolver (http and https), after the egress check of every address."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or {"https": 443, "http": 80, "git": 9418}[parts.scheme]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise GitUnavailable(f"cannot resolve {host}: {error}") from error
    addresses = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))
    refused = refusal(host, addresses, deny)
    if refused is not None:
        raise GitUnavailable(refused)
    return f"{host}:{port}:{addresses[0]}" if parts.scheme in ("http", "https") else None


def _environment(endpoint: Endpoint, scratch: str, resolve: str | None) -> dict[str, str]:
    settings = [("protocol.allow", "never")] + [(f"protocol.{scheme}.allow", "always") for scheme in SCHEMES]
    settings += [("core.hooksPath", os.devnull), ("credential.helper", ""), ("http.followRedirects", "false")]
    if resolve is not None:
        settings.append(("http.curloptResolve", resolve))
    if endpoint.username or endpoint.password:
        pair = f"{endpoint.username or ''}:{endpoint.password or ''}".encode()
        settings.append(("http.extraHeader", f"Authorization: Basic {base64.b64encode(pair).decode()}"))
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": scratch,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": ":".join(SCHEMES),
        "GIT_CONFIG_COUNT": str(len(settings)),
        "LC_ALL": "C",
    }
    for index, (key, value) in enumerate(settings):
        environment[f"GIT_CONFIG_KEY_{index}"] = key
        environment[f"GIT_CONFIG_VALUE_{index}"] = value
    return environment


def _runner(
    endpoint: Endpoint, scratch: str, resolve: str | None, timeout: float, where: str
) -> Callable[[list[str]], bytes]:
    """git with this fetch's environment: its standard output, or GitUnavailable with git's last line."""
    environment = _environment(endpoint, scratch, resolve)
    shown = _shown(endpoint.url)

    def run(arguments: list[str]) -> bytes:
        try:
            done = subprocess.run(
                [GIT_BINARY, *arguments],
                check=False,
                env=environment,
                cwd=scratch,
                capture_output=True,
                timeout=timeout,
            )
        except FileNotFoundError as error:
            raise GitUnavailable("git is not installed on this worker (Debian: apt install git)") from error
        except subprocess.TimeoutExpired as error:
            raise GitUnavailable(f"cannot read {where}: git took longer than {timeout:.0f} s") from error
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            last = said[-1] if said else f"git exited with {done.returncode}"
            raise GitUnavailable(f"cannot read {where}: {last.replace(endpoint.url, shown)}")
        return done.stdout

    return run


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
