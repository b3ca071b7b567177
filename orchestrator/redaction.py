"""Redaction: masking secrets out of what Rollway records, shows and logs. Pure: no I/O.

What is masked (each replaced by `MASK`):

- the values of SECRET and RESTRICTED project variables, wherever they appear inside a string (also in the
  forms a value takes on its way: base64 as a Kubernetes Secret's `data` holds it, percent-encoded as in a URL,
  escaped as inside JSON text);
- the `data` and `stringData` values of Kubernetes Secrets: in parsed objects (`kind: Secret`, and the
  `response.secrets.<name>` of a K8S task's output) and inside `yaml` text (parsed, masked, dumped again);
- credential headers: Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key and any name ending in
  `-Key` or `-Token` (an auth scheme word stays: `Bearer *****`);
- the password of a URL's user-info: `https://user:*****@host`.

A binding (`${var.token}`) is never masked: it is no secret, it says where a value comes from, and a pipeline
document shown with its bindings stays importable.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote, quote_plus

from orchestrator.bindings import BINDING
from orchestrator.decoding import dump_yaml_documents, load_yaml_documents
from orchestrator.errors import BadRequest

MASK = "*****"
# A secret shorter than this is masked only where a whole string is that secret: masking every "a" or "42"
# inside other text would garble it and tell anyone which letters the secret holds.
MIN_SECRET_LENGTH = 4

CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})
CREDENTIAL_SUFFIXES = ("-key", "-token")
SECRET_FIELDS = ("data", "stringData")
YAML_FIELD = "yaml"
_SCHEME = re.compile(r"^(\s*(?:bearer|basic|token|digest|negotiate|apikey)\s+)(\S.*)$", re.IGNORECASE | re.DOTALL)
_ONLY_SCHEME = re.compile(r"^\s*(?:bearer|basic|token|digest|negotiate|apikey)\s+$", re.IGNORECASE)
_SPACED = re.compile(r"^(\s*)(.*?)(\s*)$", re.DOTALL)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/?#@:]*:)(?P<password>[^\s/?#@]+)(?=@)")
# A credential header written into text, as in an error message or a log line: `Authorization: Bearer abc`.
_HEADER_IN_TEXT = re.compile(
    r"(?P<head>\b(?:proxy-authorization|authorization|set-cookie|cookie|x-api-key|[\w-]+-(?:key|token))"
    r"[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest|negotiate|apikey)\s+)?)"
    r"(?P<value>[^\s\"',;}]+)",
    re.IGNORECASE,
)


def is_binding(text: str) -> bool:
    """Whether a string is nothing but one binding, like `${var.token}`."""
    return BINDING.fullmatch(text.strip()) is not None


def is_credential_header(name: str) -> bool:
    """Whether a header (or field) of this name carries a credential."""
    lowered = name.strip().lower()
    return lowered in CREDENTIAL_HEADERS or lowered.endswith(CREDENTIAL_SUFFIXES)


def _forms(value: str) -> set[str]:
    """The ways a secret value can appear in recorded text."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1]}
    forms.add(base64.b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii"))
    return {form for form in forms if form}


@dataclass(frozen=True)
class Secrets:
    """The secret values to mask: SECRET and RESTRICTED variable values, as given (`raw`)."""

    raw: tuple[str, ...] = ()

    @classmethod
    def of(cls, values: Iterable[object]) -> Secrets:
        return cls(tuple(sorted({value for value in values if isinstance(value, str) and value})))

    def __bool__(self) -> bool:
        return bool(self.raw)

    @cached_property
    def _every(self) -> frozenset[str]:
        return frozenset(form for value in self.raw for form in _forms(value))

    @cached_property
    def _long(self) -> list[str]:
        # Longest first: a secret that holds another is masked whole, not around the shorter one.
        return sorted((form for form in self._every if len(form) >= MIN_SECRET_LENGTH), key=len, reverse=True)

    def mask(self, text: str) -> str:
        """`text` with every secret value in it masked."""
        if not self.raw:
            return text
        if text in self._every:
            return MASK
        for form in self._long:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def present_in(self, value: object) -> Secrets:
        """The secrets that appear somewhere in a JSON value."""
        text = json.dumps(value, default=str)
        strings = set(_strings(value))
        return Secrets(
            tuple(
                raw
                for raw in self.raw
                if any(form in text for form in _forms(raw) if len(form) >= MIN_SECRET_LENGTH)
                or any(form in strings for form in _forms(raw))
            )
        )


NO_SECRETS = Secrets()


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def holds_mask(value: object) -> bool:
    """Whether a recorded value has `MASK` in it: something was masked out of it, and is not kept there."""
    return any(MASK in text for text in _strings(value))


def redact_text(text: str, secrets: Secrets = NO_SECRETS) -> str:
    """A string with secret values and URL passwords masked."""
    return _URL_PASSWORD.sub(_masked_password, secrets.mask(text))


def redact_message(text: str, secrets: Secrets = NO_SECRETS) -> str:
    """A status or log message: as `redact_text`, and credential headers written into it masked too."""
    return _HEADER_IN_TEXT.sub(_masked_header_value, redact_text(text, secrets))


def _masked_password(match: re.Match[str]) -> str:
    password = match.group("password")
    return match.group(0) if is_binding(password) or password == MASK else match.group("head") + MASK


def _masked_header_value(match: re.Match[str]) -> str:
    value = match.group("value")
    return match.group(0) if value.startswith("${") or value == MASK else match.group("head") + MASK


def redact(value: Any, secrets: Secrets = NO_SECRETS) -> Any:
    """A JSON value (task input or output, a pipeline document) with everything secret in it masked."""
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        masked = {key: _field(str(key), item, secrets) for key, item in value.items()}
        if value.get("kind") == "Secret":
            masked = _secret_data(masked)
        response = masked.get("response")
        if isinstance(response, Mapping) and isinstance(response.get("secrets"), Mapping):
            # A K8S task's output: the Secrets as the cluster returned them (list items carry no `kind`).
            found = {name: _secret_data(obj) for name, obj in response["secrets"].items()}
            masked["response"] = {**response, "secrets": found}
        return masked
    if isinstance(value, list | tuple):
        return [redact(item, secrets) for item in value]
    return value


def mask_secrets(value: Any, secrets: Secrets) -> Any:
    """A JSON value with only the secret values in its strings masked (no structural rules)."""
    if not secrets:
        return value
    if isinstance(value, str):
        return secrets.mask(value)
    if isinstance(value, Mapping):
        return {key: mask_secrets(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(item, secrets) for item in value]
    return value


def _field(key: str, value: Any, secrets: Secrets) -> Any:
    if is_credential_header(key):
        if isinstance(value, str):
            return credential(redact_text(value, secrets))
        if isinstance(value, list):  # a header sent more than once, as Set-Cookie often is
            return [credential(redact_text(item, secrets)) if isinstance(item, str) else item for item in value]
    if isinstance(value, str) and key == YAML_FIELD:
        return redact_yaml(value, secrets)
    return redact(value, secrets)


def credential(value: str) -> str:
    """A credential header's value masked, its auth scheme word and any bindings kept."""
    if not value.strip() or value == MASK:
        return value
    if "${" not in value:
        scheme = _SCHEME.match(value)
        return scheme.group(1) + MASK if scheme else MASK
    pieces = re.split(r"(\$\{[^}]*\})", value)
    kept = [
        piece
        if BINDING.fullmatch(piece) or not piece.strip() or (index == 0 and _ONLY_SCHEME.match(piece))
        else _SPACED.sub(lambda match: match.group(1) + MASK + match.group(3), piece)
        for index, piece in enumerate(pieces)
    ]
    return "".join(kept)


def _secret_data(obj: Any) -> Any:
    """A Secret object with the values of its `data` and `stringData` masked."""
    if not isinstance(obj, Mapping):
        return obj
    masked = dict(obj)
    for name in SECRET_FIELDS:
        values = obj.get(name)
        if isinstance(values, Mapping):
            masked[name] = {key: _masked_value(item) for key, item in values.items()}
    return masked


def _masked_value(value: Any) -> Any:
    if value is None or (isinstance(value, str) and (is_binding(value) or value == MASK)):
        return value
    return MASK


def redact_yaml(text: str, secrets: Secrets = NO_SECRETS) -> str:
    """Kubernetes YAML text with secret values masked and its Secrets' data masked (the text dumped again then).

    Masks go into the parsed documents, never into the text: a mask written over a plain scalar would read as a
    YAML alias (`*****`) and the text would no longer parse. Text that is not YAML (it may hold bindings that only
    make YAML once bound) is masked as text.
    """
    masked_text = redact_text(text, secrets)
    if masked_text == text and "Secret" not in text:  # nothing to mask (this runs for every K8S task queued)
        return text
    try:
        documents = load_yaml_documents(text, YAML_FIELD)
    except BadRequest:
        return masked_text
    masked = [redact(_yaml_document(document), secrets) for document in documents]
    if masked == documents:
        return text
    return dump_yaml_documents(masked)


def _yaml_document(document: object) -> object:
    if not isinstance(document, dict):
        return document
    if document.get("kind") == "Secret":
        return _secret_data(document)
    items = document.get("items")
    if document.get("kind") == "List" and isinstance(items, list):
        return {**document, "items": [_yaml_document(item) for item in items]}
    return document
