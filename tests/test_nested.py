"""Nested executions: a `Pipeline` task runs another pipeline of the project as a child execution and waits for it.

The child names its parent (`parentId`, relation `nested`); its output comes back as the task's
`outputProperties`, with its `executionId`; a child that does not complete fails the task, so the parent's
rollback runs; cancel and pause of the parent reach the child. Stories run against the API over HTTP on
PostgreSQL and Redis, with a real worker where a task has to run.
"""

from __future__ import annotations

from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from rollway_testing import ServedApp, WorkerProcess, ended, execution, started, task_of, wait_until

Doc = dict[str, Any]
PROJECT = "shop"


def pipeline(api: ServedApp, name: str, tasks: Doc, **fields: Any) -> Doc:
    """A pipeline of one stage, Main, whose tasks run one after the other."""
    stage = {"taskOrder": list(tasks), "tasks": tasks} | fields.pop("stage", {})
    document = {"name": name, "project": PROJECT, "enabled": True, "stageOrder": ["Main"], "stages": {"Main": stage}}
    return api.create(document | fields)


def nested(child: str, **inputs: Any) -> Doc:
    return {"type": "Pipeline", "input": {"pipeline": child, "inputProperties": inputs}}


def component(api: ServedApp, web: HTTPServer) -> Doc:
    """The child: GETs /component?image=<image>:<tag> and answers what it deployed."""
    url = web.url_for("/component") + "?image=${input.image}:${input.tag}"
    return pipeline(
        api,
        "Component",
        {"Deploy": {"type": "REST", "input": {"action": "get", "url": url}}},
        input={"image": "", "tag": "latest"},
        _inputMeta={"image": {"mandatory": True, "description": "the image"}},
        output={"deployed": "${input.image}:${input.tag}", "answer": "${Main.Deploy.output.responseJson.ok}"},
    )


def restore(api: ServedApp) -> None:
    pipeline(api, "Restore", {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}})


def poller(api: ServedApp, web: HTTPServer) -> Doc:
    """A child that polls /ready once a second until it answers ready."""
    wait = {
        "url": web.url_for("/ready"),
        "pollCount": 100,
        "pollIntervalSeconds": 1,
        "exitCriteria": {"success": "${responseJson.ready} == true"},
    }
    return pipeline(api, "Poller", {"Wait": {"type": "POLL", "input": wait}})


def child_of(api: ServedApp, parent_id: str) -> Doc:
    """The parent's one nested execution, once it has started."""
    found = wait_until(lambda: execution(api, parent_id)["children"], what="the nested execution to start")
    [child] = found
    return execution(api, child["id"])


def test_a_pipeline_task_runs_its_pipeline_with_bound_input_and_returns_its_output(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given a Component pipeline, and a Release whose Pipeline task runs it with an image bound from its own input
    web.expect_request("/component").respond_with_json({"ok": True})
    component(api, web)
    release = pipeline(
        api,
        "Release",
        {"Run component": nested("Component", image="${input.image}", tag="v2")},
        input={"image": ""},
        output={"deployed": "${Main.Run component.output.outputProperties.deployed}"},
    )

    # When the release runs
    answer = api.http.post(f"/api/pipelines/{release['id']}/executions", json={"input": {"image": "web"}})
    assert answer.status_code == 202, answer.text
    parent_id = answer.json()["executionId"]

    # Then it completes; its task returns the child's output and id, and the child ran with the bound input
    done = ended(api, parent_id)
    assert done["status"] == "COMPLETED", done
    task = task_of(done, "Main", "Run component")
    [link] = done["children"]
    assert task["output"] == {
        "executionId": link["id"],
        "status": "COMPLETED",
        "outputProperties": {"deployed": "web:v2", "answer": True},
    }
    assert done["output"] == {"deployed": "web:v2"}
    [(request, _)] = web.log
    assert request.args["image"] == "web:v2"

    # ... and the child's view names its parent, as nested, and says which task started it
    child = execution(api, link["id"])
    assert (child["pipeline"], child["status"]) == ("Component", "COMPLETED")
    assert (child["parentId"], child["relation"], child["rollback"]) == (parent_id, "nested", False)
    assert child["input"] == {"image": "web", "tag": "v2"}
    assert child["comments"] == "nested in Release #1 by task Main.Run component"
    assert (link["relation"], link["pipeline"]) == ("nested", "Component")


def test_a_failing_nested_execution_fails_its_task_and_the_parent_rolls_back(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given a Component whose deploy fails, run by a release whose stage rolls back with Restore
    web.expect_request("/component").respond_with_json({"ok": False}, status=500)
    component(api, web)
    restore(api)
    release = pipeline(
        api, "Release", {"Run component": nested("Component", image="web")}, stage={"rollback": {"pipeline": "Restore"}}
    )

    # When the release runs
    parent_id = started(api.http, release)

    # Then the child FAILED, the task fails naming it, and the parent's rollback ran
    done = ended(api, parent_id)
    assert done["status"] == "ROLLBACK_COMPLETED", done
    task = task_of(done, "Main", "Run component")
    assert task["status"] == "FAILED"
    assert task["statusMessage"].startswith("nested execution Component #1 ended FAILED: task Main.Deploy failed")
    child = execution(api, task["output"]["executionId"])
    assert (child["status"], child["parentId"]) == ("FAILED", parent_id)
    rollback = execution(api, done["rollbackExecutionId"])
    assert (rollback["pipeline"], rollback["status"]) == ("Restore", "COMPLETED")
    assert "nested execution Component #1 ended FAILED" in rollback["comments"]


def test_canceling_a_parent_cancels_its_running_nested_execution(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given a release whose nested Poller is running, polling a server that never answers ready
    web.expect_request("/ready").respond_with_json({"ready": False})
    poller(api, web)
    parent_id = started(api.http, pipeline(api, "Release", {"Run poller": nested("Poller")}))
    child = child_of(api, parent_id)
    wait_until(lambda: web.log, what="the child's first poll")

    # When the parent is canceled
    canceled = api.http.post(f"/api/executions/{parent_id}/cancel")

    # Then both are CANCELED, the child saying it went with its parent, and the parent's task is canceled
    assert canceled.status_code == 202, canceled.text
    assert canceled.json()["status"] == "CANCELED"
    stopped = ended(api, child["id"])
    assert (stopped["status"], stopped["statusMessage"]) == ("CANCELED", "canceled with Release #1")
    assert task_of(execution(api, parent_id), "Main", "Run poller")["status"] == "CANCELED"


def test_pausing_a_parent_pauses_its_nested_execution_and_resuming_it_resumes_both(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer
) -> None:
    # Given a release whose nested Poller is polling a server that answers "not yet" until told otherwise
    ready = {"ready": False}

    def answer(request: Request) -> Response:
        return Response(f'{{"ready": {str(ready["ready"]).lower()}}}', content_type="application/json")

    web.expect_request("/ready").respond_with_handler(answer)
    poller(api, web)
    parent_id = started(api.http, pipeline(api, "Release", {"Run poller": nested("Poller")}))
    child = child_of(api, parent_id)
    wait_until(lambda: web.log, what="the child's first poll")

    # When the parent is paused
    paused = api.http.post(f"/api/executions/{parent_id}/pause")

    # Then the child is paused with it
    assert paused.status_code == 202, paused.text
    assert paused.json()["status"] == "PAUSED"
    found = execution(api, child["id"])
    assert (found["status"], found["statusMessage"]) == ("PAUSED", "paused with Release #1")

    # When the server turns ready and the parent is resumed
    ready["ready"] = True
    resumed = api.http.post(f"/api/executions/{parent_id}/resume")

    # Then both run again and complete
    assert resumed.status_code == 202, resumed.text
    assert ended(api, child["id"])["status"] == "COMPLETED"
    assert ended(api, parent_id)["status"] == "COMPLETED"


def test_a_missing_disabled_or_badly_given_nested_pipeline_fails_the_task_saying_why(api: ServedApp) -> None:
    # Given a disabled pipeline with a mandatory input, and releases that run it, run one that does not exist, and
    # give it an input it does not have
    pipeline(api, "Off", {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}}, enabled=False)
    api.create(
        {
            "name": "Needs",
            "project": PROJECT,
            "enabled": True,
            "input": {"image": ""},
            "_inputMeta": {"image": {"mandatory": True}},
            "stageOrder": ["Main"],
            "stages": {
                "Main": {
                    "taskOrder": ["Note"],
                    "tasks": {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}},
                }
            },
        }
    )
    cases = {
        "RunsOff": (nested("Off"), "nested pipeline 'Off' is disabled"),
        "RunsGhost": (nested("Ghost"), "nested pipeline 'Ghost' does not exist in project 'shop'"),
        "RunsNeeds": (
            nested("Needs", colour="red"),
            "the input of nested pipeline 'Needs' is not valid: input.colour pipeline 'Needs' has no input named "
            "'colour'; input.image is mandatory",
        ),
    }
    for name, (task, message) in cases.items():
        release = pipeline(api, name, {"Run": task})

        # When it runs
        parent_id = started(api.http, release)

        # Then its task fails saying why, and so does the execution: no child was started
        done = ended(api, parent_id)
        assert done["status"] == "FAILED", done
        failed = task_of(done, "Main", "Run")
        assert failed["status"] == "FAILED"
        assert failed["statusMessage"].startswith(message), failed["statusMessage"]
        assert done["children"] == []


def test_pipelines_that_run_each_other_stop_at_the_nesting_limit(api: ServedApp) -> None:
    # Given A, whose Pipeline task runs B, and B, whose Pipeline task runs A
    a = pipeline(api, "A", {"Run B": nested("B")})
    pipeline(api, "B", {"Run A": nested("A")})

    # When A runs
    parent_id = started(api.http, a)

    # Then the nesting stops at its limit: the deepest task fails saying so, and every level fails in turn
    done = ended(api, parent_id)
    assert done["status"] == "FAILED", done
    assert task_of(done, "Main", "Run B")["statusMessage"].startswith("nested execution B #1 ended FAILED")
    deepest = wait_until(
        lambda: [item for item in api.http.get("/api/executions?limit=50").json() if item["status"] == "FAILED"],
        what="the executions to fail",
    )
    assert len(deepest) == 6
    messages = [item["statusMessage"] for item in deepest]
    assert any("nested pipelines may be at most 5 levels deep" in message for message in messages), messages


def test_a_pipeline_task_is_checked_when_saved(api: ServedApp) -> None:
    # Given Pipeline tasks with no pipeline, with input that is not an object, and one that names its own pipeline
    cases = {
        "NoName": ({"type": "Pipeline", "input": {"inputProperties": {}}}, "input.pipeline", "is required"),
        "BadInput": (
            {"type": "Pipeline", "input": {"pipeline": "Other", "inputProperties": "image=web"}},
            "input.inputProperties",
            "must be an object",
        ),
        "Loop": (nested("Loop"), "input.pipeline", "a pipeline cannot run itself as a nested pipeline"),
    }
    for name, (task, path, message) in cases.items():
        document = {"name": name, "project": PROJECT, "stageOrder": ["Main"]}
        document["stages"] = {"Main": {"taskOrder": ["Run"], "tasks": {"Run": task}}}

        # When it is saved
        refused = api.http.post("/api/pipelines", json=document)

        # Then it is refused naming the field
        assert refused.status_code == 400, refused.text
        details = {item["path"]: item["message"] for item in refused.json()["error"]["details"]}
        assert message in details.get(f"stages.Main.tasks.Run.{path}", ""), details
