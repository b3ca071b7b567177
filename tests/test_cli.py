"""The `rollway` command line as a user runs it: apply, run, executions against a served API; the demo and the
worker as processes.

Client commands run through click's CliRunner against the API served over HTTP (PostgreSQL and Redis, no
worker unless a story starts one). Where what matters is how the installed command reports an error (one
line, no traceback), it runs as a process.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from api.cli import cli

from rollway_testing import TOKEN, ServedApp, rollway_command

Doc = dict[str, Any]


def pipeline_doc(name: str, condition: str = "1 == 1", project: str | None = "cli", **fields: Any) -> Doc:
    document: Doc = {
        "kind": "PIPELINE",
        "name": name,
        "stageOrder": ["Check"],
        "stages": {
            "Check": {
                "taskOrder": ["Gate"],
                "tasks": {"Gate": {"type": "Condition", "input": {"condition": condition}}},
            }
        },
        **fields,
    }
    if project is not None:
        document["project"] = project
    return document


def write(path: Path, *documents: Doc) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def rollway(api: ServedApp, *args: str) -> Result:
    """`rollway --url <api> ARGS` with the test token in the environment."""
    runner = CliRunner()
    return runner.invoke(cli, ["--url", api.url, *args], env={"ROLLWAY_API_TOKEN": TOKEN, "ROLLWAY_URL": None})


def rollway_process(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed `rollway` command as a process."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ROLLWAY_")} | env
    return subprocess.run(
        [*rollway_command(), *args], env=environment, capture_output=True, text=True, timeout=timeout, check=False
    )


def pipelines(api: ServedApp, **params: str) -> list[Doc]:
    found: list[Doc] = api.http.get("/api/pipelines", params=params).json()
    return found


# -- apply


def test_apply_creates_a_pipeline_then_updates_it(api: ServedApp, tmp_path: Path) -> None:
    # Given a pipeline file
    path = write(tmp_path / "release.yaml", pipeline_doc("Release", description="first"))

    # When it is applied
    first = rollway(api, "apply", "-f", str(path))

    # Then the pipeline is created, and the output says so with its id
    assert first.exit_code == 0, first.output
    (created,) = pipelines(api, name="Release")
    assert f"pipeline cli/Release created ({created['id']})" in first.output
    assert created["description"] == "first"

    # When the file is changed and applied again
    write(path, pipeline_doc("Release", description="second", enabled=True))
    second = rollway(api, "apply", "-f", str(path))

    # Then the same pipeline is updated in place, and the output says updated
    assert second.exit_code == 0, second.output
    assert f"pipeline cli/Release updated ({created['id']})" in second.output
    (updated,) = pipelines(api, name="Release")
    assert (updated["id"], updated["description"], updated["enabled"]) == (created["id"], "second", True)


def test_apply_of_a_multi_document_file_creates_each_pipeline(api: ServedApp, tmp_path: Path) -> None:
    # Given one file holding a rollback pipeline and a pipeline linking to it (in that order), and an empty document
    release = pipeline_doc("Release")
    release["stages"]["Check"]["rollback"] = {"pipeline": "Release_Rollback"}
    path = tmp_path / "pipelines.yaml"
    path.write_text(
        yaml.safe_dump(pipeline_doc("Release_Rollback")) + "---\n" + yaml.safe_dump(release) + "---\n# nothing\n"
    )

    # When it is applied
    result = rollway(api, "apply", "-f", str(path))

    # Then both pipelines are created, each reported on its own line
    assert result.exit_code == 0, result.output
    assert re.findall(r"pipeline cli/(\S+) created", result.output) == ["Release_Rollback", "Release"]
    assert sorted(item["name"] for item in pipelines(api, project="cli")) == ["Release", "Release_Rollback"]
    (linked,) = pipelines(api, name="Release")
    assert linked["stages"]["Check"]["rollback"]["pipeline"] == "Release_Rollback"


def test_apply_of_a_document_without_a_project_leaves_other_projects_alone(api: ServedApp, tmp_path: Path) -> None:
    # Given a pipeline named Shared in project team-a, and a file of a Shared pipeline that names no project
    other = api.create(pipeline_doc("Shared", project="team-a", description="team a's"))
    path = write(tmp_path / "shared.yaml", pipeline_doc("Shared", project=None, description="mine"))

    # When the file is applied
    result = rollway(api, "apply", "-f", str(path))

    # Then it is created in the default project, where the API puts a document without a project,
    # and team-a's pipeline is untouched
    assert result.exit_code == 0, result.output
    assert "pipeline default/Shared created" in result.output
    assert api.http.get(f"/api/pipelines/{other['id']}").json() == other
    assert sorted((item["project"], item["description"]) for item in pipelines(api, name="Shared")) == [
        ("default", "mine"),
        ("team-a", "team a's"),
    ]

    # ... and applying it again finds the default project's copy (unchanged: the file is the same)
    again = rollway(api, "apply", "-f", str(path))
    assert "pipeline default/Shared unchanged" in again.output, again.output


def test_apply_of_an_invalid_pipeline_prints_the_problems_and_fails_without_a_traceback(
    api: ServedApp, tmp_path: Path
) -> None:
    # Given a file whose pipeline names a stage that does not exist and a task type Rollway lacks
    document = pipeline_doc("Broken", stageOrder=["Check", "Ghost"])
    document["stages"]["Check"]["tasks"]["Gate"]["type"] = "Teleport"
    path = write(tmp_path / "broken.yaml", document)

    # When the installed command applies it
    result = rollway_process("--url", api.url, "apply", "-f", str(path), ROLLWAY_API_TOKEN=TOKEN)

    # Then it exits non-zero, printing the API's message and each problem with its path, and no traceback
    assert result.returncode != 0, result.stdout
    assert "the pipeline has 2 problems (HTTP 400)" in result.stderr
    assert "stageOrder[1]:" in result.stderr and "Ghost" in result.stderr
    assert "stages.Check.tasks.Gate.type:" in result.stderr and "Teleport" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert pipelines(api, name="Broken") == []


def test_apply_of_a_file_that_is_not_yaml_fails_with_a_clear_message(api: ServedApp, tmp_path: Path) -> None:
    # Given a file that is not YAML
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")

    # When it is applied
    result = rollway(api, "apply", "-f", str(path))

    # Then the command fails naming the file, and nothing was sent
    assert result.exit_code == 1, result.output
    assert f"{path} is not valid YAML" in result.output
    assert pipelines(api) == []


# -- run


def test_run_prints_the_execution_id_and_index_and_passes_the_input(api: ServedApp) -> None:
    # Given an enabled pipeline with an input
    api.create(pipeline_doc("Release", enabled=True, input={"version": "", "note": ""}))

    # When it is run twice with inputs
    first = rollway(api, "run", "Release", "--input", "version=1.2", "-i", "note=a=b", "--comments", "from the CLI")
    second = rollway(api, "run", "Release", "--input", "version=1.3")

    # Then each prints the execution's index and id
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    match = re.search(r"execution Release #1 ([0-9a-f-]{36}) RUNNING", first.output)
    assert match, first.output
    assert re.search(r"execution Release #2 [0-9a-f-]{36} RUNNING", second.output), second.output

    # ... and the execution under that id has the input as given (a value may hold '=') and the comments
    execution = api.http.get(f"/api/executions/{match.group(1)}").json()
    assert execution["input"] == {"version": "1.2", "note": "a=b"}
    assert execution["comments"] == "from the CLI"


def test_run_of_an_unknown_pipeline_fails_saying_so(api: ServedApp) -> None:
    # Given no pipeline named Nope
    # When it is run
    result = rollway(api, "run", "Nope")

    # Then the command fails with a message naming it
    assert result.exit_code == 1, result.output
    assert "there is no pipeline named 'Nope'" in result.output


@pytest.mark.parametrize("pair", ["novalue", "=value"])
def test_run_refuses_an_input_that_is_not_name_equals_value(api: ServedApp, pair: str) -> None:
    # Given an enabled pipeline with an input
    api.create(pipeline_doc("Release", enabled=True, input={"version": ""}))

    # When it is run with an input that is not NAME=VALUE
    result = rollway(api, "run", "Release", "--input", pair)

    # Then it is a usage error naming the option and the value, and nothing ran
    assert result.exit_code == 2, result.output
    assert "--input" in result.output and f"'{pair}' is not NAME=VALUE" in result.output
    assert api.http.get("/api/executions").json() == []


def test_run_of_a_disabled_pipeline_or_with_an_unknown_input_reports_the_api_error(api: ServedApp) -> None:
    # Given a disabled pipeline and an enabled one with one input
    api.create(pipeline_doc("Off"))
    api.create(pipeline_doc("On", enabled=True, input={"version": ""}))

    # When the installed command runs the disabled one, and the enabled one with an input it does not have
    disabled = rollway_process("--url", api.url, "run", "Off", ROLLWAY_API_TOKEN=TOKEN)
    unknown = rollway_process("--url", api.url, "run", "On", "--input", "colour=blue", ROLLWAY_API_TOKEN=TOKEN)

    # Then each fails with the API's message in one line of error, and no traceback
    assert disabled.returncode == 1
    assert "pipeline 'Off' is disabled" in disabled.stderr and "(HTTP 409)" in disabled.stderr
    assert unknown.returncode == 1
    assert "input.colour: pipeline 'On' has no input named 'colour'" in unknown.stderr
    assert "Traceback" not in disabled.stderr + unknown.stderr


def test_a_missing_or_wrong_token_is_reported_not_a_traceback(api: ServedApp) -> None:
    # Given the API, and a terminal without the token, then with a wrong one
    # When executions are listed
    without = rollway_process("--url", api.url, "executions")
    wrong = rollway_process("--url", api.url, "executions", ROLLWAY_API_TOKEN="nope")

    # Then each fails saying a token is needed
    for result in (without, wrong):
        assert result.returncode == 1
        assert "Authorization: Bearer" in result.stderr and "(HTTP 401)" in result.stderr
        assert "Traceback" not in result.stderr


def test_an_api_that_cannot_be_reached_is_reported_by_its_url() -> None:
    # Given no API on this port
    url = "http://127.0.0.1:9"

    # When executions are listed there
    result = rollway_process("--url", url, "executions", ROLLWAY_API_TOKEN=TOKEN)

    # Then the command fails naming the URL
    assert result.returncode == 1
    assert f"cannot reach the Rollway API at {url}" in result.stderr
    assert "Traceback" not in result.stderr


# -- executions


def test_executions_prints_a_table_with_pipeline_names_and_statuses(api: ServedApp) -> None:
    # Given a pipeline that runs one execution at a time, run twice with no worker: one RUNNING, one QUEUED
    api.create(pipeline_doc("Release", enabled=True, concurrency=1))
    api.create(pipeline_doc("Other", enabled=True))
    for name in ("Release", "Release", "Other"):
        assert rollway(api, "run", name).exit_code == 0

    # When executions are listed, all and filtered
    everything = rollway(api, "executions")
    queued = rollway(api, "executions", "--status", "QUEUED")
    other = rollway(api, "executions", "--pipeline", "Other")
    bad_status = rollway(api, "executions", "--status", "DONE")

    # Then a table lists them newest first with pipeline, index, status and the reason one waits
    assert everything.exit_code == 0, everything.output
    header, *rows = everything.output.strip().splitlines()
    assert header.split() == ["PIPELINE", "#", "STATUS", "ROLLBACK", "OF", "ID", "MESSAGE"]
    assert [row.split()[:3] for row in rows] == [
        ["Other", "1", "RUNNING"],
        ["Release", "2", "QUEUED"],
        ["Release", "1", "RUNNING"],
    ]
    assert "queued behind 1 running (concurrency 1)" in rows[1]
    assert [row.split()[:3] for row in queued.output.strip().splitlines()[1:]] == [["Release", "2", "QUEUED"]]
    assert [row.split()[0] for row in other.output.strip().splitlines()[1:]] == ["Other"]
    assert bad_status.exit_code != 0


# -- with a worker


def test_run_wait_exits_0_when_completed_and_1_when_failed(api: ServedApp, worker: Any) -> None:
    # Given a pipeline whose Condition holds and one whose Condition does not, and a worker
    api.create(pipeline_doc("Holds", "${input.version} == '1.0'", enabled=True, input={"version": ""}))
    api.create(pipeline_doc("Fails", "1 == 2", enabled=True))

    # When each is run and waited for
    good = rollway(api, "run", "Holds", "--input", "version=1.0", "--wait")
    bad = rollway(api, "run", "Fails", "--wait")

    # Then the good run exits 0 printing COMPLETED, the other exits 1 printing FAILED and why
    assert good.exit_code == 0, good.output
    assert re.search(r"execution Holds #1 COMPLETED", good.output), good.output
    assert bad.exit_code == 1, bad.output
    assert re.search(r"execution Fails #1 FAILED .*Check\.Gate", bad.output), bad.output


# -- the demo and the worker as processes


@pytest.mark.timeout(180)
def test_a_worker_on_an_unknown_queue_refuses_to_start_naming_it() -> None:
    # Given a queue Rollway does not have
    # When a worker is started on it
    result = rollway_process("worker", "-Q", "default,nosuchqueue")

    # Then it exits non-zero naming the queue and Rollway's queues
    assert result.returncode != 0
    assert "nosuchqueue" in result.stderr and "orchestrator" in result.stderr


def test_an_api_error_prints_its_message_in_one_line_under_any_runner(api: ServedApp) -> None:
    # Given a disabled pipeline
    api.create(pipeline_doc("Sleeping"))

    # When it is run through the command group itself (as a script embedding it would)
    result = rollway(api, "run", "Sleeping")

    # Then the API's reason is printed as an error and the command fails, with no exception escaping
    assert result.exit_code == 1
    assert "pipeline 'Sleeping' is disabled" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
