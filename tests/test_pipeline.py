"""Stories about the pipeline model: run order, which task runs before which, and an execution's input.

`bind_input` lives in the engine but decides only from the pipeline's inputs, so its stories are told here.
"""

from __future__ import annotations

import pytest

from orchestrator.engine import bind_input
from orchestrator.errors import InputInvalid, Problem
from orchestrator.pipeline import InputMeta, Pipeline, Stage, Task


def stage(name: str, *order: str) -> Stage:
    """A stage whose taskOrder is `order` (a comma joins a parallel group), every task a Condition."""
    groups = tuple(tuple(entry.split(",")) for entry in order)
    tasks = {task: Task(task, "Condition", {"condition": "true"}) for group in groups for task in group}
    return Stage(name, groups, tasks)


def release_pipeline(**fields: object) -> Pipeline:
    """Build, then test and scan side by side, then publish; then deploy in Production."""
    stages = [stage("Dev", "Build", "Test,Scan", "Publish"), stage("Prod", "Deploy")]
    return Pipeline(
        name="release",
        project="demo",
        stages={s.name: s for s in stages},
        stage_order=tuple(s.name for s in stages),
        **fields,  # type: ignore[arg-type]
    )


# -- run order


def test_tasks_are_listed_in_run_order_with_their_stage_and_group_positions() -> None:
    # Given a pipeline with a parallel group
    pipeline = release_pipeline()
    # When its tasks are listed in run order
    listed = [(s, g, task.name, st.name) for s, g, task, st in pipeline.ordered_tasks()]
    # Then stages come in order, groups in order, and parallel tasks share a group position
    assert listed == [
        (0, 0, "Build", "Dev"),
        (0, 1, "Test", "Dev"),
        (0, 1, "Scan", "Dev"),
        (0, 2, "Publish", "Dev"),
        (1, 0, "Deploy", "Prod"),
    ]


def test_stage_order_decides_run_order_not_the_order_stages_are_stored_in() -> None:
    # Given stages stored in one order and run in the other
    dev, prod = stage("Dev", "Build"), stage("Prod", "Deploy")
    pipeline = Pipeline(name="p", project="demo", stages={"Prod": prod, "Dev": dev}, stage_order=("Dev", "Prod"))
    # When its tasks are listed
    # Then Dev runs first
    assert [task.name for _, _, task, _ in pipeline.ordered_tasks()] == ["Build", "Deploy"]
    assert pipeline.position(("Prod", "Deploy")) == (1, 0)


@pytest.mark.parametrize(
    ("earlier", "later", "before"),
    [
        pytest.param(("Dev", "Build"), ("Dev", "Test"), True, id="earlier-group"),
        pytest.param(("Dev", "Test"), ("Dev", "Scan"), False, id="same-parallel-group"),
        pytest.param(("Dev", "Scan"), ("Dev", "Test"), False, id="same-parallel-group-reversed"),
        pytest.param(("Dev", "Publish"), ("Dev", "Build"), False, id="later-group"),
        pytest.param(("Dev", "Publish"), ("Prod", "Deploy"), True, id="earlier-stage"),
        pytest.param(("Prod", "Deploy"), ("Dev", "Build"), False, id="later-stage"),
        pytest.param(("Dev", "Build"), ("Dev", "Build"), False, id="itself"),
    ],
)
def test_a_task_runs_before_another_only_when_it_has_always_finished_first(
    earlier: tuple[str, str], later: tuple[str, str], before: bool
) -> None:
    # Given a pipeline with groups and stages
    pipeline = release_pipeline()
    # When it is asked whether one task has always finished when another starts
    # Then only tasks of earlier groups or earlier stages have
    assert pipeline.runs_before(earlier, later) is before


def test_a_task_is_found_by_stage_and_name() -> None:
    # Given a pipeline
    pipeline = release_pipeline()
    # When a task is looked up
    # Then it is the task of that stage
    assert pipeline.task(("Dev", "Scan")).name == "Scan"
    with pytest.raises(KeyError):
        pipeline.task(("Prod", "Scan"))


def test_a_new_pipeline_is_disabled_and_runs_ten_at_a_time() -> None:
    # Given a pipeline built without saying otherwise
    pipeline = release_pipeline()
    # Then it is disabled, with a concurrency of 10 and no inputs
    assert (pipeline.enabled, pipeline.concurrency, pipeline.input, pipeline.mandatory_inputs()) == (False, 10, {}, [])


def test_mandatory_inputs_are_those_their_metadata_marks() -> None:
    # Given inputs of which two are mandatory
    pipeline = release_pipeline(
        input={"image": "", "tag": "latest", "region": ""},
        input_meta={"image": InputMeta(mandatory=True), "tag": InputMeta(), "region": InputMeta(mandatory=True)},
    )
    # When the mandatory ones are asked for
    # Then exactly those come back
    assert pipeline.mandatory_inputs() == ["image", "region"]


# -- an execution's input


def inputs_pipeline() -> Pipeline:
    """A pipeline with a mandatory image (described), a mandatory region (not described) and a default tag."""
    return release_pipeline(
        input={"image": "", "region": "", "tag": "latest"},
        input_meta={
            "image": InputMeta(mandatory=True, description="the image repository"),
            "region": InputMeta(mandatory=True),
        },
    )


def test_the_given_input_overrides_the_defaults_and_the_rest_keep_theirs() -> None:
    # Given a pipeline with defaults
    pipeline = inputs_pipeline()
    # When an execution is given its mandatory inputs
    values = bind_input(pipeline, {"image": "nginx", "region": "eu"})
    # Then they are used, and the tag keeps its default
    assert values == {"image": "nginx", "region": "eu", "tag": "latest"}


def test_every_input_problem_is_reported_at_once() -> None:
    # Given a pipeline with two mandatory inputs
    pipeline = inputs_pipeline()
    # When an execution gives neither, gives one empty, and names an input the pipeline lacks
    with pytest.raises(InputInvalid) as raised:
        bind_input(pipeline, {"image": "", "colour": "blue"})
    # Then each problem is reported, the mandatory one with its description as a hint
    assert raised.value.details == [
        Problem("input.colour", "pipeline 'release' has no input named 'colour'"),
        Problem("input.image", "is mandatory: the image repository"),
        Problem("input.region", "is mandatory: give a value"),
    ]
    assert raised.value.http_status == 400
    assert raised.value.message == "the input of pipeline 'release' has 3 problem(s)"


def test_a_mandatory_input_with_a_default_need_not_be_given() -> None:
    # Given a mandatory input that has a default
    pipeline = release_pipeline(input={"image": "nginx"}, input_meta={"image": InputMeta(mandatory=True)})
    # When an execution gives nothing
    # Then the default satisfies it
    assert bind_input(pipeline, {}) == {"image": "nginx"}


@pytest.mark.parametrize("value", [0, False, "0", ["a"]])
def test_a_mandatory_input_given_a_falsy_value_still_counts_as_given(value: object) -> None:
    # Given a mandatory input
    pipeline = release_pipeline(input={"replicas": ""}, input_meta={"replicas": InputMeta(mandatory=True)})
    # When it is given 0 or false, which are values and not absence
    values = bind_input(pipeline, {"replicas": value})
    # Then it is accepted as given
    assert values == {"replicas": value}


def test_a_mandatory_input_given_null_is_missing() -> None:
    # Given a mandatory input
    pipeline = release_pipeline(input={"image": ""}, input_meta={"image": InputMeta(mandatory=True)})
    # When it is given null
    with pytest.raises(InputInvalid) as raised:
        bind_input(pipeline, {"image": None})
    # Then it is reported as missing
    assert [problem.path for problem in raised.value.details] == ["input.image"]
