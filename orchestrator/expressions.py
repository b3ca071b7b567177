"""The safe expression language of pipeline documents: preCondition, Condition tasks and POLL exit criteria.

This module owns the grammar, the parser (a hand-written tokenizer and recursive descent that build an
immutable AST) and the pure evaluator with the comparison and truth rules pipeline authors rely on.
Documents come from users, so nothing here uses Python's `eval`, `exec`, `compile` or the `ast` module.
The values of `${...}` bindings and of bare paths (`responseJson.items[0].ready`) come from a resolver the
caller passes in; whatever it raises (a `BindingError`, typically) goes through untouched.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeAlias

from orchestrator.errors import ExpressionError

MAX_LENGTH = 10_000
MAX_DEPTH = 100
# Python refuses to turn more than 4,300 digits into an int; a literal that long is a mistake anyway.
MAX_NUMBER_LENGTH = 1_000

Scalar: TypeAlias = str | int | float | bool | None
Resolver: TypeAlias = Callable[[str], object]

_CONSTANTS: dict[str, Scalar] = {"true": True, "false": False, "null": None}
_BOOL_WORDS = {"true": True, "false": False}
_OPERATOR_WORDS = {"and": "and", "or": "or", "not": "not"}
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "t": "\t", "$": "$"}
# Longest first, so that `<=` is never read as `<` followed by `=`.
_SYMBOLS = {"&&": "and", "||": "or", "==": "cmp", "!=": "cmp", "<=": "cmp", ">=": "cmp"}
_SYMBOLS |= {"<": "cmp", ">": "cmp", "!": "not", "(": "(", ")": ")"}
_HINTS = {"=": "compare with '=='", "&": "use 'and' or '&&'", "|": "use 'or' or '||'"}
_ORDER_SIGNS = {"<": (-1,), "<=": (-1, 0), ">": (1,), ">=": (0, 1)}
_SEGMENT = r"[A-Za-z_][A-Za-z0-9_-]*(?:\[[0-9]+\])*"
_PATH = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# ASCII digits only: `\d` would also accept digits of other scripts, which Decimal happily reads.
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class Constant:
    """A literal: string, number, `true`, `false` or `null`."""

    value: Scalar


@dataclass(frozen=True)
class Reference:
    """A `${...}` binding (its stripped body) or a bare path, resolved by the caller at evaluation time."""

    name: str


@dataclass(frozen=True)
class Not:
    """`not x` / `!x`."""

    operand: Node


@dataclass(frozen=True)
class Logical:
    """`a and b and ...` or `a or b or ...`, kept flat so that long chains do not make a deep tree."""

    op: str  # "and" or "or"
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Compare:
    """`left op right` with op one of `== != < <= > >=`."""

    op: str
    left: Node
    right: Node


Node: TypeAlias = Constant | Reference | Not | Logical | Compare


@dataclass(frozen=True)
class Expression:
    """A parsed expression: its source text and the root of its AST."""

    text: str
    root: Node

    @property
    def references(self) -> tuple[str, ...]:
        """Every reference in source order, once each: binding bodies stripped, bare paths as written."""
        return tuple(dict.fromkeys(_references(self.root)))


def _references(node: Node) -> Iterator[str]:
    if isinstance(node, Reference):
        yield node.name
    elif isinstance(node, Not):
        yield from _references(node.operand)
    elif isinstance(node, Compare):
        yield from _references(node.left)
        yield from _references(node.right)
    elif isinstance(node, Logical):
        for operand in node.operands:
            yield from _references(operand)


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python will print
        text = f"<{type(value).__name__}>"
    return _clip(text, 60)


def _syntax_error(text: str, what: str, column: int, hint: str = "") -> ExpressionError:
    suffix = f" ({hint})" if hint else ""
    return ExpressionError(f"{what} at column {column}{suffix} in: {_clip(text)}")


@dataclass(frozen=True)
class _Token:
    kind: str  # value, ref, and, or, not, cmp, (, ), end
    text: str  # as written, for messages
    column: int  # 1-based
    value: Scalar = None  # the constant of a `value`, the reference name of a `ref`


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def tokens(self) -> list[_Token]:
        found: list[_Token] = []
        while True:
            while self.pos < len(self.text) and self.text[self.pos].isspace():
                self.pos += 1
            if self.pos >= len(self.text):
                found.append(_Token("end", "", self.pos + 1))
                return found
            found.append(self._token())

    def _fail(self, what: str, pos: int, hint: str = "") -> ExpressionError:
        return _syntax_error(self.text, what, pos + 1, hint)

    def _token(self) -> _Token:
        char = self.text[self.pos]
        if char in "'\"":
            return self._string(char)
        if self.text.startswith("${", self.pos):
            return self._binding()
        if number := _NUMBER.match(self.text, self.pos):
            return self._number(number.group())
        if word := _WORD.match(self.text, self.pos):
            return self._word(word.group())
        return self._symbol(char)

    def _emit(self, kind: str, end: int, value: Scalar = None) -> _Token:
        token = _Token(kind, self.text[self.pos : end], self.pos + 1, value)
        self.pos = end
        return token

    def _string(self, quote: str) -> _Token:
        chars: list[str] = []
        pos = self.pos + 1
        while pos < len(self.text):
            char = self.text[pos]
            if char == quote:
                return self._emit("value", pos + 1, "".join(chars))
            if char == "\\" and pos + 1 < len(self.text):
                escaped = self.text[pos + 1]
                if escaped not in _ESCAPES:
                    raise self._fail(f"unknown escape '\\{escaped}'", pos, "known: \\' \\\" \\\\ \\n \\t")
                chars.append(_ESCAPES[escaped])
                pos += 2
                continue
            chars.append(char)
            pos += 1
        raise self._fail("unterminated string", self.pos, f"add the closing {quote}")

    def _binding(self) -> _Token:
        end = self.text.find("}", self.pos + 2)
        if end < 0:
            raise self._fail("unterminated '${'", self.pos, "add the closing '}'")
        name = self.text[self.pos + 2 : end].strip()
        if not name:
            raise self._fail("empty binding '${}'", self.pos)
        return self._emit("ref", end + 1, name)

    def _number(self, digits: str) -> _Token:
        if len(digits) > MAX_NUMBER_LENGTH:
            raise self._fail("number is too long", self.pos, f"at most {MAX_NUMBER_LENGTH} characters")
        value: int | float = float(digits) if "." in digits else int(digits)
        return self._emit("value", self.pos + len(digits), value)

    def _word(self, word: str) -> _Token:
        lowered = word.lower()
        end = self.pos + len(word)
        if lowered in _CONSTANTS:
            return self._emit("value", end, _CONSTANTS[lowered])
        if lowered in _OPERATOR_WORDS:
            return self._emit(_OPERATOR_WORDS[lowered], end)
        path = _PATH.match(self.text, self.pos)
        path_end = path.end() if path else end  # always a match: _WORD matched here
        if path_end < len(self.text) and self.text[path_end] in ".[":
            hint = "a name must follow '.'" if self.text[path_end] == "." else "an index looks like [0]"
            raise self._fail(f"malformed path {self.text[self.pos : path_end + 1]!r}", path_end, hint)
        return self._emit("ref", path_end, self.text[self.pos : path_end])

    def _symbol(self, char: str) -> _Token:
        for symbol, kind in _SYMBOLS.items():
            if self.text.startswith(symbol, self.pos):
                return self._emit(kind, self.pos + len(symbol))
        raise self._fail(f"unexpected {char!r}", self.pos, _HINTS.get(char, ""))


class _Parser:
    """Recursive descent; precedence from loosest: or, and, not, comparison, operand."""

    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def _peek(self) -> _Token:
        return self.tokens[self.index]

    def _advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def _unexpected(self, token: _Token, hint: str = "") -> ExpressionError:
        what = "end of expression" if token.kind == "end" else repr(token.text)
        return _syntax_error(self.text, f"unexpected {what}", token.column, hint)

    def _enter(self, token: _Token) -> None:
        # Bounded here so that hostile nesting is a clear error rather than a RecursionError.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _syntax_error(self.text, f"nesting deeper than {MAX_DEPTH} levels", token.column)

    def parse(self) -> Node:
        node = self._or()
        token = self._peek()
        if token.kind != "end":
            raise self._unexpected(token, "expected 'and', 'or' or the end")
        return node

    def _or(self) -> Node:
        return self._chain("or", self._and)

    def _and(self) -> Node:
        return self._chain("and", self._not)

    def _chain(self, op: str, operand: Callable[[], Node]) -> Node:
        operands = [operand()]
        while self._peek().kind == op:
            self._advance()
            operands.append(operand())
        return operands[0] if len(operands) == 1 else Logical(op, tuple(operands))

    def _not(self) -> Node:
        token = self._peek()
        if token.kind != "not":
            return self._comparison()
        self._advance()
        self._enter(token)
        node = Not(self._not())
        self.depth -= 1
        return node

    def _comparison(self) -> Node:
        left = self._operand()
        operator = self._peek()
        if operator.kind != "cmp":
            return left
        self._advance()
        right = self._operand()
        if self._peek().kind == "cmp":
            raise self._unexpected(self._peek(), "comparisons do not chain; join them with 'and'")
        return Compare(operator.text, left, right)

    def _operand(self) -> Node:
        token = self._advance()
        if token.kind == "value":
            return Constant(token.value)
        if token.kind == "ref":
            return Reference(str(token.value))
        if token.kind != "(":
            raise self._unexpected(token, "expected a value")
        self._enter(token)
        node = self._or()
        closing = self._advance()
        if closing.kind != ")":
            raise self._unexpected(closing, f"expected ')' to close '(' at column {token.column}")
        self.depth -= 1
        return node


def parse(text: str) -> Expression:
    """Parse `text` into an `Expression`; raise `ExpressionError` naming the problem and its 1-based column."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise ExpressionError("empty expression")
    return Expression(text, _Parser(text, _Lexer(text).tokens()).parse())


# Raised inside evaluation and turned into an `ExpressionError` quoting the text at the boundary; a private
# class, so that an error the resolver raises (even an `ExpressionError`) is never caught and rewrapped.
class _Unevaluable(Exception):
    pass


@contextmanager
def _reported(text: str) -> Iterator[None]:
    try:
        yield
    except _Unevaluable as problem:
        raise ExpressionError(f"{problem} in: {_clip(text)}") from None


def _bool_word(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    return _BOOL_WORDS.get(value.strip().lower()) if isinstance(value, str) else None


def _boolean_or_none(value: object) -> bool | None:
    word = _bool_word(value)
    if word is not None:
        return word
    if value is None or (isinstance(value, str) and not value.strip()):
        return False
    # For numbers bool() means "non-zero"; for lists and dicts "non-empty".
    return bool(value) if isinstance(value, int | float | list | dict) else None


def truthy(value: object) -> bool:
    """The truth of a value, or `ExpressionError` if it has none (e.g. the string 'abc').

    Bools as is; null is false; numbers are true when non-zero; strings "true"/"false" in any case and
    padding, "" false; lists and dicts true when non-empty.
    """
    return _truth(value, ExpressionError)


def _truth(value: object, problem: type[Exception] = _Unevaluable) -> bool:
    result = _boolean_or_none(value)
    if result is None:
        raise problem(f"{_show(value)} is not a boolean")
    return result


def _number(value: object) -> Decimal | None:
    # Decimal compares ints, floats and numeric strings exactly, whatever their size.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return None if math.isnan(value) else Decimal(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return Decimal(value)
    return None


def _equal(left: object, right: object) -> bool:
    numbers = _number(left), _number(right)
    if numbers[0] is not None and numbers[1] is not None:
        return numbers[0] == numbers[1]
    if isinstance(left, bool) or isinstance(right, bool):
        words = _bool_word(left), _bool_word(right)
        if words[0] is not None and words[1] is not None:
            return words[0] == words[1]
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, dict | list) or isinstance(right, dict | list):
        return left == right
    # An int's text is numeric (so the rule above decided) and a bool's text is "True"/"False" (so the
    # bool rule decided); skipping str() here also spares us its ValueError on ints of 4,300+ digits.
    if isinstance(left, int) or isinstance(right, int):
        return False
    return str(left) == str(right)


def _ordered(op: str, left: object, right: object) -> bool:
    numbers = _number(left), _number(right)
    if numbers[0] is not None and numbers[1] is not None:
        sign = (numbers[0] > numbers[1]) - (numbers[0] < numbers[1])
    elif isinstance(left, str) and isinstance(right, str):
        sign = (left > right) - (left < right)
    else:
        raise _Unevaluable(f"cannot compare {_show(left)} {op} {_show(right)}")
    return sign in _ORDER_SIGNS[op]


def _value_of(node: Node, resolve: Resolver) -> object:
    if isinstance(node, Constant):
        return node.value
    if isinstance(node, Reference):
        return resolve(node.name)
    if isinstance(node, Not):
        return not _truth(_value_of(node.operand, resolve))
    if isinstance(node, Logical):
        # all() and any() stop at the first decisive operand, so later references are never resolved.
        truths = (_truth(_value_of(operand, resolve)) for operand in node.operands)
        return all(truths) if node.op == "and" else any(truths)
    left, right = _value_of(node.left, resolve), _value_of(node.right, resolve)
    if node.op in ("==", "!="):
        return _equal(left, right) == (node.op == "==")
    return _ordered(node.op, left, right)


def evaluate(expression: Expression, resolve: Resolver) -> object:
    """Evaluate `expression`, asking `resolve` for the value of each reference as it is reached.

    A lone operand gives its value as is; `and`, `or`, `not` and comparisons give a bool. Raises only
    `ExpressionError` (quoting the text) or whatever `resolve` raises.
    """
    with _reported(expression.text):
        return _value_of(expression.root, resolve)


def check(text: str, resolve: Resolver) -> bool:
    """Parse, evaluate and take the truth of `text`: the common case of preCondition and exit criteria."""
    expression = parse(text)
    with _reported(text):
        return _truth(_value_of(expression.root, resolve))
