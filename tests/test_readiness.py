"""The pure pre-flight decision: whether a release's rollback could run, from plain data (no database, no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator import readiness
from orchestrator.document import load_pipeline
from orchestrator.endpoints import Probe
from orchestrator.pipeline import Pipeline
from orchestrator.readiness import Facts, RollbackPipeline

NOW = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)


def deploy(*, stage_link: dict[str, Any] | None = None, task_link: dict[str, Any] | None = None) -> Pipeline:
    """A release with one stage; the stage and its task may each link a rollback."""
    task: dict[str, Any] = {"type": "Condition", "input": {"condition": "true"}}
    if task_link is not None:
        task["rollback"] = task_link
    stage: dict[str, Any] = {"taskOrder": ["Deploy"], "tasks": {"Deploy": task}}
    if stage_link is not None:
        stage["rollback"] = stage_link
    document = {
        "name": "Release",
        "project": "shop",
        "enabled": True,
        "input": {"tag": ""},
        "stageOrder": ["Prod"],
        "stages": {"Prod": stage},
    }
    return load_pipeline(document, None)


def rollback(name: str = "Undo", *, enabled: bool = True, endpoints: tuple[str, ...] = ("prod-cluster",)) -> Any:
    return RollbackPipeline(name, enabled, (), endpoints)


def answered(seconds_ago: float = 5.0, ok: bool = True, message: str = "answered (HTTP 200 to GET /version)") -> Probe:
    return Probe(NOW - timedelta(seconds=seconds_ago), ok, message)


def facts(
    rollbacks: dict[str, Any], endpoints: dict[str, Probe | None], variables: frozenset[str] = frozenset()
) -> Facts:
    return Facts("shop", rollbacks, endpoints, variables, NOW)


def messages(pipeline: Pipeline, given: Facts) -> list[str]:
    return [problem.message for problem in readiness.reasons(pipeline, given)]


def test_a_release_whose_rollback_is_enabled_and_whose_endpoints_answered_lately_may_start() -> None:
    # Given a stage linked to an enabled rollback whose cluster answered five seconds ago
    pipeline = deploy(stage_link={"pipeline": "Undo"})

    # Then nothing stands in its way
    assert readiness.reasons(pipeline, facts({"Undo": rollback()}, {"prod-cluster": answered()})) == []


def test_a_release_without_rollback_links_is_never_refused() -> None:
    assert readiness.reasons(deploy(), facts({}, {})) == []
    assert readiness.targets(deploy()) == []


def test_a_disabled_or_missing_rollback_pipeline_is_a_reason_naming_it() -> None:
    # Given a stage linked to a disabled rollback, and its task linked to one that does not exist
    pipeline = deploy(stage_link={"pipeline": "Undo"}, task_link={"pipeline": "Gone"})
    given = facts({"Undo": rollback(enabled=False), "Gone": None}, {"prod-cluster": answered()})

    # Then each is one reason, at the link that names it
    problems = readiness.reasons(pipeline, given)
    assert [(problem.path, problem.message) for problem in problems] == [
        ("stages.Prod.rollback", "rollback pipeline 'Undo' is disabled"),
        ("stages.Prod.tasks.Deploy.rollback", "rollback pipeline 'Gone' does not exist in project 'shop'"),
    ]


def test_an_endpoint_that_did_not_answer_is_a_reason_with_what_its_probe_said() -> None:
    # Given a rollback whose cluster refused its credentials a moment ago, and another endpoint that does not exist
    pipeline = deploy(stage_link={"pipeline": "Undo"})
    refused = answered(ok=False, message="credentials refused (HTTP 401 to GET /version)")
    given = facts({"Undo": rollback(endpoints=("gone-cluster", "prod-cluster"))}, {"prod-cluster": refused})

    # Then both are reasons, naming the endpoint and the rollback pipeline
    assert messages(pipeline, given) == [
        "endpoint 'gone-cluster' of rollback pipeline 'Undo' does not exist in project 'shop'",
        "endpoint 'prod-cluster' of rollback pipeline 'Undo' did not answer: credentials refused (HTTP 401 to GET "
        "/version)",
    ]


def test_an_answer_older_than_the_freshness_window_or_no_probe_at_all_is_not_trusted() -> None:
    # Given a cluster that answered, but longer ago than the window, and one never probed
    pipeline = deploy(stage_link={"pipeline": "Undo"})
    given = facts(
        {"Undo": rollback(endpoints=("new-cluster", "old-cluster"))},
        {"old-cluster": answered(seconds_ago=61), "new-cluster": None},
    )

    # Then neither counts as answering now
    assert messages(pipeline, given) == [
        "endpoint 'new-cluster' of rollback pipeline 'Undo' has not been probed yet",
        "endpoint 'old-cluster' of rollback pipeline 'Undo' was last probed 61s ago, longer than 60s: whether it "
        "answers now is not known",
    ]
    assert readiness.is_fresh(answered(seconds_ago=60), NOW) and not readiness.is_fresh(None, NOW)


def test_a_mandatory_rollback_input_without_default_must_be_given_by_the_link() -> None:
    # Given a rollback with two mandatory inputs without default, and a link that gives one of them blank
    target = RollbackPipeline("Undo", True, ("previousImage", "reason"), ())
    pipeline = deploy(stage_link={"pipeline": "Undo", "input": {"reason": "  "}})

    # Then each is a reason naming the input, the rollback pipeline and the link
    problems = readiness.reasons(pipeline, facts({"Undo": target}, {}))
    assert [(problem.path, problem.message) for problem in problems] == [
        (
            "stages.Prod.rollback.input.previousImage",
            "mandatory input 'previousImage' of rollback pipeline 'Undo' is not given by the rollback link of stage "
            "'Prod'",
        ),
        (
            "stages.Prod.rollback.input.reason",
            "mandatory input 'reason' of rollback pipeline 'Undo' is not given by the rollback link of stage 'Prod'",
        ),
    ]


def test_a_binding_counts_as_given_only_when_what_it_names_exists() -> None:
    # Given links binding mandatory inputs to an input, a task output, and variables (one missing)
    target = RollbackPipeline("Undo", True, ("a", "b", "c", "d"), ())
    link = {
        "pipeline": "Undo",
        "input": {
            "a": "${input.tag}",
            "b": "image:${Prod.Deploy.output.result}",
            "c": "${var.registry}",
            "d": "${var.deleted}",
        },
    }
    pipeline = deploy(stage_link=link)

    # Then only the binding to a variable that does not exist is a reason
    assert messages(pipeline, facts({"Undo": target}, {}, frozenset({"registry"}))) == [
        "mandatory input 'd' of rollback pipeline 'Undo' cannot be bound by the rollback link of stage 'Prod': "
        "'${var.deleted}': there is no project variable named 'deleted' in project 'shop'"
    ]


def test_a_mandatory_input_with_a_default_needs_nothing_from_the_link() -> None:
    # Given a rollback pipeline whose mandatory inputs have defaults, except one
    document = {
        "name": "Undo",
        "enabled": True,
        "input": {"namespace": "shop", "previousImage": ""},
        "_inputMeta": {"namespace": {"mandatory": True}, "previousImage": {"mandatory": True}},
        "stageOrder": ["S"],
        "stages": {
            "S": {
                "taskOrder": ["T"],
                "tasks": {"T": {"type": "Condition", "input": {"condition": "true"}, "endpoints": {"k": "dev"}}},
            }
        },
    }

    # Then only the one without a default must be given, and the endpoints its tasks name are known
    assert RollbackPipeline.of(load_pipeline(document, None)) == RollbackPipeline(
        "Undo", True, ("previousImage",), ("dev",)
    )


def test_one_rollback_linked_twice_is_checked_once_for_itself_and_per_link_for_its_inputs() -> None:
    # Given a stage and its task both linked to the same disabled rollback, neither giving its mandatory input
    target = RollbackPipeline("Undo", False, ("previousImage",), ())
    pipeline = deploy(stage_link={"pipeline": "Undo"}, task_link={"pipeline": "Undo"})

    # Then "disabled" is said once, the missing input once per link
    said = messages(pipeline, facts({"Undo": target}, {}))
    assert said.count("rollback pipeline 'Undo' is disabled") == 1
    assert len([message for message in said if "previousImage" in message]) == 2


def test_a_forced_start_says_who_forced_it_past_which_reasons() -> None:
    pipeline = deploy(stage_link={"pipeline": "Undo"})
    problems = readiness.reasons(pipeline, facts({"Undo": rollback(enabled=False)}, {"prod-cluster": answered()}))

    assert readiness.override_note(problems, "alice") == (
        "forced: alice started it although its rollback could not run (1 problem(s)): "
        "rollback pipeline 'Undo' is disabled"
    )


def test_the_sweep_keeps_probed_the_endpoints_of_rollbacks_of_enabled_pipelines_only() -> None:
    # Given an enabled release and a disabled one, each linked to a rollback in its project, and an unlinked pipeline
    rows = [
        ("shop", "Release", True, ["Undo"], ["build-cluster"]),
        ("shop", "Undo", True, [], ["prod-cluster", "dev-cluster"]),
        ("shop", "Old Release", False, ["Old Undo"], []),
        ("shop", "Old Undo", True, [], ["legacy-cluster"]),
        ("other", "Undo", True, [], ["their-cluster"]),
    ]

    # Then the sweep probes only the endpoints of the enabled release's rollback, in its own project
    assert readiness.rollback_endpoints(rows) == {("shop", "prod-cluster"), ("shop", "dev-cluster")}
