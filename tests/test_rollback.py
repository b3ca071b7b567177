"""Stories about the rollback policy: which rollback pipeline runs after a failure, given what, and why."""

from __future__ import annotations

import pytest

from orchestrator.bindings import Scope
from orchestrator.errors import BindingError
from orchestrator.pipeline import Pipeline, RollbackLink, Stage, Task
from orchestrator.rollback import RollbackPlan, link_for, parent_outcome, plan_rollback
from orchestrator.status import ExecutionStatus

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
    # When the execution it rolled back is settled
    # Then only a completed rollback counts as a completed rollback
    assert parent_outcome(rollback_status) is parent_status
