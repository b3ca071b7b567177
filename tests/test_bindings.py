"""Stories about `${...}` bindings: what they name, and what a task is given when they are resolved."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.bindings import Ref, RefKind, Scope, as_text, find_refs, parse_ref, resolve, split_path
from orchestrator.errors import BindingError

BUILD_OUTPUT: dict[str, Any] = {
    "responseCode": 200,
    "ready": True,
    "responseJson": {"id": "b-17", "images": [{"name": "web", "tag": "1.4"}, {"name": "db", "tag": "9"}]},
    "matrix": [[1, 2], [3, 4]],
}


def scope(lenient: bool = False) -> Scope:
    """An execution that has run 'Update Deployment' in 'Dev Stage' and was given an image and replicas."""
    return Scope(
        input={"image": "nginx", "replicas": 3, "config": {"region": "eu", "zones": ["a", "b"]}, "debug": False},
        outputs={("Dev Stage", "Update Deployment"): BUILD_OUTPUT},
        execution_id="e-42",
        execution_index=7,
        requested_by="alice",
        variables={"registry": "registry.example.com"},
        lenient=lenient,
    )


# -- whole-string and embedded bindings


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("${input.config}", {"region": "eu", "zones": ["a", "b"]}, id="dict"),
        pytest.param("${input.replicas}", 3, id="int"),
        pytest.param("${input.debug}", False, id="bool"),
        pytest.param(
            "${Dev Stage.Update Deployment.output.responseJson.images}", BUILD_OUTPUT["responseJson"]["images"]
        ),
        pytest.param("${executionIndex}", 7, id="execution-index"),
    ],
)
def test_a_string_that_is_exactly_one_binding_keeps_the_type_of_its_value(text: str, value: object) -> None:
    # Given a task input that is nothing but a binding
    # When it is resolved
    bound = resolve(text, scope().lookup)
    # Then the task is given the value itself, not its text
    assert bound == value
    assert type(bound) is type(value)


def test_a_binding_inside_longer_text_is_spliced_in_as_text() -> None:
    # Given a URL that embeds an input, an output and the execution's identity
    text = "https://ci/${input.image}/${Dev Stage.Update Deployment.output.responseCode}?run=${executionId}"
    # When it is resolved
    bound = resolve(text, scope().lookup)
    # Then each value reads as text in place
    assert bound == "https://ci/nginx/200?run=e-42"


def test_spliced_booleans_read_true_and_false_and_objects_read_as_json() -> None:
    # Given text embedding a boolean, an object and a list
    text = "ready=${Dev Stage.Update Deployment.output.ready} debug=${input.debug} config=${input.config}"
    # When it is resolved
    bound = resolve(text, scope().lookup)
    # Then booleans read as JSON does and the object as compact JSON
    assert bound == 'ready=true debug=false config={"region":"eu","zones":["a","b"]}'


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, ""), (True, "true"), (False, "false"), (1.5, "1.5"), ({"b": 1, "a": [2]}, '{"a":[2],"b":1}'), ("x", "x")],
)
def test_how_values_read_when_spliced_into_text(value: object, text: str) -> None:
    # Given a value
    # When it is spliced into text
    # Then it reads as a pipeline author expects (null as nothing, keys sorted)
    assert as_text(value) == text


def test_resolving_walks_into_objects_and_lists_and_leaves_other_values_alone() -> None:
    # Given a REST payload with bindings at several depths and values that are not text
    payload = {
        "image": "${input.image}",
        "replicas": "${input.replicas}",
        "labels": ["run-${executionIndex}", "${requestBy}"],
        "timeout": 300,
        "dryRun": False,
        "nothing": None,
    }
    # When it is resolved
    bound = resolve(payload, scope().lookup)
    # Then every binding is replaced and everything else is kept
    assert bound == {
        "image": "nginx",
        "replicas": 3,
        "labels": ["run-7", "alice"],
        "timeout": 300,
        "dryRun": False,
        "nothing": None,
    }


def test_text_with_two_bindings_is_not_mistaken_for_one_whole_binding() -> None:
    # Given a string that starts and ends like one binding but holds two
    text = "${input.image}:${Dev Stage.Update Deployment.output.responseJson.images[0].tag}"
    # When it is resolved
    bound = resolve(text, scope().lookup)
    # Then both are spliced in
    assert bound == "nginx:1.4"


# -- names and paths


def test_stage_and_task_names_may_hold_spaces() -> None:
    # Given a binding to a task named with spaces, in a stage named with spaces
    ref = parse_ref(" Dev Stage.Update Deployment.output.responseJson.id ")
    # When it is parsed
    # Then the names are kept whole
    assert ref == Ref(
        "Dev Stage.Update Deployment.output.responseJson.id",
        RefKind.OUTPUT,
        stage="Dev Stage",
        task="Update Deployment",
        path=("responseJson", "id"),
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("${Dev Stage.Update Deployment.output.responseJson.images[1].name}", "db"),
        ("${Dev Stage.Update Deployment.output.matrix[1][0]}", 3),
        ("${input.config.zones[1]}", "b"),
        ("${input.config.region}", "eu"),
    ],
)
def test_paths_go_into_objects_by_key_and_into_lists_by_index(text: str, value: object) -> None:
    # Given a binding with a path into a JSON value
    # When it is resolved
    # Then the value at that path is given
    assert resolve(text, scope().lookup) == value


def test_a_path_splits_into_keys_and_indexes() -> None:
    # Given a path with keys and indexes
    # When it is split
    # Then keys are strings and indexes numbers, in order
    assert split_path("items[0].spec.containers[2][1].image") == ["items", 0, "spec", "containers", 2, 1, "image"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input.image", Ref("input.image", RefKind.INPUT, name="image")),
        ("input.config.zones[0]", Ref("input.config.zones[0]", RefKind.INPUT, name="config", path=("zones", 0))),
        ("var.registry", Ref("var.registry", RefKind.VAR, name="registry")),
        ("executionId", Ref("executionId", RefKind.EXECUTION_ID)),
        ("executionIndex", Ref("executionIndex", RefKind.EXECUTION_INDEX)),
        ("requestBy", Ref("requestBy", RefKind.REQUEST_BY)),
        ("Dev.Build.output", Ref("Dev.Build.output", RefKind.OUTPUT, stage="Dev", task="Build")),
    ],
)
def test_each_kind_of_reference_parses_to_what_it_names(text: str, expected: Ref) -> None:
    # Given the text inside a binding
    # When it is parsed
    # Then it names the right kind of thing
    assert parse_ref(text) == expected


# -- what cannot be parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "empty binding '${}'", id="empty"),
        pytest.param("   ", "empty binding '${}'", id="blank"),
        pytest.param("input", "'${input}' names no input value", id="input-alone"),
        pytest.param("var.", "'${var.}' names no var value", id="var-without-name"),
        pytest.param(
            "Dev.Build", "'${Dev.Build}' is not a binding: expected input.NAME, STAGE.TASK.output", id="no-out"
        ),
        pytest.param("Dev.Build.outputs.x", "'${Dev.Build.outputs.x}' is not a binding", id="outputs"),
        pytest.param(".Build.output", "is not a binding", id="no-stage"),
        pytest.param("executionid", "is not a binding", id="wrong-case"),
        pytest.param("input.a..b", "'a..b' has an empty or malformed part", id="empty-part"),
        pytest.param("input.a[x]", "has an empty or malformed part", id="letter-index"),
        pytest.param("input.a[0", "has an empty or malformed part", id="stray-bracket"),
        pytest.param("input.[0]", "has an empty or malformed part", id="index-without-name"),
        pytest.param("Dev.Build.output.a[12345678901234567890]", "has an empty or malformed part", id="huge-index"),
    ],
)
def test_a_reference_that_does_not_parse_says_what_is_wrong(text: str, message: str) -> None:
    # Given the text of a malformed binding
    # When it is parsed
    with pytest.raises(BindingError) as raised:
        parse_ref(text)
    # Then the message names the binding and the mistake
    assert message in raised.value.message


# Pieces of references, and a digit of another script (which `\\d` matches and int() reads).
REFERENCE_PIECES = st.sampled_from(["a", "b", " ", ".", "[", "]", "0", "9", "$", "input", "output", "var", "\u0661"])


@settings(max_examples=300, deadline=None)
@given(st.lists(REFERENCE_PIECES, max_size=20).map("".join))
def test_any_reference_text_parses_or_raises_a_binding_error(text: str) -> None:
    # Given any text inside `${...}`
    # When it is parsed
    # Then it either parses or raises BindingError, never anything else
    with contextlib.suppress(BindingError):
        parse_ref(text)


# -- values that are missing


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("${input.tag}", "'${input.tag}': there is no input named 'tag'", id="input"),
        pytest.param("${var.token}", "'${var.token}': there is no var named 'token'", id="variable"),
        pytest.param(
            "${Prod.Deploy.output.image}", "'${Prod.Deploy.output.image}': task 'Prod.Deploy' has not completed"
        ),
        pytest.param(
            "${Dev Stage.Update Deployment.output.responseJson.missing}",
            "the output of 'Dev Stage.Update Deployment' has no value at 'missing'",
            id="key",
        ),
        pytest.param(
            "${Dev Stage.Update Deployment.output.responseJson.images[5]}",
            "the output of 'Dev Stage.Update Deployment' has no value at '5'",
            id="index",
        ),
        pytest.param("${input.config.region.code}", "input 'config' has no value at 'code'", id="into-text"),
        pytest.param("${input.config[0]}", "input 'config' has no value at '0'", id="index-into-object"),
    ],
)
def test_a_binding_to_a_missing_value_fails_with_a_clear_message(text: str, message: str) -> None:
    # Given a binding to something the execution does not have
    # When it is resolved
    with pytest.raises(BindingError) as raised:
        resolve({"url": f"https://x/{text}"}, scope().lookup)
    # Then the message names the binding and what is missing
    assert raised.value.message == message


def test_a_lenient_scope_reads_missing_values_as_empty_text() -> None:
    # Given a rollback's lenient scope, where the failure may have come before a task ran
    lenient = scope(lenient=True)
    # When bindings to missing values are resolved, whole or embedded
    bound = resolve(
        {"previous": "${Prod.Deploy.output.previousImage}", "url": "https://x/${input.tag}/y", "ok": "${input.image}"},
        lenient.lookup,
    )
    # Then the missing ones are empty and the rest resolve as usual
    assert bound == {"previous": "", "url": "https://x//y", "ok": "nginx"}


def test_a_lenient_scope_still_refuses_a_malformed_binding() -> None:
    # Given a lenient scope
    # When a binding that does not even parse is resolved
    # Then it is still an error: lenience covers missing values, not mistakes
    with pytest.raises(BindingError, match="is not a binding"):
        scope(lenient=True).lookup("Dev.Build")


# -- finding references


def test_find_refs_walks_nested_values_in_document_order() -> None:
    # Given a task input with bindings in nested objects and lists, and values that are not text
    task_input = {
        "url": "https://x/${input.image}/${ input.tag }",
        "headers": {"X-Run": "${executionId}", "X-Count": 3},
        "payload": [{"a": "${Dev.Build.output.id}"}, ("${var.registry}",), None, True],
    }
    # When its references are found
    found = find_refs(task_input)
    # Then all of them come back, as written, in order
    assert found == ["input.image", " input.tag ", "executionId", "Dev.Build.output.id", "var.registry"]


def test_find_refs_ignores_text_without_a_closed_binding() -> None:
    # Given text with an unterminated binding and a dollar sign that starts none
    # When its references are found
    # Then there are none
    assert find_refs({"a": "${input.image", "b": "costs $5 {each}"}) == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_a_whole_binding_gives_any_json_value_back_unchanged(value: object) -> None:
    # Given an input holding any JSON value
    bound_scope = Scope(input={"value": value}, outputs={})
    # When a whole-string binding to it is resolved
    bound = resolve("${input.value}", bound_scope.lookup)
    # Then the very value comes back
    assert bound == value


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_a_value_without_bindings_resolves_to_itself(value: object) -> None:
    # Given any JSON value with no `${` in it
    if "${" in json.dumps(value):
        return
    # When it is resolved
    # Then nothing changes and nothing is looked up
    assert resolve(value, lambda text: pytest.fail(f"looked up {text}")) == value
