"""Signed webhook deliveries: checking GitHub's `X-Hub-Signature-256`, and binding a trigger's input to a payload.

A delivery is authenticated by `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, the format
GitHub sends and registries and GitLab-compatible tools copy. A trigger's `input` may bind the delivery:
`${body.path.to[0].value}` into the JSON payload and `${headers.Name}` (any case) into its headers. As in
pipelines (see `bindings.py`), a string that is exactly one binding takes the bound value with its JSON type,
and a binding inside longer text is spliced in as text.

Pure: no I/O, no Flask.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.bindings import PathPart, find_refs, resolve, split_path, walk
from orchestrator.errors import BindingError, Problem

SIGNATURE_HEADER = "X-Hub-Signature-256"
DELIVERY_HEADER = "X-GitHub-Delivery"
EVENT_HEADER = "X-GitHub-Event"
BODY = "body"
HEADERS = "headers"

_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
# What a header name may be (RFC 9110 `token`), so `${headers.X-GitHub-Event}` reads as one name.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Compared against when the header is missing or malformed, so every refusal does the same work.
_NO_SIGNATURE = "0" * 64


def sign(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value of `body` signed with `secret`."""
    return "sha256=" + _digest(secret, body)


def _digest(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8", "surrogatepass"), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is `sha256=<hex>` of the HMAC-SHA256 of the raw `body` under `secret`.

    The comparison takes the same time however much of it matches (`hmac.compare_digest`).
    """
    match = _SIGNATURE.fullmatch(header.strip()) if header else None
    given = match.group(1).lower() if match else _NO_SIGNATURE
    return hmac.compare_digest(_digest(secret, body), given) and match is not None


@dataclass(frozen=True)
class HookRef:
    """A parsed `${body.path}` or `${headers.Name}`."""

    text: str
    source: str
    path: tuple[PathPart, ...] = ()
    header: str = ""


def parse_hook_ref(text: str) -> HookRef:
    """Parse the text inside `${...}` of a trigger's input; raises BindingError naming what is wrong."""
    body = text.strip()
    head, _, rest = body.partition(".")
    if head == BODY:
        return HookRef(body, BODY, tuple(split_path(rest)) if rest else ())
    if head == HEADERS and _HEADER_NAME.fullmatch(rest):
        return HookRef(body, HEADERS, header=rest)
    if head == HEADERS:
        raise BindingError(f"'${{{body}}}' names no header: expected headers.NAME, e.g. headers.X-GitHub-Event")
    raise BindingError(
        f"'${{{body}}}' is not a webhook binding: a trigger's input binds body[.path] (the JSON payload) "
        "or headers.NAME"
    )


def check_input(values: Mapping[str, Any]) -> list[Problem]:
    """Every malformed binding in a trigger's input, one problem per binding, at `input.NAME`."""
    problems: list[Problem] = []
    for name, value in values.items():
        for text in find_refs(value):
            try:
                parse_hook_ref(text)
            except BindingError as error:
                problems.append(Problem(f"input.{name}", error.message))
    return problems


def bind_delivery(values: Mapping[str, Any], payload: object, headers: Mapping[str, str]) -> dict[str, Any]:
    """A trigger's input with its bindings replaced by what this delivery holds.

    Raises BindingError with one problem per input whose binding has no value in the payload or headers.
    """
    lowered = {name.lower(): value for name, value in headers.items()}

    def lookup(text: str) -> object:
        ref = parse_hook_ref(text)
        if ref.source == HEADERS:
            if ref.header.lower() not in lowered:
                raise BindingError(f"'${{{ref.text}}}': the delivery has no header '{ref.header}'")
            return lowered[ref.header.lower()]
        try:
            return walk(payload, ref.path, "the payload")
        except BindingError as error:
            raise BindingError(f"'${{{ref.text}}}': {error.message}") from error

    bound: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, value in values.items():
        try:
            bound[name] = resolve(value, lookup)
        except BindingError as error:
            problems.append(Problem(f"input.{name}", error.message))
    if problems:
        raise BindingError(
            "the delivery lacks what the trigger's input binds: " + "; ".join(map(str, problems)), problems
        )
    return bound
