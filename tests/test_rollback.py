"""Stories about the rollback policy: which rollback pipeline runs after a failure, given what, and why; which
ones a manual rollback runs, in which order; and what a rolling-back execution does as its rollbacks end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.bindings import Scope
from orchestrator.errors import BindingError
from orchestrator.execution import Child, Relation, RunSummary
from orchestrator.pipeline import Pipeline, RollbackLink, Stage, Task, TaskKey
from orchestrator.rollback import RollbackPlan, RollbackStep, link_for, next_step, plan_manual_rollback, plan_rollback
from orchestrator.status import ExecutionStatus, RunStatus

E = ExecutionStatus
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

STAGE_LINK = RollbackLink(
    "Web_Dev_Rollback",
    {
        "previousImage": "${Development.Update Deployment.output.previousImage}",
        "image": "${input.image}",
        "replicas": "${input.replicas}",
        "note": "rolled back by ${requestBy} from run #${executionIndex}",
    },
)
TASK_LINK = RollbackLink("Web_Verify_Rollback", {"deployment": "${Development.Update Deployment.output.name}"})


def web_pipeline() -> Pipeline:
    """Development (with a stage link; Verify Deployment has its own link) and Production (no link at all)."""
    development = Stage(
        "Development",
        (("Update Deployment",), ("Verify Deployment",), ("Smoke Test",)),
        {
            "Update Deployment": Task("Update Deployment", "REST", {"url": "http://k8s"}),
            "Verify Deployment": Task("Verify Deployment", "POLL", {"url": "http://k8s"}, rollback=TASK_LINK),
            "Smoke Test": Task("Smoke Test", "REST", {"url": "http://web"}),
        },
        rollback=STAGE_LINK,
    )
    production = Stage("Production", (("Deploy",),), {"Deploy": Task("Deploy", "REST", {"url": "http://k8s"})})
    return Pipeline(
        name="Web",
        project="demo",
        stages={"Development": development, "Production": production},
        stage_order=("Development", "Production"),
        input={"image": "", "replicas": 1},
    )


def failed_scope(outputs: bool = True) -> Scope:
    """The failed execution: given an image and replicas, with Update Deployment's output if `outputs`."""
    return Scope(
        input={"image": "nginx:1.27", "replicas": 3},
        outputs={("Development", "Update Deployment"): {"previousImage": "nginx:1.26", "name": "web"}}
        if outputs
        else {},
        execution_id="0b7c9e",
        execution_index=12,
        requested_by="alice",
    )


# -- which link


def test_a_tasks_own_rollback_link_wins_over_its_stages() -> None:
    # Given a task with its own link, in a stage with a link
    # When the link covering its failure is asked for
    found = link_for(web_pipeline(), ("Development", "Verify Deployment"))
    # Then the task's link is used
    assert found == (TASK_LINK, "task")


def test_a_task_without_a_link_is_covered_by_its_stages_link() -> None:
    # Given a task without a link, in a stage with one
    # When the link covering its failure is asked for
    found = link_for(web_pipeline(), ("Development", "Smoke Test"))
    # Then the stage's link is used
    assert found == (STAGE_LINK, "stage")


def test_a_failure_no_link_covers_has_no_rollback() -> None:
    # Given a task in a stage, neither with a link
    # When a rollback for its failure is planned
    found = plan_rollback(web_pipeline(), ("Production", "Deploy"), "timed out", failed_scope())
    # Then there is none
    assert link_for(web_pipeline(), ("Production", "Deploy")) is None
    assert found is None


# -- the rollback's input


def test_the_rollback_input_is_bound_from_the_failed_executions_input_and_outputs() -> None:
    # Given a stage link reading an output, inputs and the execution's identity
    # When the rollback for a failed task of that stage is planned
    rollback = plan_rollback(web_pipeline(), ("Development", "Smoke Test"), "HTTP 503", failed_scope())
    # Then its input is bound, keeping the types of whole bindings
    assert rollback is not None
    assert rollback.pipeline == "Web_Dev_Rollback"
    assert rollback.linked_from == "stage"
    assert rollback.input == {
        "previousImage": "nginx:1.26",
        "image": "nginx:1.27",
        "replicas": 3,
        "note": "rolled back by alice from run #12",
    }


def test_outputs_of_tasks_that_never_ran_become_empty_rather_than_stopping_the_rollback() -> None:
    # Given a failure before the task the rollback reads from produced its output
    # When the rollback is planned
    rollback = plan_rollback(
        web_pipeline(), ("Development", "Update Deployment"), "apply refused", failed_scope(outputs=False)
    )
    # Then the rollback still runs, with that input empty and the others bound
    assert rollback is not None
    assert rollback.input["previousImage"] == ""
    assert rollback.input["image"] == "nginx:1.27"


def test_planning_a_rollback_leaves_the_executions_own_scope_strict() -> None:
    # Given the failed execution's scope
    scope = failed_scope(outputs=False)
    # When a rollback is planned from it (leniently)
    plan_rollback(web_pipeline(), ("Development", "Smoke Test"), "HTTP 503", scope)
    # Then the scope itself still refuses a missing output
    with pytest.raises(BindingError):
        scope.lookup("Development.Update Deployment.output.previousImage")


# -- the comments the rollback execution carries


def test_the_rollback_comments_name_the_pipeline_execution_stage_task_and_reason() -> None:
    # Given a task that failed for a reason
    reason = "deployment web did not become ready in 300 s"
    # When the rollback is planned
    rollback = plan_rollback(web_pipeline(), ("Development", "Verify Deployment"), reason, failed_scope())
    # Then an operator reading the rollback execution sees what it rolls back and why
    assert rollback == RollbackPlan(
        pipeline="Web_Verify_Rollback",
        input={"deployment": "web"},
        comments=(
            "Rollback of Web #12 (execution 0b7c9e): "
            "task 'Verify Deployment' in stage 'Development' failed: deployment web did not become ready in 300 s"
        ),
        linked_from="task",
    )


# -- how the rolled-back execution ends


def child(name: str, status: ExecutionStatus, message: str = "", index: int = 1) -> Child:
    relation = Relation.MANUAL_ROLLBACK
    return Child(f"id-{name}-{index}", "parent", name, index, relation, status, message, T0, None)


@pytest.mark.parametrize(
    ("rollback_status", "parent_status"),
    [
        (ExecutionStatus.COMPLETED, ExecutionStatus.ROLLBACK_COMPLETED),
        (ExecutionStatus.FAILED, ExecutionStatus.ROLLBACK_FAILED),
        (ExecutionStatus.CANCELED, ExecutionStatus.ROLLBACK_FAILED),
    ],
)
def test_the_rolled_back_execution_ends_as_its_rollback_did(
    rollback_status: ExecutionStatus, parent_status: ExecutionStatus
) -> None:
    # Given a rollback execution that ended
    # When the execution it rolled back takes its next step
    step = next_step([child("Undo", rollback_status)])
    # Then only a completed rollback counts as a completed rollback
    assert (step.start, step.outcome) == (None, parent_status)
    assert step.message == f"rollback Undo #1 {rollback_status}"


def test_a_running_rollback_is_waited_for() -> None:
    # Given a manual rollback whose first rollback still runs, the second not started
    rollbacks = [child("Prod", E.RUNNING), child("Dev", E.NOT_STARTED)]
    # When the next step is asked for, Then there is none yet
    assert next_step(rollbacks) == RollbackStep()


def test_a_completed_rollback_starts_the_next_and_the_last_completes_the_parent() -> None:
    # Given a manual rollback of two, the first completed
    prod, dev = child("Prod", E.COMPLETED), child("Dev", E.NOT_STARTED)
    # When the next step is asked for, Then the second starts
    assert next_step([prod, dev]) == RollbackStep(start=dev.id)
    # ... and once it completed too, the parent ends ROLLBACK_COMPLETED, however often it is asked
    done = [prod, child("Dev", E.COMPLETED)]
    assert (
        next_step(done)
        == next_step(done)
        == RollbackStep(outcome=E.ROLLBACK_COMPLETED, message="rollback Dev #1 COMPLETED")
    )


def test_the_first_rollback_that_fails_ends_the_parent_and_the_rest_never_run() -> None:
    # Given a manual rollback of three whose first failed
    rollbacks = [
        child("Prod", E.FAILED, "task Undo.Go failed"),
        child("Stage", E.NOT_STARTED),
        child("Dev", E.NOT_STARTED),
    ]
    # When the next step is asked for
    step = next_step(rollbacks)
    # Then the parent ends ROLLBACK_FAILED saying which failed and which never started
    assert step.outcome is E.ROLLBACK_FAILED and step.start is None
    assert step.message == "rollback Prod #1 FAILED (task Undo.Go failed); not started: Stage #1, Dev #1"
    assert step.not_started == (rollbacks[1], rollbacks[2])


def test_rollbacks_of_an_earlier_attempt_are_not_the_current_one() -> None:
    # Given a rollback that failed and one not started from a first attempt, and a second attempt's two
    earlier = [child("Prod", E.FAILED), child("Dev", E.CANCELED)]
    again = [child("Prod", E.COMPLETED, index=2), child("Dev", E.NOT_STARTED, index=2)]
    # When the next step is asked for, Then it follows the second attempt
    assert next_step([*earlier, *again]) == RollbackStep(start="id-Dev-2")


# -- what a manual rollback runs


def ran(*keys: TaskKey, at: datetime = T0) -> dict[TaskKey, RunSummary]:
    """Task runs that started one minute apart, in the order given."""
    return {
        key: RunSummary(f"run-{n}", key[0], key[1], RunStatus.COMPLETED, "", {}, at + timedelta(minutes=n))
        for n, key in enumerate(keys)
    }


def two_environments() -> Pipeline:
    """Development with a stage link, Production with a stage link and one on its Verify task."""
    dev_link = RollbackLink("Dev_Rollback", {"image": "${Development.Deploy.output.previousImage}"})
    prod_link = RollbackLink("Prod_Rollback", {"image": "${input.image}"})
    verify_link = RollbackLink("Verify_Rollback", {})
    deploy = Task("Deploy", "REST", {"url": "http://k8s"})
    development = Stage("Development", (("Deploy",),), {"Deploy": deploy}, rollback=dev_link)
    production = Stage(
        "Production",
        (("Deploy",), ("Verify",), ("Smoke",)),
        {
            "Deploy": deploy,
            "Verify": Task("Verify", "POLL", {"url": "http://k8s"}, rollback=verify_link),
            "Smoke": Task("Smoke", "REST", {"url": "http://web"}),
        },
        rollback=prod_link,
    )
    return Pipeline(
        name="Shop",
        project="demo",
        stages={"Development": development, "Production": production},
        stage_order=("Development", "Production"),
        input={"image": ""},
    )


def completed_scope() -> Scope:
    outputs = {("Development", "Deploy"): {"previousImage": "shop:1"}}
    return Scope({"image": "shop:2"}, outputs, execution_id="e-9", execution_index=9, requested_by="rita")


def test_a_manual_rollback_runs_one_rollback_per_stage_it_deployed_newest_first() -> None:
    # Given a release that ran both stages to the end
    runs = ran(("Development", "Deploy"), ("Production", "Deploy"), ("Production", "Verify"), ("Production", "Smoke"))
    # When its manual rollback is planned
    plans = plan_manual_rollback(two_environments(), runs, completed_scope(), "olga")
    # Then production goes back first, then development, each by its stage's link (Smoke, the newest task there,
    # has no link of its own), with input bound from the release's record and comments saying who asked
    assert [(plan.pipeline, plan.linked_from) for plan in plans] == [
        ("Prod_Rollback", "stage"),
        ("Dev_Rollback", "stage"),
    ]
    assert [plan.input for plan in plans] == [{"image": "shop:2"}, {"image": "shop:1"}]
    assert plans[0].comments == (
        "Manual rollback of Shop #9 (execution e-9) requested by olga: stage 'Production' (1 of 2)"
    )


def test_a_stage_left_at_a_linked_task_is_rolled_back_by_that_tasks_link() -> None:
    # Given a release whose Production stage stopped at Verify, which has a link of its own
    runs = ran(("Development", "Deploy"), ("Production", "Deploy"), ("Production", "Verify"))
    # When its manual rollback is planned, Then Production's rollback is Verify's, as if Verify had failed
    plans = plan_manual_rollback(two_environments(), runs, completed_scope(), "olga")
    assert [plan.pipeline for plan in plans] == ["Verify_Rollback", "Dev_Rollback"]


def test_stages_that_never_started_a_task_are_left_alone() -> None:
    # Given a release that never got past Development, and tasks of Production that never started
    runs = ran(("Development", "Deploy"))
    runs[("Production", "Deploy")] = RunSummary("run-x", "Production", "Deploy", RunStatus.SKIPPED, "", None, None)
    # When its manual rollback is planned, Then only Development is rolled back
    plans = plan_manual_rollback(two_environments(), runs, completed_scope(), "olga")
    assert [plan.pipeline for plan in plans] == ["Dev_Rollback"]
    # ... and a release with no link at all has nothing to roll back
    assert plan_manual_rollback(web_pipeline(), ran(("Production", "Deploy")), failed_scope(), "olga") == []
