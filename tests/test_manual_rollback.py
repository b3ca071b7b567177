"""Manual rollback and rerun: what a person does to an execution that has ended.

`POST /api/executions/<id>/rollback` runs the rollback pipelines of the stages an ended execution deployed, newest
stage first and one after the other, as its children of relation manual_rollback; `POST .../rerun` starts its
pipeline again with the same input. Stories run through the API over HTTP on PostgreSQL and Redis with a real
worker process; the release story deploys to two kubesim clusters with the smart CD template's pipelines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from test_e2e_templates import GOOD, NAME, NEWER, generate, release, served

from api.cli import cli
from kubesim import KubeSim

from rollway_testing import TOKEN, ServedApp, client_for, ended, execution, wait_until

Doc = dict[str, Any]
PROJECT = "shop"


@pytest.fixture
def two_clusters() -> Iterator[dict[str, KubeSim]]:
    """A dev and a prod cluster."""
    with KubeSim(ready_delay=0.1) as dev, KubeSim(ready_delay=0.1) as prod:
        yield {"dev": dev, "prod": prod}


def condition(text: str) -> Doc:
    return {"type": "Condition", "input": {"condition": text}}


def pipeline(name: str, stages: dict[str, Doc], links: dict[str, Doc] | None = None, **fields: Any) -> Doc:
    """A pipeline of one task per stage, in the order given; `links` are the stages' rollback links."""
    document: Doc = {"kind": "PIPELINE", "name": name, "project": PROJECT, "enabled": True, "concurrency": 10}
    document |= {"stageOrder": list(stages), "stages": {}} | fields
    for stage, task in stages.items():
        document["stages"][stage] = {"taskOrder": ["Go"], "tasks": {"Go": task}}
        if links and stage in links:
            document["stages"][stage]["rollback"] = links[stage]
    return document


def run(api: ServedApp, pipeline_doc: Doc, given: Doc | None = None) -> Doc:
    """Trigger a pipeline and wait for the execution to end."""
    answer = api.http.post(f"/api/pipelines/{pipeline_doc['id']}/executions", json={"input": given or {}})
    assert answer.status_code == 202, answer.text
    return ended(api, answer.json()["executionId"])


def settled(api: ServedApp, execution_id: str) -> Doc:
    """The execution once it is no longer ROLLING_BACK."""
    found: Doc = wait_until(
        lambda: (seen := execution(api, execution_id))["status"] not in ("ROLLING_BACK", "COMPLETED") and seen,
        timeout=120,
        what="the manual rollback to settle",
    )
    return found


def error_of(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    message: str = answer.json()["error"]["message"]
    return message


def set_variable(api: ServedApp, name: str, value: str) -> None:
    found = [
        item for item in api.http.get("/api/variables", params={"project": PROJECT}).json() if item["name"] == name
    ]
    if not found:
        api.create_at("/api/variables", {"name": name, "project": PROJECT, "type": "REGULAR", "value": value})
        return
    patched = api.http.patch(f"/api/variables/{found[0]['id']}", json={"value": value})
    assert patched.status_code == 200, patched.text


# -- manual rollback


def test_manual_rollback_of_a_completed_two_environment_release_puts_both_environments_back_prod_first(
    api: ServedApp, worker: Any, two_clusters: dict[str, KubeSim]
) -> None:
    # Given the smart CD template's pipelines on a dev and a prod cluster, release A and then release B completed
    pipeline_doc = generate(api, two_clusters, "rolling-upgrade")
    dev, prod = two_clusters["dev"], two_clusters["prod"]
    assert release(api, pipeline_doc, GOOD)["status"] == "COMPLETED"
    newer = release(api, pipeline_doc, NEWER)
    assert newer["status"] == "COMPLETED", newer
    assert served(dev) == served(prod) == {f"nginx:{NEWER}"}

    # When release B is rolled back by hand
    answer = api.http.post(f"/api/executions/{newer['id']}/rollback")

    # Then it answers 202 with the release ROLLING_BACK
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "ROLLING_BACK"
    assert "manual rollback requested by" in answer.json()["statusMessage"]

    # ... and the release ends ROLLBACK_COMPLETED, rolled back by two manual_rollback children, prod then dev
    done = settled(api, newer["id"])
    assert done["status"] == "ROLLBACK_COMPLETED", done
    children = done["children"]
    assert [(child["pipeline"], child["relation"], child["status"]) for child in children] == [
        (f"{NAME}_Prod_Rollback", "manual_rollback", "COMPLETED"),
        (f"{NAME}_Dev_Rollback", "manual_rollback", "COMPLETED"),
    ]
    prod_rollback, dev_rollback = (execution(api, child["id"]) for child in children)
    assert prod_rollback["finishedAt"] <= dev_rollback["startedAt"]
    for child in (prod_rollback, dev_rollback):
        assert (child["parentId"], child["rollback"], child["rollbackOf"]) == (newer["id"], True, newer["id"])
        assert "Manual rollback of" in child["comments"] and newer["id"] in child["comments"]
    assert done["rollbackExecutionId"] == dev_rollback["id"]

    # ... and both clusters serve release A again
    assert served(dev) == served(prod) == {f"nginx:{GOOD}"}

    # ... and the release's history shows it ended, rolled back by hand, then settled
    history = api.http.get(f"/api/executions/{newer['id']}/events").json()
    changes = [(item["previous"], item["status"]) for item in history if item["task"] is None]
    assert changes[-2:] == [("COMPLETED", "ROLLING_BACK"), ("ROLLING_BACK", "ROLLBACK_COMPLETED")]
    rollbacks = {item["id"] for item in api.http.get("/api/executions", params={"rollback": "true"}).json()}
    assert {prod_rollback["id"], dev_rollback["id"]} <= rollbacks


def test_a_running_execution_or_one_with_nothing_linked_cannot_be_rolled_back_by_hand(
    api: ServedApp, worker: Any, web: HTTPServer
) -> None:
    # Given a release whose stage is linked to a rollback, still running (its POLL waits), and a completed run of a
    # pipeline with no rollback link
    web.expect_request("/job").respond_with_json({"state": "RUNNING"})
    api.create(pipeline("Undo-Slow", {"Back": condition("true")}))
    poll = {
        "type": "POLL",
        "input": {"url": web.url_for("/job"), "pollIntervalSeconds": 1, "pollCount": 600},
    }
    poll["input"]["exitCriteria"] = {"success": "${responseJson.state} == 'DONE'"}
    slow = api.create(pipeline("Slow", {"Deploy": poll}, {"Deploy": {"pipeline": "Undo-Slow"}}))
    answer = api.http.post(f"/api/pipelines/{slow['id']}/executions", json={"input": {}})
    running_id = answer.json()["executionId"]
    wait_until(lambda: any(request.path == "/job" for request, _ in web.log), what="the poll to start")
    unlinked = run(api, api.create(pipeline("Plain", {"Build": condition("true")})))
    assert unlinked["status"] == "COMPLETED"

    # When each is rolled back by hand
    refused_running = api.http.post(f"/api/executions/{running_id}/rollback")
    refused_unlinked = api.http.post(f"/api/executions/{unlinked['id']}/rollback")

    # Then both are refused with 409 saying why, and neither changed
    assert "is RUNNING" in error_of(refused_running, 409)
    assert "nothing to roll back" in error_of(refused_unlinked, 409)
    assert execution(api, running_id)["status"] == "RUNNING" and execution(api, running_id)["children"] == []
    assert execution(api, unlinked["id"])["status"] == "COMPLETED"
    assert "is RUNNING" in error_of(api.http.post(f"/api/executions/{running_id}/rerun"), 409)
    assert api.http.post(f"/api/executions/{running_id}/cancel").status_code == 202


def test_a_manual_rollback_stops_at_the_first_rollback_that_fails_and_can_be_rolled_back_again(
    api: ServedApp, worker: Any
) -> None:
    # Given a completed release of two stages, whose prod rollback fails while `undo_ok` is not 'yes'
    set_variable(api, "undo_ok", "no")
    api.create(pipeline("Undo-Prod", {"Back": condition("${var.undo_ok} == 'yes'")}))
    api.create(pipeline("Undo-Dev", {"Back": condition("true")}))
    links = {"Dev": {"pipeline": "Undo-Dev"}, "Prod": {"pipeline": "Undo-Prod"}}
    released = run(
        api, api.create(pipeline("Two-Stages", {"Dev": condition("true"), "Prod": condition("true")}, links))
    )
    assert released["status"] == "COMPLETED"

    # When it is rolled back by hand
    assert api.http.post(f"/api/executions/{released['id']}/rollback").status_code == 202

    # Then the prod rollback fails, the dev one never starts, and the release ends ROLLBACK_FAILED saying so
    failed = settled(api, released["id"])
    assert failed["status"] == "ROLLBACK_FAILED", failed
    assert [(child["pipeline"], child["status"]) for child in failed["children"]] == [
        ("Undo-Prod", "FAILED"),
        ("Undo-Dev", "CANCELED"),
    ]
    assert execution(api, failed["children"][1]["id"])["startedAt"] is None
    assert "rollback Undo-Prod #1 FAILED" in failed["statusMessage"]
    assert "not started: Undo-Dev #1" in failed["statusMessage"]

    # When the prod rollback is fixed and the release is rolled back by hand again
    set_variable(api, "undo_ok", "yes")
    assert api.http.post(f"/api/executions/{released['id']}/rollback").status_code == 202

    # Then this time both rollbacks run, prod first, and the release ends ROLLBACK_COMPLETED
    again = settled(api, released["id"])
    assert again["status"] == "ROLLBACK_COMPLETED", again
    assert [(child["pipeline"], child["status"]) for child in again["children"][2:]] == [
        ("Undo-Prod", "COMPLETED"),
        ("Undo-Dev", "COMPLETED"),
    ]
    # ... and one that rolled back completely is not rolled back twice
    twice = api.http.post(f"/api/executions/{released['id']}/rollback")
    assert "is ROLLBACK_COMPLETED" in error_of(twice, 409)


# -- rerun


def test_a_rerun_starts_a_new_execution_with_the_same_input_that_completes(api: ServedApp, worker: Any) -> None:
    # Given a run of a pipeline that completes only with tag v1, by an executor
    greet = api.create(pipeline("Greet", {"Check": condition("${input.tag} == 'v1'")}, input={"tag": ""}))
    first = run(api, greet, {"tag": "v1"})
    assert first["status"] == "COMPLETED"

    # When an executor reruns it
    with client_for(api, "executor", "exec-eli") as executor:
        answer = executor.post(f"/api/executions/{first['id']}/rerun")

    # Then it answers 202 like a trigger, and the new execution has the same input, says what it reruns and who
    # asked, and completes
    assert answer.status_code == 202, answer.text
    started = answer.json()
    assert set(started) >= {"executionId", "executionIndex", "executionLink"}
    assert started["executionIndex"] == 2 and started["executionLink"] == f"/api/executions/{started['executionId']}"
    rerun = ended(api, started["executionId"])
    assert rerun["status"] == "COMPLETED", rerun
    assert (rerun["input"], rerun["comments"], rerun["requestBy"]) == ({"tag": "v1"}, "rerun of #1", "exec-eli")
    assert (rerun["parentId"], rerun["relation"]) == (None, None)


def test_a_rerun_is_refused_when_the_pipeline_is_disabled_or_gone_or_an_input_was_recorded_masked(
    api: ServedApp, worker: Any
) -> None:
    # Given a completed run of a pipeline that was disabled since
    plain = api.create(pipeline("Plain", {"Build": condition("true")}))
    done = run(api, plain)
    assert api.http.patch(f"/api/pipelines/{plain['id']}", json={"enabled": False}).status_code == 200
    # ... and a rollback whose input was bound to a secret variable, so it was recorded masked
    api.create_at("/api/variables", {"name": "deploy_key", "project": PROJECT, "type": "SECRET", "value": "k-93jd82"})
    api.create(pipeline("Undo-Keyed", {"Back": condition("true")}, input={"key": ""}))
    link = {"pipeline": "Undo-Keyed", "input": {"key": "${var.deploy_key}"}}
    failed = run(api, api.create(pipeline("Keyed", {"Deploy": condition("false")}, {"Deploy": link})))
    assert failed["status"] == "ROLLBACK_COMPLETED", failed
    keyed_rollback = execution(api, failed["rollbackExecutionId"])
    assert keyed_rollback["input"] == {"key": "*****"}

    # When each is rerun
    disabled = api.http.post(f"/api/executions/{done['id']}/rerun")
    masked = api.http.post(f"/api/executions/{keyed_rollback['id']}/rerun")

    # Then both are refused with 409: the pipeline is disabled; the input holds only the mask, named
    assert "disabled" in error_of(disabled, 409)
    assert "input 'key'" in error_of(masked, 409)
    assert masked.json()["error"]["details"] == [{"path": "input.key", "message": "was recorded masked"}]
    assert [item["pipeline"] for item in api.http.get("/api/executions").json()].count("Plain") == 1
    # ... and once the pipeline is deleted, its run cannot be rerun either
    assert api.http.delete(f"/api/pipelines/{plain['id']}").status_code == 204
    assert "'Plain', no longer exists" in error_of(api.http.post(f"/api/executions/{done['id']}/rerun"), 409)


def test_the_cli_rolls_back_and_reruns_by_a_unique_start_of_the_id(api: ServedApp, worker: Any) -> None:
    # Given a completed release whose stage links a rollback pipeline
    api.create(pipeline("Undo-Cli", {"Back": condition("true")}))
    released = run(
        api, api.create(pipeline("Cli-Release", {"Dev": condition("true")}, {"Dev": {"pipeline": "Undo-Cli"}}))
    )
    assert released["status"] == "COMPLETED"

    def rollway(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli, ["--url", api.url, *args], env={"ROLLWAY_API_TOKEN": TOKEN, "ROLLWAY_URL": None}
        )
        return result.exit_code, result.output

    # When `rollway rerun` is given the first 8 characters of its id
    code, output = rollway("rerun", released["id"][:8])

    # Then a new execution of it started, and the line names it
    assert code == 0, output
    [rerun] = [
        item
        for item in api.http.get("/api/executions", params={"pipeline": "Cli-Release"}).json()
        if item["index"] == 2
    ]
    assert f"execution #2 {rerun['id']} started" in output
    assert ended(api, rerun["id"])["status"] == "COMPLETED"

    # When `rollway rollback` is given the start of the first one's id
    code, output = rollway("rollback", released["id"][:8])

    # Then it rolls back by hand, to ROLLBACK_COMPLETED through its rollback pipeline
    assert code == 0 and "ROLLING_BACK" in output, output
    assert settled(api, released["id"])["status"] == "ROLLBACK_COMPLETED"

    # And a second rollback of it is refused in one line, with a non-zero exit and no traceback
    code, output = rollway("rollback", released["id"][:8])
    assert code != 0 and "ROLLBACK_COMPLETED" in output and "Traceback" not in output, output
