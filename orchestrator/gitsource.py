"""A K8S task's YAML read from Git, as Code Stream's "source control" option reads it: `filepath` names a file in
the repository of the task's `scm` endpoint (a `git` endpoint: repository URL and branch), and `scmConstants`
fills the file's `{{NAME}}` placeholders.

Pure: the checks of what a pipeline and an endpoint say (the path stays inside the repository, the URL uses a
transport Rollway allows) and the substitution, which can fill in values but never change the YAML's structure.
Fetching the file is `workers/gitfetch.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import yaml

from orchestrator.errors import Problem

# The endpoint role a K8S task names its Git endpoint by (`endpoints: {scm: NAME}`).
SCM = "scm"
# Transports a git endpoint may use: `git -c protocol.allow` and GIT_ALLOW_PROTOCOL hold git to these too, so a
# URL cannot run a command (`ext::`), read the worker's files (`file://`) or use the worker's SSH keys.
SCHEMES = ("https", "http", "git")
MAX_PATH_LENGTH = 1024
MAX_BRANCH_LENGTH = 255
# `{{NAME}}` or `{{ NAME }}`; a name is what a YAML key or an environment variable would be.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
# A value written into the YAML as it is: it cannot start a YAML indicator, hold a space, a colon or a comment.
PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./+@=-]*")
SCALARS = (str, int, float, bool)


def url_problem(url: str | None) -> str | None:
    """What is wrong with a git endpoint's repository URL, if anything."""
    if not url:
        return "is required: the repository's URL (https://, http:// or git://)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        return f"is not a URL: {url!r}"
    if parts.scheme not in SCHEMES or not parts.hostname:
        return f"must be an {', '.join(scheme + '://' for scheme in SCHEMES)} URL of a repository, not {url!r}"
    if parts.username or parts.password:
        return "must not hold credentials: give them as username and password (sealed like every credential)"
    if any(char in url for char in "\r\n\t \\") or url.startswith("-"):
        return f"must not hold spaces, control characters or backslashes: {url!r}"
    return None


def branch_problem(branch: str | None) -> str | None:
    """What is wrong with a branch name, as `git check-ref-format` would see it (None: fine, or not given)."""
    if branch is None:
        return None
    if not branch or len(branch) > MAX_BRANCH_LENGTH:
        return f"must be a branch name of 1 to {MAX_BRANCH_LENGTH} characters"
    bad = (
        branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or ".." in branch
        or "//" in branch
        or "@{" in branch
        or any(ord(char) < 0x20 or char in " ~^:?*[\\\x7f" for char in branch)
    )
    return f"is not a branch name git accepts: {branch!r}" if bad else None


def path_problem(path: object) -> str | None:
    """What is wrong with `filepath`: it must be a relative path inside the repository."""
    if not isinstance(path, str):
        return f"must be a path in the repository, not {type(path).__name__}"
    if len(path) > MAX_PATH_LENGTH:
        return f"must be at most {MAX_PATH_LENGTH} characters"
    if path.startswith(("/", "-")) or "\\" in path or any(ord(char) < 0x20 for char in path):
        return f"must be a relative path inside the repository (such as deploy/app.yaml), not {path!r}"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts) or parts[0] == ".git":
        return f"must stay inside the repository: no '..', '.', empty or .git parts in {path!r}"
    return None


def constants_problems(constants: object, path: str = "scmConstants") -> list[Problem]:
    """`scmConstants` must map names to text, numbers or flags."""
    if constants is None:
        return []
    if not isinstance(constants, Mapping):
        return [Problem(path, "must map each constant's name to its value")]
    return [
        Problem(f"{path}.{name}", "must be a name and a text, number or flag")
        for name, value in constants.items()
        if not isinstance(name, str) or not PLACEHOLDER.fullmatch("{{" + name + "}}") or not isinstance(value, SCALARS)
    ]


def _written(value: object) -> str:
    """A constant as it goes into the YAML: plain where YAML reads it as itself, else a double-quoted string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return text if PLAIN.fullmatch(text) else json.dumps(text)


def substitute(text: str, constants: Mapping[str, Any], where: str) -> str:
    """`text` with each `{{NAME}}` replaced by its constant; ValueError naming `where` when a placeholder has no
    constant, or when the values would change the YAML's structure (its keys and list lengths) rather than fill
    in values."""
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in constants})
    if missing:
        named = ", ".join("{{" + name + "}}" for name in missing)
        raise ValueError(f"{where} uses {named}, which scmConstants does not give")
    filled = PLACEHOLDER.sub(lambda found: _written(constants[found.group(1)]), text)
    neutral = PLACEHOLDER.sub("x", text)
    try:
        expected = [_shape(document) for document in yaml.safe_load_all(neutral)]
        got = [_shape(document) for document in yaml.safe_load_all(filled)]
    except yaml.YAMLError as error:
        raise ValueError(f"{where} is not valid YAML once scmConstants are filled in: {error}") from error
    except RecursionError as error:
        raise ValueError(f"{where} is nested too deeply") from error
    if expected != got:
        raise ValueError(f"the scmConstants values would change the structure of {where}, not only fill in values")
    return filled


def _shape(value: object) -> object:
    """A YAML document's structure: its keys and list lengths, every scalar the same."""
    if isinstance(value, Mapping):
        return {str(key): _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return None
