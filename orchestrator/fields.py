"""Reading one field of a task's input, the same way when a pipeline is saved and when its task runs: numbers
within their limits (numeric text too, as bindings and Code Stream's exports give it), true-or-false flags written
as text, values of an expected type, and what is only known at run time (a binding) left for then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.bindings import BINDING
from orchestrator.errors import Problem


@dataclass(frozen=True)
class Limit:
    """The numbers a field may hold: above 0 (or 0 too, when `zero`) and at most `maximum`; whole numbers only
    when `whole`."""

    what: str
    whole: bool
    maximum: int
    zero: bool = False

    @property
    def lowest(self) -> str:
        """The bound below, as messages say it."""
        return "0 or more" if self.zero else "above 0"

    def read(self, value: object) -> int | float | None:
        """A field's value as a number within this limit (None when empty; numeric text is read, as bindings give
        text): the one reading of a number field, when a pipeline is saved and when its task runs. Raises
        ValueError saying what is wrong (without the field's name)."""
        if value is None or value == "":
            return None
        number = _number(value, self.whole)
        if number is None:
            raise ValueError(f"must be {self.what} {self.lowest}, not {value!r}")
        problem = self.problem(number)
        if problem is not None:
            raise ValueError(f"{problem}, not {value!r}")
        return number

    def problem(self, number: float) -> str | None:
        """What is wrong with a number for this field, or None (the one range check: save time and run time)."""
        # Only a float can be infinite or NaN (and an int too large for a float would not convert).
        if isinstance(number, float) and not math.isfinite(number):
            return "must be a finite number"
        if number < 0 or (number == 0 and not self.zero):
            return "must be 0 or more" if self.zero else "must be greater than 0"
        if number > self.maximum:
            return f"must be at most {self.maximum}"
        return None


def is_bound(value: object) -> bool:
    """Whether a value is only known at run time."""
    return isinstance(value, str) and BINDING.search(value) is not None


def expect(task_input: Mapping[str, object], name: str, kinds: tuple[type, ...], what: str) -> list[Problem]:
    value = task_input.get(name)
    if value is None or is_bound(value):
        return []
    # bool is an int to Python, never to a pipeline author.
    if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
        return [Problem(name, f"must be {what}, not {value!r}")]
    return []


def limited(task_input: Mapping[str, object], name: str, limit: Limit) -> list[Problem]:
    """A number field as written, read as it is read when it runs (numeric text too; a bound one is checked then)."""
    value = task_input.get(name)
    if is_bound(value):
        return []
    try:
        limit.read(value)
    except ValueError as error:
        return [Problem(name, str(error))]
    return []


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0", "")


def read_flag(name: str, value: object) -> bool:
    """A true-or-false field's value (None is false): a boolean, or text that says one, as bindings and Code Stream's
    exports give it; ValueError naming the field otherwise."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be true or false, not {value!r}")


def flagged(task_input: Mapping[str, object], name: str) -> list[Problem]:
    """A true-or-false field as written, read as it is read when it runs."""
    value = task_input.get(name)
    if is_bound(value):
        return []
    try:
        read_flag(name, value)
    except ValueError:
        return [Problem(name, f"must be true or false, not {value!r}")]
    return []


def bound_number(limit: Limit, name: str, value: object) -> int | float | None:
    """A number field's value once bound (None when empty), as a number within `limit`.

    Bindings often give text (`"5"`), so numeric text is read; raises ValueError naming the field otherwise.
    """
    try:
        return limit.read(value)
    except ValueError as error:
        raise ValueError(f"{name} {error}") from None


def _number(value: object, whole: bool) -> int | float | None:
    """A value read as a number (numeric text too), or None when it is not one; whole numbers as int."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    number: int | float
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            return None
    else:
        number = value
    if whole and isinstance(number, float) and math.isfinite(number):
        # 1e30 is a whole number, and fails its limit as one; 2.5 is not a whole number at all.
        return int(number) if number.is_integer() else None
    return number
