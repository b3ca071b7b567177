"""Bindings inside text that has a structure of its own: YAML documents, URLs and HTTP header values.

Spliced in as plain text, a bound value could change that structure: an image tag of
`1.25\\n---\\nkind: ConfigMap ...` would add an object to a K8S task's YAML (applied with the endpoint's
credentials), and a path segment of `../admin?x=1#` would send a request elsewhere. Here a value only ever
fills the place its binding was written in:

- YAML is parsed first, each binding standing in as a placeholder word (so the text parses as the save-time
  check parsed it), then values go into the parsed documents' strings and the documents are written out again;
- in a URL, a value inside longer text is percent-encoded as one path or query component;
- a header name or value may not hold a line break.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import yaml

from orchestrator.bindings import BINDING, as_text, resolve, substitute, unescape, whole_binding
from orchestrator.decoding import MAX_DOCUMENT_BYTES, dump_yaml_documents, load_yaml_documents, size_problem
from orchestrator.errors import BadRequest, BindingError
from orchestrator.tasktypes import header_problem

Lookup = Callable[[str], object]

# Stands in for a binding while the YAML is parsed: a plain word, a string wherever it appears (a quoted scalar,
# a plain one, a key), never split by YAML's line folding. Lengthened until the text holds no such word already.
_PLACEHOLDER = "rollwaybinding"


def bind_documents(text: str, lookup: Lookup, field: str) -> object:
    """A multi-document YAML text with its bindings bound into the parsed documents; raises BindingError.

    A string that is exactly one binding takes the bound value with its type (a string stays one string scalar,
    whatever it holds); a binding inside longer text, or in a key, is spliced into that one string. The number of
    documents and their structure never change. A text that is exactly one binding takes the bound value as is:
    the whole YAML then comes from that value, as the pipeline says.
    """
    whole = whole_binding(text.strip())
    if whole is not None:
        return lookup(whole)
    if BINDING.search(text) is None:
        return unescape(text)
    marks = _Marks.of(text)
    try:
        documents = load_yaml_documents(marks.text, field)
    except BadRequest as error:
        raise BindingError(error.message) from error
    too_big = size_problem(documents)
    if too_big is not None:
        raise BindingError(f"{field}: {too_big}")
    filler = _Filler(marks, lookup, field)
    bound = [filler.fill(document) for document in documents]
    too_big = size_problem(bound)
    if too_big is not None:
        raise BindingError(f"{field} once bound: {too_big}")
    return dump_yaml_documents(bound, _Dumper)


@dataclass(frozen=True)
class _Marks:
    """A YAML text with each binding replaced by a numbered placeholder, and the bindings' bodies by number."""

    text: str
    bodies: tuple[str, ...]
    pattern: re.Pattern[str]

    @classmethod
    def of(cls, text: str) -> _Marks:
        stem = _PLACEHOLDER
        while stem in text:
            stem += "x"
        bodies: list[str] = []

        def mark(match: re.Match[str]) -> str:
            bodies.append(match.group(1))
            return f"{stem}{len(bodies) - 1}z"

        marked = substitute(text, mark)
        return cls(marked, tuple(bodies), re.compile(re.escape(stem) + r"(\d+)z"))


class _Filler:
    """Puts bound values into parsed documents, building new ones (YAML aliases share objects)."""

    def __init__(self, marks: _Marks, lookup: Lookup, field: str) -> None:
        self.marks, self.lookup, self.field = marks, lookup, field
        self.spliced = 0

    def fill(self, node: object) -> object:
        if isinstance(node, str):
            return self._string(node)
        if isinstance(node, Mapping):
            filled: dict[Any, object] = {}
            for key, item in node.items():
                name = self._text(key) if isinstance(key, str) else key
                if name in filled:
                    raise BindingError(f"{self.field}: two keys of one mapping read {name!r} once bound")
                filled[name] = self.fill(item)
            return filled
        if isinstance(node, list):
            return [self.fill(item) for item in node]
        return node

    def _string(self, text: str) -> object:
        whole = self.marks.pattern.fullmatch(text)
        if whole is not None:
            return self._value(whole)
        return self._text(text)

    def _text(self, text: str) -> str:
        return self.marks.pattern.sub(lambda match: self._spliced(as_text(self._value(match))), text)

    def _value(self, match: re.Match[str]) -> object:
        return self.lookup(self.marks.bodies[int(match.group(1))])

    def _spliced(self, text: str) -> str:
        # One large value bound in many places must not grow the documents without end.
        self.spliced += len(text)
        if self.spliced > MAX_DOCUMENT_BYTES:
            raise BindingError(f"{self.field} once bound is larger than {MAX_DOCUMENT_BYTES} characters")
        return text


class _Dumper(yaml.SafeDumper):
    """Writes every value where it is: a value bound in two places is written twice, not as a YAML alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def bind_url(text: str, lookup: Lookup) -> object:
    """A URL with its bindings bound.

    A URL that is exactly one binding takes its value, and a binding that starts the URL gives its text as it is:
    either names the server, as the pipeline says. Every other value is percent-encoded as one path or query
    component, so it cannot add a segment, a query or a fragment.
    """
    whole = whole_binding(text)
    if whole is not None:
        return lookup(whole)

    def splice(match: re.Match[str]) -> str:
        value = as_text(lookup(match.group(1)))
        return value if match.start() == 0 else component(value)

    return substitute(text, splice)


def component(value: str) -> str:
    """A value as one URL path or query component."""
    # A value of dots alone would still be a `.` or `..` segment, which HTTP clients resolve away.
    if value and not value.strip("."):
        return "%2E" * len(value)
    return quote(value, safe="")


def bind_headers(value: object, lookup: Lookup, field: str) -> object:
    """Headers with their bindings bound; raises BindingError when a name or value would start another header."""
    bound = resolve(value, lookup)
    if isinstance(bound, Mapping):
        for name, item in bound.items():
            problem = header_problem(name, item)
            if problem is not None:
                raise BindingError(f"{field}.{name} {problem}")
    return bound
