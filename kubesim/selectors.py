"""Label selectors (string and object forms) and field selectors, parsed and matched as the API server does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kubesim.objects import nested
from kubesim.status import BadRequest, JsonObject

_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|[A-Za-z0-9_./-]+)")
_SET_OPERATORS = {"in", "notin"}

# Field labels each kind supports beyond metadata.name and metadata.namespace (from the API server's field sets).
_EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Event": (
        "involvedObject.apiVersion",
        "involvedObject.fieldPath",
        "involvedObject.kind",
        "involvedObject.name",
        "involvedObject.namespace",
        "involvedObject.resourceVersion",
        "involvedObject.uid",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
}


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector: ``key op values``."""

    key: str
    operator: str  # one of "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this clause (``!=`` and ``notin`` match an absent key)."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        return not present


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every requirement holds for ``labels``."""
        return all(requirement.matches(labels) for requirement in self.requirements)

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        """Parse the ``labelSelector`` query syntax: ``a=b,c!=d,e in (f,g),h notin (i),j,!k``."""
        if not text or not text.strip():
            return cls()
        return cls(tuple(_LabelParser(text).requirements()))

    @classmethod
    def from_object(cls, selector: JsonObject | None) -> LabelSelector:
        """Convert a ``metav1.LabelSelector`` (``matchLabels``/``matchExpressions``)."""
        if not selector:
            return cls()
        found = [
            Requirement(key, "=", frozenset([str(value)])) for key, value in (selector.get("matchLabels") or {}).items()
        ]
        operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
        for expression in selector.get("matchExpressions") or []:
            operator = operators.get(str(expression.get("operator")))
            if operator is None:
                raise BadRequest(f"{expression.get('operator')!r} is not a valid label selector operator")
            found.append(Requirement(str(expression.get("key")), operator, frozenset(expression.get("values") or [])))
        return cls(tuple(found))

    @classmethod
    def from_map(cls, labels: Mapping[str, str]) -> LabelSelector:
        """A selector requiring each ``key=value`` of a plain map (as in ``Service.spec.selector``)."""
        return cls(tuple(Requirement(key, "=", frozenset([value])) for key, value in labels.items()))

    def __str__(self) -> str:
        parts = []
        for requirement in self.requirements:
            values = sorted(requirement.values)
            if requirement.operator in ("=", "!="):
                parts.append(f"{requirement.key}{requirement.operator}{values[0]}")
            elif requirement.operator in _SET_OPERATORS:
                parts.append(f"{requirement.key} {requirement.operator} ({','.join(values)})")
            elif requirement.operator == "exists":
                parts.append(requirement.key)
            else:
                parts.append(f"!{requirement.key}")
        return ",".join(parts)


class _LabelParser:
    """A recursive-descent parser over the tokens of a label selector string."""

    def __init__(self, text: str):
        self._text = text
        self._tokens = self._tokenize(text)
        self._position = 0

    def _tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if match is None:
                raise self._error()
            tokens.append(match.group(1))
            position = match.end()
        return tokens

    def _error(self) -> BadRequest:
        return BadRequest(f"unable to parse requirement: invalid label selector: {self._text!r}")

    def _peek(self) -> str | None:
        return self._tokens[self._position] if self._position < len(self._tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise self._error()
        self._position += 1
        return token

    def requirements(self) -> list[Requirement]:
        """Every comma-separated requirement, in order."""
        found = [self._requirement()]
        while self._peek() == ",":
            self._take()
            found.append(self._requirement())
        if self._peek() is not None:
            raise self._error()
        return found

    def _requirement(self) -> Requirement:
        token = self._take()
        if token == "!":
            return Requirement(self._key(self._take()), "!")
        key = self._key(token)
        operator = self._peek()
        if operator in ("=", "==", "!="):
            self._take()
            kind = "!=" if operator == "!=" else "="
            # ``a=`` selects an empty value: the value token may be missing before a comma or the end.
            value = "" if self._peek() in (None, ",") else self._key(self._take())
            return Requirement(key, kind, frozenset([value]))
        if operator in _SET_OPERATORS:
            self._take()
            return Requirement(key, operator, frozenset(self._values()))
        return Requirement(key, "exists")

    def _values(self) -> list[str]:
        if self._take() != "(":
            raise self._error()
        values: list[str] = []
        while (token := self._take()) != ")":
            if token != ",":
                values.append(self._key(token))
        return values

    def _key(self, token: str) -> str:
        if token in ("=", "==", "!=", "!", "(", ")", ","):
            raise self._error()
        return token


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of ``field=value`` / ``field!=value`` terms over a kind's supported field labels."""

    terms: tuple[tuple[str, bool, str], ...] = ()  # (field, wants_equal, value)

    @classmethod
    def parse(cls, text: str | None, kind: str) -> FieldSelector:
        """Parse ``metadata.name=x,status.phase!=Running``; unknown fields are a 400 as on a real server."""
        if not text or not text.strip():
            return cls()
        supported = field_labels(kind)
        terms = []
        for part in text.split(","):
            match = re.fullmatch(r"\s*([^=!\s]+)\s*(==|!=|=)\s*(.*?)\s*", part)
            if match is None:
                raise BadRequest(f"invalid selector: '{text}'; can't understand '{part}'")
            field, operator, value = match.groups()
            if field not in supported:
                raise BadRequest(f"field label not supported: {field}")
            terms.append((field, operator != "!=", value))
        return cls(tuple(terms))

    def matches(self, obj: JsonObject) -> bool:
        """Whether every term holds for ``obj``."""
        return all((_field_value(obj, field) == value) == wanted for field, wanted, value in self.terms)

    def name(self) -> str | None:
        """The name this selector pins with ``metadata.name=``, if it does."""
        for field, wanted, value in self.terms:
            if field == "metadata.name" and wanted:
                return value
        return None


def field_labels(kind: str) -> tuple[str, ...]:
    """The field labels ``kind`` can be selected by."""
    return ("metadata.name", "metadata.namespace", *_EXTRA_FIELDS.get(kind, ()))


def _field_value(obj: JsonObject, field: str) -> str:
    value = nested(obj, *field.split("."))
    return "" if value is None else str(value)
