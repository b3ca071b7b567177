"""A K8S task's YAML read from Git, as Code Stream's "source control" option reads it: `filepath` names a file in
the repository of the task's `scm` endpoint (a `git` endpoint: repository URL and branch), and `scmConstants`
fills the file's `{{NAME}}` placeholders.

Pure: the checks of what a pipeline and an endpoint say (the path stays inside the repository, the URL uses a
transport Rollway allows) and the substitution, into the parsed YAML's values, which never changes its structure.
Code Stream's documentation at hand does not spell out the placeholder's form; `{{NAME}}` and `{{ NAME }}` are read.
Fetching the file is `workers/gitfetch.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from orchestrator.decoding import MAX_DOCUMENT_BYTES, dump_yaml_documents, load_yaml_documents, size_problem
from orchestrator.errors import BadRequest, Problem

# The endpoint role a K8S task names its Git endpoint by (`endpoints: {scm: NAME}`).
SCM = "scm"
# Transports a git endpoint may use: `git -c protocol.allow` and GIT_ALLOW_PROTOCOL hold git to these too, so a
# URL cannot run a command (`ext::`), read the worker's files (`file://`) or use the worker's SSH keys.
SCHEMES = ("https", "http", "git")
MAX_PATH_LENGTH = 1024
MAX_BRANCH_LENGTH = 255
# `{{NAME}}` or `{{ NAME }}`; a name is what a YAML key or an environment variable would be.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
# A constant YAML reads as itself (a number, a flag, a word): it cannot start a YAML indicator, hold a space, a
# colon or a comment.
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


def _typed(value: object) -> object:
    """A constant that is a whole YAML value: read as it would be written there, plain where YAML reads it as
    itself (`'2'` is the number 2, as in the text Code Stream fills in) and as a string otherwise."""
    if isinstance(value, str) and PLAIN.fullmatch(value):
        return yaml.safe_load(value)
    return value


def _text(value: object) -> str:
    """A constant spliced into longer text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def substitute(text: str, constants: Mapping[str, Any], where: str) -> str:
    """`text` with each `{{NAME}}` replaced by its constant; ValueError naming `where` when a placeholder has no
    constant or the file cannot be read as YAML.

    The file is parsed first, each placeholder standing in as a plain word, and the constants go into the parsed
    documents' values (as `structured.bind_documents` does with bindings): a placeholder that is a whole value
    takes the constant as YAML reads it there, one inside longer text (a quoted string, a block scalar) is spliced
    into that string. No value can add a key, an item or a document.
    """
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in constants})
    if missing:
        named = ", ".join("{{" + name + "}}" for name in missing)
        raise ValueError(f"{where} uses {named}, which scmConstants does not give")
    marks = _Marks.of(text)
    try:
        documents = load_yaml_documents(marks.text, where)
    except BadRequest as error:
        raise ValueError(f"{error.message} (with its {{{{NAME}}}} placeholders read as values)") from error
    # Before any walk: a few hundred bytes of YAML aliases can stand for millions of values.
    too_big = size_problem(documents)
    if too_big is not None:
        raise ValueError(f"{where}: {too_big}")
    filled = [_Filler(marks, constants, where).fill(document) for document in documents]
    result = dump_yaml_documents(filled, _Dumper)
    if len(result) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{where} with scmConstants filled in is larger than {MAX_DOCUMENT_BYTES} characters")
    return result


@dataclass(frozen=True)
class _Marks:
    """A YAML text with each placeholder replaced by a numbered word, and the constants' names by number."""

    text: str
    names: tuple[str, ...]
    pattern: re.Pattern[str]

    @classmethod
    def of(cls, text: str) -> _Marks:
        stem = "rollwayconstant"
        while stem in text:
            stem += "x"
        names: list[str] = []

        def mark(found: re.Match[str]) -> str:
            names.append(found.group(1))
            return f"{stem}{len(names) - 1}z"

        marked = PLACEHOLDER.sub(mark, text)
        return cls(marked, tuple(names), re.compile(re.escape(stem) + r"(\d+)z"))


class _Filler:
    """Puts constants into parsed documents, building new ones (YAML aliases share objects)."""

    def __init__(self, marks: _Marks, constants: Mapping[str, Any], where: str) -> None:
        self.marks, self.constants, self.where = marks, constants, where

    def fill(self, node: object) -> object:
        if isinstance(node, str):
            whole = self.marks.pattern.fullmatch(node)
            return _typed(self._constant(whole)) if whole is not None else self._spliced(node)
        if isinstance(node, Mapping):
            filled: dict[Any, object] = {}
            for key, item in node.items():
                name = self._spliced(key) if isinstance(key, str) else key
                if name in filled:
                    raise ValueError(f"{self.where}: two keys of one mapping read {name!r} with scmConstants filled in")
                filled[name] = self.fill(item)
            return filled
        if isinstance(node, list):
            return [self.fill(item) for item in node]
        return node

    def _spliced(self, text: str) -> str:
        return self.marks.pattern.sub(lambda found: _text(self._constant(found)), text)

    def _constant(self, found: re.Match[str]) -> object:
        return self.constants[self.marks.names[int(found.group(1))]]


class _Dumper(yaml.SafeDumper):
    """Writes every value where it is: a value used in two places is written twice, not as a YAML alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
