"""Stories about the expression language of preConditions, Condition tasks and POLL exit criteria."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import expressions
from orchestrator.errors import BindingError, ExpressionError
from orchestrator.expressions import check, evaluate, parse, truthy


def resolver(values: dict[str, object], asked: list[str] | None = None) -> Callable[[str], object]:
    """A resolver over a plain mapping that records what it was asked and fails like the real one."""

    def resolve(name: str) -> object:
        if asked is not None:
            asked.append(name)
        if name not in values:
            raise BindingError(f"no value for {name}")
        return values[name]

    return resolve


def test_a_precondition_on_an_empty_tag_is_false_and_on_a_set_tag_true() -> None:
    # Given a task that should only run when a tag was given
    text = "${input.tag} != ''"
    # When it is checked with an empty tag and with a real one
    empty = check(text, resolver({"input.tag": ""}))
    given_tag = check(text, resolver({"input.tag": "v1.2"}))
    # Then only the real tag lets the task run
    assert (empty, given_tag) == (False, True)


def test_a_condition_task_combines_a_response_code_and_an_input() -> None:
    # Given a Condition task over an earlier task's output and the pipeline input
    text = "${Build.Check.output.responseCode} == 200 and ${input.env} == 'prod'"
    values: dict[str, object] = {"Build.Check.output.responseCode": 200, "input.env": "prod"}
    # When it is checked for prod and for staging
    prod = check(text, resolver(values))
    staging = check(text, resolver({**values, "input.env": "staging"}))
    # Then only prod passes
    assert (prod, staging) == (True, False)


@pytest.mark.parametrize(("a", "b", "c"), list(itertools.product([True, False], repeat=3)))
def test_not_binds_tighter_than_and_which_binds_tighter_than_or(a: bool, b: bool, c: bool) -> None:
    # Given every combination of three flags
    values: dict[str, object] = {"a": a, "b": b, "c": c}
    # When the author writes the two classic precedence traps without parentheses
    first = check("not ${a} and ${b} or ${c}", resolver(values))
    second = check("${a} || ${b} && ${c}", resolver(values))
    # Then they read as ((not a) and b) or c, and a or (b and c)
    assert first == (((not a) and b) or c)
    assert second == (a or (b and c))


def test_not_applies_to_a_whole_comparison_and_parentheses_regroup() -> None:
    # Given a flag that is false
    resolve = resolver({"x": "prod", "a": False, "b": True})
    # When `not` precedes a comparison and parentheses change the grouping
    # Then `not` negates the comparison and the parentheses win over precedence
    assert check("not ${x} == 'dev'", resolve) is True
    assert check("!(${a} or ${b})", resolve) is False
    assert check("(${a} or ${b}) and not ${a}", resolve) is True


def test_a_decided_or_and_a_decided_and_do_not_resolve_their_right_side() -> None:
    # Given a resolver that records its calls and knows nothing of `missing`
    asked: list[str] = []
    resolve = resolver({"yes": True, "no": False}, asked)
    # When the left side already decides an `or` and an `and`
    decided_or = check("${yes} or ${missing}", resolve)
    decided_and = check("${no} and ${missing} == 1", resolve)
    # Then the right side is never resolved, so no BindingError
    assert (decided_or, decided_and) == (True, False)
    assert asked == ["yes", "no"]


def test_a_binding_error_from_the_resolver_passes_through_untouched() -> None:
    # Given a resolver that cannot resolve a name
    raised = BindingError("no value for input.nope")

    def resolve(name: str) -> object:
        raise raised

    # When an expression needs it
    with pytest.raises(BindingError) as caught:
        check("${input.nope} == 1", resolve)
    # Then the very same error reaches the caller
    assert caught.value is raised


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"10" > "9"', True),
        ("${code} == 200", True),
        ("${code} >= 500", False),
        ("-2.5 < ${small}", True),
        ("1 == 1.0", True),
        ("'abc' < 'abd'", True),
        ("'10' < 'abc'", True),
        ("${name} == 'api'", True),
    ],
)
def test_numbers_compare_as_numbers_even_when_they_arrive_as_strings(text: str, expected: bool) -> None:
    # Given values as a JSON response or an input form delivers them: numbers often as strings
    values: dict[str, object] = {"code": "200", "small": "-2", "name": "api"}
    # When compared
    result = check(text, resolver(values))
    # Then numeric strings compare numerically ("10" > "9"), other strings lexicographically
    assert result is expected


@pytest.mark.parametrize(
    ("value", "text", "expected"),
    [
        ("TRUE", "${v} == true", True),
        (" false ", "${v} == False", True),
        (True, "${v} == 'true'", True),
        (True, "${v} != 'True'", False),
        ("yes", "${v} == true", False),
        (1, "${v} == true", False),
        (None, "${v} == null", True),
        (None, "${v} == NULL", True),
        ("", "${v} == null", False),
        (0, "${v} == null", False),
        ({"a": [1, 2]}, "${v} == ${w}", True),
        ([1, 2], "${v} == ${w}", False),
    ],
)
def test_bools_strings_nulls_and_structures_compare_the_way_authors_expect(
    value: object, text: str, expected: bool
) -> None:
    # Given a value from the resolver (and `w`, a dict to compare against)
    values: dict[str, object] = {"v": value, "w": {"a": [1, 2]}}
    # When compared with a literal or another value
    result = check(text, resolver(values))
    # Then bools match their string spelling in any case, null matches only null, structures by value
    assert result is expected


@pytest.mark.parametrize("text", ["${v} < 3", "${d} > 1", "${v} >= 'a'", "true < false", "${d} <= ${d}"])
def test_ordering_values_that_have_no_order_is_an_error(text: str) -> None:
    # Given a null and a dict from the resolver
    resolve = resolver({"v": None, "d": {"a": 1}})
    # When they are ordered
    with pytest.raises(ExpressionError, match="cannot compare") as caught:
        check(text, resolve)
    # Then the error quotes the expression
    assert text in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (None, False),
        (0, False),
        (0.5, True),
        (-1, True),
        ("TRUE", True),
        (" False ", False),
        ("", False),
        ([], False),
        ([0], True),
        ({}, False),
        ({"a": 1}, True),
    ],
)
def test_truthy_accepts_only_boolean_ish_values(value: object, expected: bool) -> None:
    # Given a value a Condition or exit criterion may end on
    # When its truth is taken
    # Then it follows the documented rules
    assert truthy(value) is expected


def test_a_string_that_is_not_a_boolean_is_an_error_not_silently_true() -> None:
    # Given a Condition that is a lone binding resolving to a word
    resolve = resolver({"input.flag": "abc"})
    # When it is checked, or its value's truth is taken directly
    with pytest.raises(ExpressionError, match=r"'abc' is not a boolean in: \$\{input.flag\}"):
        check("${input.flag}", resolve)
    with pytest.raises(ExpressionError, match="'abc' is not a boolean"):
        truthy("abc")
    # Then `and` rejects it as well
    with pytest.raises(ExpressionError, match="not a boolean"):
        check("true and ${input.flag}", resolve)


def test_a_lone_operand_evaluates_to_the_resolved_value_itself() -> None:
    # Given a lone binding and a lone literal
    body = {"status": "DONE", "items": [1]}
    # When evaluated
    value = evaluate(parse("${ responseJson }"), resolver({"responseJson": body}))
    literal = evaluate(parse("'it\\'s \\\"ok\\\"\\n\\t\\\\'"), resolver({}))
    # Then the values come back as is, escapes decoded
    assert value is body
    assert literal == 'it\'s "ok"\n\t\\'
    assert evaluate(parse("-12"), resolver({})) == -12
    assert evaluate(parse("3.25"), resolver({})) == 3.25


def test_poll_exit_criteria_use_bare_paths_with_indexes() -> None:
    # Given the exit criteria of a POLL task over an HTTP response
    values: dict[str, object] = {
        "responseJson.items[0].ready": True,
        "responseJson.status": "DONE",
        "responseCode": 503,
        "responseJson.matrix[1][0]": "x",
    }
    resolve = resolver(values)
    # When they are checked
    # Then each bare path is resolved by its text, indexes included
    assert check("responseJson.items[0].ready == true", resolve)
    assert check("responseJson.status == 'DONE' and ${responseJson.status} == \"DONE\"", resolve)
    assert check("responseCode >= 500", resolve)
    assert check("responseJson.matrix[1][0] == 'x'", resolve)


def test_references_are_listed_once_in_source_order_with_spaces_kept() -> None:
    # Given an expression over stage and task names holding spaces, a repeated binding and a bare path
    text = (
        "${Development.Update Deployment.output.previousImage} != ${ input.image }"
        " and (${input.image} != '' or responseJson.items[0].name == 'web-1')"
    )
    # When its references are listed
    references = parse(text).references
    # Then each appears once, stripped, in the order written
    assert references == (
        "Development.Update Deployment.output.previousImage",
        "input.image",
        "responseJson.items[0].name",
    )


def test_keywords_are_not_paths_in_any_case_but_may_follow_a_dot() -> None:
    # Given keywords spelled in various cases, and a path whose later segment looks like a keyword
    # When parsed
    # Then keywords are literals and operators, never references
    assert parse("TRUE AND not False OR null").references == ()
    assert check("True AND NOT false", resolver({}))
    assert parse("responseJson.null == 1").references == ("responseJson.null",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(${a} == 1))", "unexpected ')' at column 12"),
        ("${a} ==", "unexpected end of expression at column 8"),
        ("${a} + 1", "unexpected '+' at column 6"),
        ("${a} = 1", "unexpected '=' at column 6 (compare with '==')"),
        ("${a} === 1", "unexpected '=' at column 8"),
        ("1 < ${a} < 3", "unexpected '<' at column 10 (comparisons do not chain"),
        ("${a} == 'abc", "unterminated string at column 9"),
        ("${a} == 'a\\qb'", "unknown escape '\\q' at column 11"),
        ("${input.tag != ''", "unterminated '${' at column 1"),
        ("${  } == 1", "empty binding '${}' at column 1"),
        ("${a} ${b}", "unexpected '${b}' at column 6"),
        ("(${a} == 1", "unexpected end of expression at column 11 (expected ')' to close '(' at column 1)"),
        ("a & b", "unexpected '&' at column 3"),
        ("and a", "unexpected 'and' at column 1"),
        ("not", "unexpected end of expression at column 4"),
        ("items[x] == 1", "malformed path 'items[' at column 6"),
        ("responseJson. == 1", "malformed path 'responseJson.' at column 13"),
        ("null.x == 1", "unexpected '.' at column 5"),
        ("$a == 1", "unexpected '$' at column 1"),
        ("1.5.2 == 1", "unexpected '.' at column 4"),
        ("- 1 == 1", "unexpected '-' at column 1"),
    ],
)
def test_bad_syntax_is_reported_with_its_column_and_the_text(text: str, message: str) -> None:
    # Given a mistyped expression
    # When it is parsed
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    # Then the error names the problem, its 1-based column and the text
    assert message in str(caught.value)
    assert str(caught.value).endswith(f"in: {text}")


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_an_empty_expression_is_an_error(text: str) -> None:
    # Given an expression left blank
    # When it is parsed
    # Then it is refused rather than read as true or false
    with pytest.raises(ExpressionError, match="empty expression"):
        parse(text)


def test_too_long_text_and_too_deep_nesting_are_errors_not_crashes() -> None:
    # Given hostile documents: very long text, deep parentheses, long runs of `not`
    too_long = "true or " * 1300 + "true"
    deep_parens = "(" * 150 + "true" + ")" * 150
    deep_nots = "!" * 5000 + "true"
    # When parsed
    # Then each is a clear ExpressionError, never a RecursionError
    with pytest.raises(ExpressionError, match="longer than 10000"):
        parse(too_long)
    with pytest.raises(ExpressionError, match="nesting deeper than 100 levels at column 101"):
        parse(deep_parens)
    with pytest.raises(ExpressionError, match="nesting deeper than 100"):
        parse(deep_nots)


def test_nesting_within_the_limit_and_long_flat_chains_evaluate() -> None:
    # Given 100 levels of parentheses and a chain of a thousand `or`s
    nested = "(" * 100 + "${x}" + ")" * 100
    chain = " or ".join(["false"] * 1000) + " or ${x}"
    # When checked
    # Then both work
    assert check(nested, resolver({"x": True}))
    assert check(chain, resolver({"x": True}))


def test_a_parsed_expression_is_immutable() -> None:
    # Given a parsed expression shared between task runs
    expression = parse("${a} == 1")
    # When something tries to change it
    # Then it cannot
    with pytest.raises(dataclasses.FrozenInstanceError):
        expression.text = "true"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        expression.root.op = "!="  # type: ignore[union-attr, misc]


def test_the_module_never_uses_python_eval_exec_compile_or_ast() -> None:
    # Given the module's source
    source = Path(expressions.__file__).read_text(encoding="utf-8")
    # When searched for the builtins that would run user text as code (`re.compile` is a method, fine)
    calls = re.findall(r"(?<![\w.])(?:eval|exec|compile)\s*\(", source)
    imports = re.findall(r"^\s*(?:import\s+ast\b|from\s+ast\s+import)", source, re.MULTILINE)
    # Then there are none
    assert calls == []
    assert imports == []


TOKENS = [
    "${a}",
    "${ b c }",
    "d.e[0]",
    "'s'",
    '"t\\"u"',
    "1",
    "-2.5",
    "true",
    "NULL",
    "and",
    "or",
    "not",
    "!",
    "&&",
    "||",
    "==",
    "!=",
    "<",
    ">=",
    "(",
    ")",
    "+",
    "=",
    "${",
    "}",
    "'",
    "[",
    ".",
]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join))
def test_parse_on_any_text_raises_nothing_but_expression_error(text: str) -> None:
    # Given arbitrary text, or a soup of the language's own tokens
    # When parsed
    # Then it either parses or fails with an ExpressionError
    try:
        expression = parse(text)
    except ExpressionError:
        return
    assert expression.text == text
    assert all(isinstance(name, str) and name for name in expression.references)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["true", "FALSE", " ", "5", "-2.5", "10", "abc"])
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=10,
)
EXPRESSIONS = [
    "${a}",
    "not ${a}",
    "${a} and b or c[0].d",
    "${a} == b",
    "${a} != c[0].d",
    "${a} < b",
    "b >= c[0].d",
    "${a} > 5",
    "${a} <= 'x'",
    "${a} == true",
    "${a} == null",
    "!(${a} || b) && c[0].d == -2.5",
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EXPRESSIONS), JSON, JSON, JSON)
def test_evaluate_on_any_json_values_raises_nothing_but_expression_error(
    text: str, a: object, b: object, c: object
) -> None:
    # Given any JSON-like values (NaN and infinities included) behind the references
    resolve = resolver({"a": a, "b": b, "c[0].d": c})
    # When the expression is evaluated and its truth taken
    # Then the outcome is a value, a bool, or an ExpressionError
    try:
        evaluate(parse(text), resolve)
        assert isinstance(check(text, resolve), bool)
    except ExpressionError:
        pass


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_an_integer_too_long_for_python_to_print_is_still_handled(text: str) -> None:
    # Given a response holding an integer of 5,001 digits (Python refuses to print one over 4,300)
    huge = 10**5000
    resolve = resolver({"a": huge, "b": "x", "c[0].d": [huge]})
    # When any expression meets it
    try:
        result = check(text, resolve)
    except ExpressionError as error:
        # Then an error can still describe it and quote the text
        assert str(error).endswith(f"in: {text}")
        return
    # Then, or, it simply has a truth
    assert isinstance(result, bool)


def test_a_huge_integer_compares_exactly() -> None:
    # Given a huge integer and a number one more, as text
    huge = 10**5000
    # When compared
    # Then the comparison is exact
    assert check("${a} < ${b}", resolver({"a": huge, "b": "1" + "0" * 4999 + "1"}))
    assert check("${a} == ${a}", resolver({"a": huge}))
    assert not check("${a} == 'abc'", resolver({"a": huge}))


def test_an_escaped_binding_in_a_quoted_text_is_the_literal_text_code_stream_passes_on() -> None:
    # Code Stream's `\${...}` is a literal `${`: in a condition it compares as text, and names nothing to resolve
    asked: list[str] = []

    def resolve(reference: str) -> object:
        asked.append(reference)
        return "${resource.name}"

    assert evaluate(parse(r"'\${resource.name}'"), resolve) == "${resource.name}"
    assert evaluate(parse(r"${Deploy.Get.output.name} == '\${resource.name}'"), resolve) is True
    assert asked == ["Deploy.Get.output.name"]
