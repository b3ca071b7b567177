"""End to end: pipelines created and run through the HTTP API, tasks run by a real `rollway worker` process
on Redis and PostgreSQL, calling a local HTTP server the test scripts."""

from __future__ import annotations

import json
import threading
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from rollway_testing import TERMINAL, ServedApp

Doc = dict[str, Any]


def trigger(api: ServedApp, pipeline: Doc, given: Doc | None = None) -> str:
    answer = api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": given or {}})
    assert answer.status_code == 202, answer.text
    execution_id: str = answer.json()["executionId"]
    return execution_id


def execution(api: ServedApp, execution_id: str) -> Doc:
    answer = api.http.get(f"/api/executions/{execution_id}")
    assert answer.status_code == 200, answer.text
    found: Doc = answer.json()
    return found


def finished(api: ServedApp, execution_id: str, wait: Any) -> Doc:
    done: Doc = wait(
        lambda: (found := execution(api, execution_id))["status"] in TERMINAL and found,
        what=f"execution {execution_id} to end",
    )
    return done


def task(found: Doc, stage: str, name: str) -> Doc:
    stage_view = next(item for item in found["stages"] if item["name"] == stage)
    task_view: Doc = next(item for item in stage_view["tasks"] if item["name"] == name)
    return task_view


def pipeline(name: str, stages: dict[str, Doc], **fields: Any) -> Doc:
    return {
        "kind": "PIPELINE",
        "name": name,
        "project": "e2e",
        "enabled": True,
        "stageOrder": list(stages),
        "stages": stages,
        **fields,
    }


def meeting(log: list[tuple[str, bool]], meet: threading.Barrier) -> Any:
    """A handler that holds each request until the other of a pair is in the server too (or 30 s pass), and logs
    whether it met it: tasks run one after the other never meet, however fast or loaded the machine."""

    def handle(request: Request) -> Response:
        try:
            meet.wait()
            met = True
        except threading.BrokenBarrierError:
            met = False
        log.append((request.path, met))
        return Response(json.dumps({"path": request.path}), content_type="application/json")

    return handle


def test_two_stage_rest_and_poll_pipeline_completes_with_bindings_and_parallel_tasks(
    api: ServedApp, worker: Any, web: HTTPServer, wait: Any
) -> None:
    # Given a web service: a ticket is opened, two checks take a while, the ticket becomes READY on the 3rd poll
    web.expect_request("/tickets", method="POST").respond_with_json({"id": "T-42"}, status=201)
    checks: list[tuple[str, bool]] = []
    meet = threading.Barrier(2, timeout=30)
    web.expect_request("/checks/a").respond_with_handler(meeting(checks, meet))
    web.expect_request("/checks/b").respond_with_handler(meeting(checks, meet))
    polls: list[str] = []

    def ticket_status(request: Request) -> Response:
        polls.append(request.path)
        state = "READY" if len(polls) >= 3 else "PENDING"
        return Response(json.dumps({"state": state}), content_type="application/json")

    web.expect_request("/tickets/T-42").respond_with_handler(ticket_status)
    web.expect_request("/release", method="PUT").respond_with_json({"released": True})
    base = web.url_for("")
    document = pipeline(
        "Release-Train",
        {
            "Build": {
                "taskOrder": ["Open Ticket", "Check A,Check B", "Wait Ready"],
                "tasks": {
                    "Open Ticket": {
                        "type": "REST",
                        "input": {"action": "post", "url": f"{base}/tickets", "payload": {"image": "${input.image}"}},
                    },
                    "Check A": {"type": "REST", "input": {"action": "get", "url": f"{base}/checks/a"}},
                    "Check B": {"type": "REST", "input": {"action": "get", "url": f"{base}/checks/b"}},
                    "Wait Ready": {
                        "type": "POLL",
                        "input": {
                            "url": f"{base}/tickets/${{Build.Open Ticket.output.responseJson.id}}",
                            "pollCount": 10,
                            "pollIntervalSeconds": 0.2,
                            "exitCriteria": {"success": "${responseJson.state} == 'READY'"},
                        },
                    },
                },
            },
            "Release": {
                "taskOrder": ["Publish"],
                "tasks": {
                    "Publish": {
                        "type": "REST",
                        "input": {
                            "action": "put",
                            "url": f"{base}/release",
                            "headers": {"X-Ticket": "${Build.Open Ticket.output.responseJson.id}"},
                            "payload": {
                                "ticket": "${Build.Open Ticket.output.responseJson.id}",
                                "polls": "${Build.Wait Ready.output.iterationCount}",
                            },
                        },
                    }
                },
            },
        },
        input={"image": ""},
        output={"ticket": "${Build.Open Ticket.output.responseJson.id}"},
    )
    created = api.create(document)

    # When it runs
    found = finished(api, trigger(api, created, {"image": "nginx:1.25"}), wait)

    # Then it completes, every stage and task completed, and its output is bound
    assert found["status"] == "COMPLETED", found
    assert [stage["status"] for stage in found["stages"]] == ["COMPLETED", "COMPLETED"]
    assert found["output"] == {"ticket": "T-42"}
    # ... a task's output fed later tasks' inputs: the POLL's URL, the release's header and payload
    assert polls == ["/tickets/T-42"] * 3
    assert task(found, "Build", "Wait Ready")["output"]["iterationCount"] == 3
    opened = next(request for request, _ in web.log if request.path == "/tickets")
    assert opened.get_json() == {"image": "nginx:1.25"}
    released = next(request for request, _ in web.log if request.path == "/release")
    assert released.headers["X-Ticket"] == "T-42"
    assert released.get_json() == {"ticket": "T-42", "polls": 3}
    # ... and the two tasks of the parallel group were in the server at the same time
    assert sorted(checks) == [("/checks/a", True), ("/checks/b", True)], checks


def rollback_pipeline(name: str, web: HTTPServer, tasks: Doc | None = None) -> Doc:
    """A rollback pipeline that reports its input to /undo/<name> and then waits for /undo-status to say done."""
    base = web.url_for("")
    return pipeline(
        name,
        {
            "Undo": {
                "taskOrder": ["Report", "Wait Done"],
                "tasks": tasks
                or {
                    "Report": {
                        "type": "REST",
                        "input": {
                            "action": "post",
                            "url": f"{base}/undo/{name}",
                            "payload": {"ticket": "${input.ticket}", "image": "${input.image}"},
                        },
                    },
                    "Wait Done": {
                        "type": "POLL",
                        "input": {
                            "url": f"{base}/undo-status",
                            "pollCount": 300,
                            "pollIntervalSeconds": 0.1,
                            "exitCriteria": {"success": "${responseJson.done} == true"},
                        },
                    },
                },
            }
        },
        input={"ticket": "", "image": ""},
        _inputMeta={"ticket": {"mandatory": True, "description": "the ticket to undo"}},
    )


def deploying_pipeline(web: HTTPServer, stage_link: Doc | None, task_link: Doc | None = None, **verify: Any) -> Doc:
    """Open a ticket, then verify health: the health check answers DOWN, which fails the task."""
    base = web.url_for("")
    stage: Doc = {
        "taskOrder": ["Open", "Verify"],
        "tasks": {
            "Open": {"type": "REST", "input": {"action": "post", "url": f"{base}/open"}},
            "Verify": {
                "type": "POLL",
                "input": {
                    "url": f"{base}/health",
                    "pollCount": 3,
                    "pollIntervalSeconds": 0.1,
                    "exitCriteria": {
                        "success": "${responseJson.status} == 'UP'",
                        "failure": "${responseJson.status} == 'DOWN'",
                    },
                },
                **verify,
            },
        },
    }
    if stage_link:
        stage["rollback"] = stage_link
    if task_link:
        stage["tasks"]["Verify"]["rollback"] = task_link
    return pipeline("Deploy-App", {"Deploy": stage}, input={"image": ""})


def link(name: str) -> Doc:
    return {"pipeline": name, "input": {"ticket": "${Deploy.Open.output.responseJson.id}", "image": "${input.image}"}}


def serve_deploy(web: HTTPServer) -> threading.Event:
    """The service a deploy talks to; the returned event, once set, lets rollbacks finish."""
    release = threading.Event()
    web.expect_request("/open", method="POST").respond_with_json({"id": "T-7"})
    web.expect_request("/health").respond_with_json({"status": "DOWN"})
    web.expect_request("/undo-status").respond_with_handler(
        lambda _request: Response(json.dumps({"done": release.is_set()}), content_type="application/json")
    )
    for name in ("Undo-Stage", "Undo-Task", "Undo-Broken"):
        web.expect_request(f"/undo/{name}", method="POST").respond_with_json({"ok": True})
    return release


def test_failing_task_rolls_back_through_its_stage_link(
    api: ServedApp, worker: Any, web: HTTPServer, wait: Any
) -> None:
    # Given a deploy whose health check fails, in a stage linked to a rollback pipeline
    release = serve_deploy(web)
    undo = api.create(rollback_pipeline("Undo-Stage", web))
    deploy = api.create(deploying_pipeline(web, link("Undo-Stage")))

    # When it runs
    parent_id = trigger(api, deploy, {"image": "app:2"})

    # Then the parent shows ROLLING_BACK while the rollback pipeline runs
    rolling = wait(lambda: (found := execution(api, parent_id))["status"] == "ROLLING_BACK" and found)
    assert rolling["rollbackExecutionId"]
    assert "Deploy.Verify failed" in rolling["statusMessage"]
    child_id = rolling["rollbackExecutionId"]
    wait(lambda: any(request.path == "/undo-status" for request, _ in web.log), what="the rollback to start polling")
    assert execution(api, parent_id)["status"] == "ROLLING_BACK"
    assert execution(api, child_id)["status"] == "RUNNING"

    # ... and when the rollback's work is done, the parent ends ROLLBACK_COMPLETED
    release.set()
    parent = finished(api, parent_id, wait)
    assert parent["status"] == "ROLLBACK_COMPLETED", parent
    assert "failure criteria" in parent["statusMessage"] and "Undo-Stage #1 COMPLETED" in parent["statusMessage"]
    assert task(parent, "Deploy", "Verify")["status"] == "FAILED"

    # ... and the executions list shows both, the rollback COMPLETED, linked, with bound input and comments
    listed = api.http.get("/api/executions").json()
    assert [item["id"] for item in listed] == [child_id, parent_id]
    child = listed[0]
    assert child["status"] == "COMPLETED"
    assert child["pipeline"] == "Undo-Stage" and child["pipelineId"] == undo["id"]
    assert child["rollback"] is True and child["rollbackOf"] == parent_id
    assert (child["parentId"], child["relation"]) == (parent_id, "rollback")
    assert (listed[1]["parentId"], listed[1]["relation"], listed[1]["rollbackExecutionId"]) == (None, None, child_id)
    assert parent["children"] == [
        {"id": child_id, "pipeline": "Undo-Stage", "index": 1, "relation": "rollback", "status": "COMPLETED"}
    ]
    assert child["input"] == {"ticket": "T-7", "image": "app:2"}
    for part in ("Deploy-App #1", parent_id, "stage 'Deploy'", "task 'Verify'", "failure criteria"):
        assert part in child["comments"], child["comments"]
    reported = next(request for request, _ in web.log if request.path == "/undo/Undo-Stage")
    assert reported.get_json() == {"ticket": "T-7", "image": "app:2"}
    rollbacks = api.http.get("/api/executions", params={"rollback": "true"}).json()
    assert [item["id"] for item in rollbacks] == [child_id]

    # ... and the parent's history tells the story: started, its tasks, the failure, rolling back, settled
    history = api.http.get(f"/api/executions/{parent_id}/events").json()
    executions_only = [(item["previous"], item["status"]) for item in history if item["task"] is None]
    assert executions_only == [
        (None, "RUNNING"),
        ("RUNNING", "ROLLING_BACK"),
        ("ROLLING_BACK", "ROLLBACK_COMPLETED"),
    ]
    verify = [item for item in history if item["task"] == "Verify"]
    assert verify[-1]["status"] == "FAILED" and "failure criteria" in verify[-1]["message"]
    assert verify[-1]["actor"].startswith("rollway-")  # the worker that ran it
    assert api.http.get("/api/executions/no-such-id/events").status_code == 404


def test_a_task_link_wins_over_its_stage_link(api: ServedApp, worker: Any, web: HTTPServer, wait: Any) -> None:
    # Given a failing task linked to one rollback pipeline, in a stage linked to another
    serve_deploy(web).set()
    api.create(rollback_pipeline("Undo-Stage", web))
    api.create(rollback_pipeline("Undo-Task", web))
    deploy = api.create(deploying_pipeline(web, link("Undo-Stage"), link("Undo-Task")))

    # When it runs
    parent = finished(api, trigger(api, deploy, {"image": "app:3"}), wait)

    # Then the task's rollback pipeline ran, and only it
    assert parent["status"] == "ROLLBACK_COMPLETED"
    rollbacks = api.http.get("/api/executions", params={"rollback": "true"}).json()
    assert [item["pipeline"] for item in rollbacks] == ["Undo-Task"]
    assert not any(request.path == "/undo/Undo-Stage" for request, _ in web.log)


def test_a_failing_rollback_pipeline_gives_rollback_failed(
    api: ServedApp, worker: Any, web: HTTPServer, wait: Any
) -> None:
    # Given a rollback pipeline that fails itself
    serve_deploy(web)
    broken = {"Report": {"type": "Condition", "input": {"condition": "${input.ticket} == 'nothing'"}}}
    broken_pipeline = rollback_pipeline("Undo-Broken", web, broken)
    broken_pipeline["stages"]["Undo"]["taskOrder"] = ["Report"]
    api.create(broken_pipeline)
    deploy = api.create(deploying_pipeline(web, link("Undo-Broken")))

    # When the deploy fails and rolls back
    parent = finished(api, trigger(api, deploy), wait)

    # Then the parent ends ROLLBACK_FAILED, and its rollback FAILED
    assert parent["status"] == "ROLLBACK_FAILED", parent
    child = execution(api, parent["rollbackExecutionId"])
    assert child["status"] == "FAILED"
    assert "is false" in child["statusMessage"]
    assert "Undo-Broken #1 FAILED" in parent["statusMessage"]


def test_a_failure_without_a_rollback_link_fails_the_execution(
    api: ServedApp, worker: Any, web: HTTPServer, wait: Any
) -> None:
    # Given a deploy with no rollback link
    serve_deploy(web)
    deploy = api.create(deploying_pipeline(web, None))

    # When it fails
    parent = finished(api, trigger(api, deploy), wait)

    # Then it is FAILED, says why, and no rollback ran
    assert parent["status"] == "FAILED"
    assert parent["statusMessage"].startswith("task Deploy.Verify failed: failure criteria")
    assert parent["rollbackExecutionId"] is None
    assert api.http.get("/api/executions", params={"rollback": "true"}).json() == []


def test_ignore_failure_lets_the_run_complete(api: ServedApp, worker: Any, web: HTTPServer, wait: Any) -> None:
    # Given a failing task marked ignoreFailure, in a stage with a rollback link
    serve_deploy(web)
    api.create(rollback_pipeline("Undo-Stage", web))
    deploy = api.create(deploying_pipeline(web, link("Undo-Stage"), ignoreFailure=True))

    # When it runs
    parent = finished(api, trigger(api, deploy), wait)

    # Then the run completes, the task shows its failure, and no rollback ran
    assert parent["status"] == "COMPLETED"
    assert task(parent, "Deploy", "Verify")["status"] == "FAILED"
    assert api.http.get("/api/executions", params={"rollback": "true"}).json() == []
