r"""`${...}` bindings: parsing a reference, and resolving the bindings in a task's input.

A reference is one of `input.NAME[.path]`, `STAGE.TASK.output[.path]`, `STAGE.TASK.input.NAME[.path]`,
`STAGE.TASK.status`, `var.NAME`, `executionId`, `executionIndex`, `requestBy`, `name` (the pipeline's) or
`status` (the execution's). Stage and task names may hold spaces, never dots. Paths go into JSON values with
`.key` and `[N]`; a path into an output value that is JSON text (a REST task's `responseBody`) goes into the
parsed JSON, as in Code Stream. `\${...}` is Code Stream's escape: it is no binding, and reaches the task's target
as the literal `${...}`.

A string that is exactly one binding takes the bound value with its type (a dict stays a dict); a
binding inside longer text is spliced in as text (JSON for objects and lists). Text with a structure of its
own (YAML documents, URLs) is bound by `structured.py` instead, so that no value changes that structure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from orchestrator.errors import BindingError

BINDING = re.compile(r"(?<!\\)\$\{([^}]*)\}")
_WHOLE = re.compile(r"^\$\{([^}]*)\}$")
ESCAPE = "\\${"
# A binding, or the escape standing for a literal `${`: read in one pass, so no bound value is ever read again.
_TOKEN = re.compile(r"\\\$\{|(?<!\\)\$\{([^}]*)\}")
# At most 9 digits: Python refuses to read an int of thousands of digits, and no list is that long anyway.
_INDEX = re.compile(r"\[(\d{1,9})\]")
_SEGMENT = re.compile(r"^([^\[\]]*)((?:\[\d{1,9}\])*)$")

PathPart = str | int


class RefKind(StrEnum):
    """What a reference points at."""

    INPUT = "input"
    OUTPUT = "output"
    VAR = "var"
    EXECUTION_ID = "executionId"
    EXECUTION_INDEX = "executionIndex"
    REQUEST_BY = "requestBy"
    NAME = "name"
    STATUS = "status"


_SCALARS = {RefKind.EXECUTION_ID, RefKind.EXECUTION_INDEX, RefKind.REQUEST_BY, RefKind.NAME, RefKind.STATUS}
# What a task reference reads of its task: `STAGE.TASK.output`, `.input` or `.status`.
TASK_PARTS = ("output", "input", "status")


@dataclass(frozen=True)
class Ref:
    """A parsed reference: its kind, the name or task it names, and a path into the value."""

    text: str
    kind: RefKind
    name: str = ""
    stage: str = ""
    task: str = ""
    path: tuple[PathPart, ...] = ()
    part: str = "output"  # of an OUTPUT reference: what of the task it reads (see TASK_PARTS)

    @property
    def task_key(self) -> tuple[str, str]:
        return (self.stage, self.task)


def split_path(text: str) -> list[PathPart]:
    """`a.b[0].c` -> ["a", "b", 0, "c"]; raises BindingError on an empty segment or a stray bracket."""
    parts: list[PathPart] = []
    for segment in text.split("."):
        match = _SEGMENT.match(segment)
        if match is None or not match.group(1).strip():
            raise BindingError(f"'{text}' has an empty or malformed part")
        parts.append(match.group(1).strip())
        parts.extend(int(index) for index in _INDEX.findall(match.group(2)))
    return parts


def parse_ref(text: str) -> Ref:
    """Parse the text inside `${...}`; raises BindingError naming what is wrong."""
    body = text.strip()
    if not body:
        raise BindingError("empty binding '${}'")
    if body in {kind.value for kind in _SCALARS}:
        return Ref(body, RefKind(body))
    head, _, rest = body.partition(".")
    if head in (RefKind.INPUT, RefKind.VAR):
        if not rest:
            raise BindingError(f"'${{{body}}}' names no {head} value")
        name, *path = split_path(rest)
        return Ref(body, RefKind(head), name=str(name), path=tuple(path))
    return _parse_output_ref(body)


def _parse_output_ref(body: str) -> Ref:
    stage, _, rest = body.partition(".")
    task, _, rest = rest.partition(".")
    part, _, path = rest.partition(".")
    if not (stage.strip() and task.strip()) or part not in TASK_PARTS:
        raise BindingError(
            f"'${{{body}}}' is not a binding: expected input.NAME, STAGE.TASK.output[.path], STAGE.TASK.input.NAME, "
            "STAGE.TASK.status, var.NAME, name, status, executionId, executionIndex or requestBy"
        )
    if part == "status" and path:
        raise BindingError(f"'${{{body}}}': a task's status is one word, with no path into it")
    if part == "input" and not path:
        raise BindingError(f"'${{{body}}}' names no input of task '{stage.strip()}.{task.strip()}'")
    return Ref(
        body,
        RefKind.OUTPUT,
        stage=stage.strip(),
        task=task.strip(),
        path=tuple(split_path(path) if path else ()),
        part=part,
    )


def unescape(text: str) -> str:
    """Text as its target gets it: each `\\${` escape becomes the literal `${` it stands for."""
    return text.replace(ESCAPE, "${")


def substitute(text: str, splice: Callable[[re.Match[str]], str]) -> str:
    """`text` with each binding replaced by what `splice` gives for its match (the body is `group(1)`) and each
    escape by the `${` it stands for; a bound value reaches the target as it is, even when it holds `\\${`."""
    return _TOKEN.sub(lambda match: "${" if match.group(1) is None else splice(match), text)


def unterminated(text: str) -> bool:
    """Whether a text holds a `${` that starts no binding (an escaped one is literal text, not a binding)."""
    return "${" in BINDING.sub("", text).replace(ESCAPE, "")


def find_refs(value: object) -> list[str]:
    """Every `${...}` body inside a value, walking dicts and lists, in document order."""
    found: list[str] = []
    if isinstance(value, str):
        found.extend(BINDING.findall(value))
    elif isinstance(value, Mapping):
        for item in value.values():
            found.extend(find_refs(item))
    elif isinstance(value, list | tuple):
        for item in value:
            found.extend(find_refs(item))
    return found


def walk(value: object, path: tuple[PathPart, ...], where: str, parse_text: bool = False) -> object:
    """Follow `path` into a JSON value; raises BindingError naming the first step that has no value.

    With `parse_text` a step into text reads the text as JSON first (a REST task's `responseBody`), and a text that
    is not JSON is an error naming the path.
    """
    current = value
    for position, step in enumerate(path):
        if parse_text and isinstance(current, str):
            current = _parsed(current, path[:position], where)
        if isinstance(step, int) and isinstance(current, list) and -len(current) <= step < len(current):
            current = current[step]
            continue
        if isinstance(step, str) and isinstance(current, Mapping) and step in current:
            current = current[step]
            continue
        raise BindingError(f"{where} has no value at '{step}'")
    return current


def _parsed(text: str, path: tuple[PathPart, ...], where: str) -> object:
    """Text an output holds read as JSON, to go further into it; BindingError naming the path when it is not."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        shown = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path).lstrip(".")
        raise BindingError(f"{where}: '{shown}' is not JSON, so no path leads into it") from None


@dataclass(frozen=True)
class Scope:
    """What bindings of one execution can see: its input, outputs of finished tasks, and its identity.

    `lenient` scopes (used for rollback inputs, where the failure may have come before a task ran) turn a
    missing value into an empty string instead of an error.
    """

    input: Mapping[str, object]
    outputs: Mapping[tuple[str, str], Mapping[str, object]]
    execution_id: str = ""
    execution_index: int = 0
    requested_by: str = ""
    variables: Mapping[str, object] = field(default_factory=dict)
    lenient: bool = False
    pipeline_name: str = ""
    status: str = ""
    # The status of every task run, and the input (as the pipeline writes it) of every task that has one.
    statuses: Mapping[tuple[str, str], str] = field(default_factory=dict)
    task_inputs: Mapping[tuple[str, str], Mapping[str, object]] = field(default_factory=dict)

    def lookup(self, text: str) -> object:
        """The value a reference names."""
        ref = parse_ref(text)
        try:
            return self._lookup(ref)
        except BindingError:
            if self.lenient:
                return ""
            raise

    def _lookup(self, ref: Ref) -> object:
        if ref.kind is RefKind.EXECUTION_ID:
            return self.execution_id
        if ref.kind is RefKind.EXECUTION_INDEX:
            return self.execution_index
        if ref.kind is RefKind.REQUEST_BY:
            return self.requested_by
        if ref.kind is RefKind.NAME:
            return self.pipeline_name
        if ref.kind is RefKind.STATUS:
            return self.status
        if ref.kind is RefKind.OUTPUT:
            return self._task_value(ref)
        source = self.input if ref.kind is RefKind.INPUT else self.variables
        if ref.name not in source:
            raise BindingError(f"'${{{ref.text}}}': there is no {ref.kind.value} named '{ref.name}'")
        return walk(source[ref.name], ref.path, f"{ref.kind.value} '{ref.name}'")

    def _task_value(self, ref: Ref) -> object:
        task = f"'{ref.stage}.{ref.task}'"
        if ref.part == "status":
            if ref.task_key not in self.statuses:
                raise BindingError(f"'${{{ref.text}}}': task {task} has not run")
            return self.statuses[ref.task_key]
        if ref.task_key not in self.outputs:
            raise BindingError(f"'${{{ref.text}}}': task {task} has not completed")
        if ref.part == "input":
            # The task's input as it was bound when it ran: its bindings name what had run before it.
            written = walk(self.task_inputs.get(ref.task_key, {}), ref.path, f"the input of {task}")
            return resolve(written, self.lookup)
        return walk(self.outputs[ref.task_key], ref.path, f"the output of {task}", parse_text=True)


def whole_binding(text: str) -> str | None:
    """The body of the binding a text is made of, when it is exactly one binding."""
    whole = _WHOLE.match(text)
    return whole.group(1) if whole else None


def as_text(value: object) -> str:
    """How a bound value reads when spliced into longer text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def resolve(value: object, lookup: Callable[[str], object]) -> object:
    """Replace every binding inside `value` (walking dicts and lists) with what `lookup` gives for it."""
    if isinstance(value, str):
        whole = whole_binding(value)
        if whole is not None:
            return lookup(whole)
        return substitute(value, lambda match: as_text(lookup(match.group(1))))
    if isinstance(value, Mapping):
        return {key: resolve(item, lookup) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(item, lookup) for item in value]
    return value
