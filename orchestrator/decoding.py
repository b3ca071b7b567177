"""Decoding text from users (request bodies, YAML fields) into plain values, refusing what would hurt.

YAML aliases let a small text decode to a huge tree, a tree nested deeper than Python's recursion limit
crashes whoever walks it recursively, and YAML reads values JSON cannot hold (an unquoted 2024-01-01 is
a date): each is refused here with a reason, before anything else reads the value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import yaml

from orchestrator.errors import BadRequest, Problem

MAX_DOCUMENT_BYTES = 1_000_000
MAX_VALUES = MAX_DOCUMENT_BYTES
MAX_NESTING = 100


def dump_yaml_documents(documents: list[object], dumper: type[yaml.SafeDumper] = yaml.SafeDumper) -> str:
    """YAML text of documents that reads back as exactly them.

    Written with Unicode as it is, for people to read, unless that does not read back: PyYAML writes a few
    characters (NEL, U+0085, say) into plain scalars where its own reader takes them for line breaks. Then every
    character that is not ASCII is written as an escape instead.
    """
    text = yaml.dump_all(documents, Dumper=dumper, sort_keys=False, allow_unicode=True)
    try:
        if list(yaml.safe_load_all(text)) == documents:
            return text
    except yaml.YAMLError:
        pass
    return yaml.dump_all(documents, Dumper=dumper, sort_keys=False, allow_unicode=False)


def parse_text(body: bytes | str, content_type: str | None) -> object:
    """Decode a request body: as JSON when the content type says JSON, else as YAML (which reads JSON too)."""
    if len(body) > MAX_DOCUMENT_BYTES:
        raise BadRequest(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.endswith("json"):
        try:
            return json.loads(text)
        except ValueError as error:
            raise BadRequest(f"the body is not valid JSON: {error}") from error
        except RecursionError as error:
            raise BadRequest("the body is nested too deeply") from error
    documents = load_yaml_documents(text, "the body", "YAML or JSON")
    if len(documents) > 1:
        raise BadRequest(f"the body holds {len(documents)} YAML documents, not one")
    return documents[0] if documents else None


def load_yaml_documents(text: str, what: str, formats: str = "YAML") -> list[object]:
    """Every document of a YAML text; raises BadRequest naming `what` when it cannot be read."""
    try:
        return list(yaml.safe_load_all(text))
    except RecursionError as error:
        raise BadRequest(f"{what} is nested too deeply") from error
    # Not only YAMLError: PyYAML's constructors fail in their own ways on input such as `!!int ''` or an
    # integer of thousands of digits, and every one of those is a bad text.
    except Exception as error:
        raise BadRequest(f"{what} is not valid {formats}: {error}") from error


def size_problem(document: object, max_values: int = MAX_VALUES) -> str | None:
    """Why a decoded value is too large or too deeply nested to read, or None (walked without recursion)."""
    pending: list[tuple[object, int]] = [(document, 0)]
    count = 0
    while pending:
        value, depth = pending.pop()
        count += 1
        if count > max_values:
            return f"the document holds more than {max_values} values (a YAML alias counts each time it is used)"
        if depth > MAX_NESTING:
            return f"the document is nested more than {MAX_NESTING} levels deep"
        if isinstance(value, Mapping):
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list | tuple):
            pending.extend((item, depth + 1) for item in value)
    return None


LONE_SURROGATE = "holds half of a UTF-16 surrogate pair (such as \\ud800), which is not text"


def has_lone_surrogate(text: str) -> bool:
    """Whether `text` holds a surrogate code point: JSON's "\\ud800" decodes to one, and no UTF-8 text can hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def printable(text: str) -> str:
    """`text` with any lone surrogate written as its escape, so a message naming it can be encoded."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def lone_surrogate_path(value: object, path: str = "") -> str | None:
    """The path of a string or key holding a lone surrogate, or None (walked without recursion)."""
    pending: list[tuple[object, str]] = [(value, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str) and has_lone_surrogate(item):
            return where
        if isinstance(item, Mapping):
            for key, child in item.items():
                child_path = _join(where, printable(str(key)))
                if isinstance(key, str) and has_lone_surrogate(key):
                    return child_path
                pending.append((child, child_path))
        elif isinstance(item, list | tuple):
            pending.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
    return None


def foreign_values(value: object, path: str) -> list[Problem]:
    """Values JSON cannot hold (lone surrogates among them), at their paths (call after `size_problem`: this one
    recurses)."""
    if isinstance(value, Mapping):
        problems: list[Problem] = []
        for key, item in value.items():
            where = _join(path, printable(str(key)))
            if _lone(key):
                problems.append(Problem(where, f"its name {LONE_SURROGATE}"))
            problems += foreign_values(item, where)
        return problems
    if isinstance(value, list | tuple):
        return [problem for index, item in enumerate(value) for problem in foreign_values(item, f"{path}[{index}]")]
    if isinstance(value, float) and not math.isfinite(value):
        return [Problem(path, f"must be a finite number, not {value}")]
    if isinstance(value, str):
        return [Problem(path, LONE_SURROGATE)] if has_lone_surrogate(value) else []
    if value is None or isinstance(value, int | float):
        return []
    what = f"a {type(value).__name__} (quote dates and times in YAML to keep them as text)"
    return [Problem(path, f"must be a string, number, boolean, null, list or object, not {what}")]


def _lone(key: object) -> bool:
    return isinstance(key, str) and has_lone_surrogate(key)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
