"""The everyday command line against a served API (PostgreSQL and Redis) and, where executions must run, a real
worker: executions (--watch, -o, --wide), describe, logs (-f), pipelines, enable, disable, export, endpoints,
id prefixes, `apply` of a multi-document file (order, all or nothing, --dry-run, enabled kept), and what a
--url that is not Rollway prints.

Commands that must keep running while the test changes something (--watch, logs -f) run as processes whose
output goes to a file the test reads as it grows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer

from api.cli import cli

from rollway_testing import TOKEN, ServedApp, ended, execution, rollway_command, started, wait_until

Doc = dict[str, Any]


def pipeline_doc(name: str, condition: str = "1 == 1", project: str = "daily", **fields: Any) -> Doc:
    gate = {"type": "Condition", "input": {"condition": condition}}
    stages = {"Check": {"taskOrder": ["Gate"], "tasks": {"Gate": gate}}}
    return {"kind": "PIPELINE", "name": name, "project": project, "stageOrder": ["Check"], "stages": stages} | fields


def linked(name: str, rollback: str, **fields: Any) -> Doc:
    """A pipeline whose Check stage names `rollback` as its rollback pipeline."""
    document = pipeline_doc(name, **fields)
    document["stages"]["Check"]["rollback"] = {"pipeline": rollback}
    return document


def write(path: Path, *documents: Doc) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def rollway(api: ServedApp, *args: str, **env: str) -> Result:
    """`rollway --url <api> ARGS` with the test token in the environment."""
    environment: dict[str, str | None] = {"ROLLWAY_API_TOKEN": TOKEN, "ROLLWAY_URL": None}
    return CliRunner().invoke(cli, ["--url", api.url, *args], env=environment | env)


def environment(**env: str) -> dict[str, str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("ROLLWAY_")}
    return clean | {"PYTHONUNBUFFERED": "1", "ROLLWAY_API_TOKEN": TOKEN} | env


def rollway_process(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed `rollway` command as a process."""
    return subprocess.run(
        [*rollway_command(), *args], env=environment(**env), capture_output=True, text=True, timeout=60, check=False
    )


class Running:
    """The installed `rollway` command running in the background, its output in a file."""

    def __init__(self, path: Path, *args: str) -> None:
        self.path = path
        self._file = path.open("w")
        command = [*rollway_command(), *args]
        self.process = subprocess.Popen(command, env=environment(), stdout=self._file, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.path.read_text()

    def shows(self, pattern: str) -> str:
        return wait_until(lambda: re.search(pattern, self.output()) and self.output(), what=f"output {pattern!r}")

    def finish(self) -> int:
        code = self.process.wait(timeout=60)
        self._file.close()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._file.close()


@pytest.fixture
def background(tmp_path: Path) -> Iterator[Any]:
    """`background(*args)`: the installed command running on; killed after the test if still running."""
    running: list[Running] = []

    def start(*args: str) -> Running:
        running.append(Running(tmp_path / f"out-{len(running)}.txt", *args))
        return running[-1]

    yield start
    for item in running:
        item.stop()


def names(api: ServedApp, project: str = "daily") -> list[str]:
    return sorted(item["name"] for item in api.http.get("/api/pipelines", params={"project": project}).json())


def cancel(api: ServedApp, execution_id: str) -> None:
    answer = api.http.post(f"/api/executions/{execution_id}/cancel")
    assert answer.status_code == 202, answer.text


def table_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()[1:]]


# -- executions


def test_executions_watch_prints_the_table_again_when_a_status_changes(api: ServedApp, background: Any) -> None:
    # Given a running execution (no worker picks it up, so it stays RUNNING)
    pipeline = api.create(pipeline_doc("Release", enabled=True))
    execution_id = started(api.http, pipeline)

    # When the executions are watched until every one has ended, and the execution is canceled meanwhile
    watch = background("--url", api.url, "executions", "--watch", "--until-done", "--interval", "0.1")
    watch.shows(rf"Release\s+1\s+RUNNING\s+{execution_id[:8]}")
    cancel(api, execution_id)

    # Then the watch printed the table again with the new status and stopped by itself
    assert watch.finish() == 0, watch.output()
    tables = [block for block in watch.output().split("-- ") if block.strip()]
    assert len(tables) >= 2, watch.output()
    assert table_rows(tables[0].split("\n", 1)[1])[0][:3] == ["Release", "1", "RUNNING"]
    assert table_rows(tables[-1].split("\n", 1)[1])[0][:3] == ["Release", "1", "CANCELED"]
    assert "Traceback" not in watch.output()


def test_executions_filters_by_project_and_prints_json_yaml_or_whole_messages(api: ServedApp, worker: Any) -> None:
    # Given an execution that failed with a long message, a running one, and one of another project
    failing = api.create(pipeline_doc("Release", f"'{'x' * 120}' == 'y'", enabled=True))
    failed = started(api.http, failing)
    message = ended(api, failed)["statusMessage"]
    assert len(message) > 90, message
    other = started(api.http, api.create(pipeline_doc("Other", project="elsewhere", enabled=True)))
    ended(api, other)

    # When executions are listed in one project, as a table, wide, as JSON and as YAML
    table = rollway(api, "executions", "--project", "daily")
    wide = rollway(api, "executions", "--project", "daily", "--wide")
    as_json = rollway(api, "executions", "--project", "elsewhere", "-o", "json")
    as_yaml = rollway(api, "executions", "--project", "daily", "-o", "yaml")

    # Then the table keeps to the project and cuts the message; --wide shows it whole with the project and ids
    assert table.exit_code == 0, table.output
    assert [row[:3] for row in table_rows(table.output)] == [["Release", "1", "FAILED"]]
    assert message[:90] in table.output and message not in table.output
    assert wide.output.split("\n")[0].split()[:3] == ["PIPELINE", "PROJECT", "#"]
    assert message in wide.output and failed in wide.output and " daily " in wide.output
    # ... and JSON and YAML are the API's rows as given
    assert [item["id"] for item in json.loads(as_json.output)] == [other]
    assert [item["statusMessage"] for item in yaml.safe_load(as_yaml.output)] == [message]


# -- describe and logs


def test_describe_shows_stages_tasks_errors_links_and_history(api: ServedApp, worker: Any) -> None:
    # Given a release whose second stage fails and rolls back through its rollback pipeline
    api.create(pipeline_doc("Release_Rollback", enabled=True))
    document = linked("Release", "Release_Rollback", enabled=True)
    document["stageOrder"] = ["Build", "Check"]
    document["stages"]["Build"] = {
        "taskOrder": ["Compile"],
        "tasks": {"Compile": {"type": "Condition", "input": {"condition": "2 > 1"}}},
    }
    document["stages"]["Check"]["tasks"]["Gate"]["input"]["condition"] = "1 == 2"
    execution_id = started(api.http, api.create(document))
    done = ended(api, execution_id)
    assert done["status"] == "ROLLBACK_COMPLETED", done
    child = done["rollbackExecutionId"]

    # When it is described by the start of its id
    result = rollway(api, "describe", execution_id[:10])

    # Then the header, the stages and tasks in order with status, attempt and error, the rollback link and child,
    # and the history are printed
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"Execution:  Release #1  {execution_id}" in text
    assert "Status:     ROLLBACK_COMPLETED" in text
    assert text.index("  Build  COMPLETED") < text.index("    Compile  Condition  COMPLETED  attempt 1")
    assert (
        text.index("    Compile  Condition") < text.index("  Check  FAILED") < text.index("    Gate  Condition  FAILED")
    )
    gate_error = next(task for task in execution(api, execution_id)["stages"][1]["tasks"])["statusMessage"]
    assert gate_error and f"      {gate_error}" in text
    assert f"Rollback:   {child}" in text
    assert re.search(rf"Child:\s+{child}\s+Release_Rollback #1\s+\S+\s+COMPLETED", text), text
    history = text[text.index("History:") :]
    assert "Check.Gate  RUNNING -> FAILED" in history and "ROLLING_BACK -> ROLLBACK_COMPLETED" in history

    # ... and -o json carries the API's execution with its events
    as_json = json.loads(rollway(api, "describe", execution_id, "-o", "json").output)
    assert as_json["id"] == execution_id and as_json["events"]


def test_logs_prints_the_history_and_follows_it_until_the_execution_ends(api: ServedApp, background: Any) -> None:
    # Given a running execution (no worker: it stays RUNNING until canceled)
    execution_id = started(api.http, api.create(pipeline_doc("Release", enabled=True)))

    # When its logs are printed, and followed while it is canceled
    once = rollway(api, "logs", execution_id[:8])
    events = api.http.get(f"/api/executions/{execution_id}/events").json()
    follow = background("--url", api.url, "logs", execution_id[:8], "-f", "--interval", "0.1")
    follow.shows("RUNNING")
    cancel(api, execution_id)

    # Then each event is a line with its time, where and the change; the follower printed the cancel and ended
    assert once.exit_code == 0, once.output
    assert len(once.output.strip().splitlines()) == len(events)
    assert re.search(r"^\S+T\S+  execution  .*RUNNING", once.output, re.MULTILINE), once.output
    assert follow.finish() == 0, follow.output()
    assert re.search(r"execution  RUNNING -> CANCELED", follow.output()), follow.output()


# -- ids by a unique start


def test_ids_may_be_a_unique_start_and_an_ambiguous_or_unknown_one_is_one_line(api: ServedApp) -> None:
    # Given executions until two ids share their first character (at most 17 by pigeonhole)
    pipeline = api.create(pipeline_doc("Release", enabled=True))
    ids: list[str] = []
    while len({item[0] for item in ids}) == len(ids):
        ids.append(started(api.http, pipeline))
    shared = ids[-1][0]
    twins = sorted(item for item in ids if item[0] == shared)

    # When one is described by a start only it has, by the shared start, and by a start no id has
    own_start = next(twins[0][:n] for n in range(2, 37) if twins[0][:n] != twins[1][:n])
    unique = rollway(api, "describe", own_start)
    ambiguous = rollway(api, "logs", shared)
    unknown = rollway(api, "describe", "zzzz")

    # Then the first is described; the others fail with one line, naming the candidates or saying none matches
    assert unique.exit_code == 0 and twins[0] in unique.output, unique.output
    assert ambiguous.exit_code == 1
    line = ambiguous.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"Error: '{shared}' is the start of 2 execution ids")
    assert all(item in line for item in twins) and "Release #" in line
    assert (unknown.exit_code, unknown.output.strip()) == (
        1,
        "Error: there is no execution whose id starts with 'zzzz'",
    )


def test_a_token_is_revoked_by_a_unique_start_of_its_id(api: ServedApp) -> None:
    # Given a token
    made = api.create_at("/api/tokens", {"name": "ci-bot", "project": "daily", "role": "viewer"})

    # When it is revoked by the start of its id, and a start no token has is revoked
    revoked = rollway(api, "token", "revoke", made["id"][:8])
    unknown = rollway(api, "token", "revoke", "zzzz")

    # Then it is gone, and the unknown start is one line
    assert revoked.exit_code == 0, revoked.output
    assert f"token {made['id']} revoked" in revoked.output
    assert made["id"] not in [item["id"] for item in api.http.get("/api/tokens").json()]
    assert (unknown.exit_code, unknown.output.strip()) == (1, "Error: there is no token whose id starts with 'zzzz'")


# -- pipelines


def test_pipelines_lists_them_as_a_table_or_json(api: ServedApp) -> None:
    # Given a disabled pipeline and an enabled one of another project
    api.create(pipeline_doc("Release"))
    api.create(pipeline_doc("Other", project="elsewhere", enabled=True))

    # When the pipelines are listed, and one project's as JSON
    listed = rollway(api, "pipelines")
    as_json = rollway(api, "pipelines", "-o", "json", "--project", "daily")

    # Then the table shows project, name, whether enabled and the stages; JSON is the API's answer
    assert listed.exit_code == 0, listed.output
    assert [row[:4] for row in table_rows(listed.output)] == [
        ["daily", "Release", "no", "Check"],
        ["elsewhere", "Other", "yes", "Check"],
    ]
    assert [(item["name"], item["enabled"]) for item in json.loads(as_json.output)] == [("Release", False)]


def test_enable_and_disable_switch_a_pipeline_by_name(api: ServedApp) -> None:
    # Given a disabled pipeline
    api.create(pipeline_doc("Release"))

    # When it is enabled, then disabled, and a pipeline that does not exist is enabled
    enabled = rollway(api, "enable", "Release")
    after_enable = api.http.get("/api/pipelines", params={"name": "Release"}).json()[0]["enabled"]
    disabled = rollway(api, "disable", "Release", "--project", "daily")
    missing = rollway(api, "enable", "Nope")

    # Then each switch is saved and said, and the missing one is one line
    assert enabled.exit_code == 0 and "pipeline daily/Release enabled" in enabled.output, enabled.output
    assert after_enable is True
    assert disabled.exit_code == 0 and "pipeline daily/Release disabled" in disabled.output, disabled.output
    assert api.http.get("/api/pipelines", params={"name": "Release"}).json()[0]["enabled"] is False
    assert (missing.exit_code, missing.output.strip()) == (1, "Error: there is no pipeline named 'Nope'")


def test_export_prints_the_pipeline_as_yaml_with_secrets_masked(api: ServedApp) -> None:
    # Given a SECRET variable, and a pipeline whose description holds its value
    secret = "hunter2-is-the-secret-value"
    api.create_at("/api/variables", {"name": "key", "project": "daily", "type": "SECRET", "value": secret})
    api.create(pipeline_doc("Release", description=f"uses {secret}"))

    # When it is exported
    exported = rollway(api, "export", "Release")

    # Then the output is its YAML document, with the secret masked as the API masks it
    assert exported.exit_code == 0, exported.output
    document = yaml.safe_load(exported.output)
    assert (document["name"], document["stageOrder"]) == ("Release", ["Check"])
    assert secret not in exported.output and "*****" in document["description"]


# -- endpoints


def test_endpoints_create_takes_the_token_from_the_environment_or_a_prompt_and_list_never_shows_it(
    api: ServedApp,
) -> None:
    # Given a token in the environment, and one to type
    # When an endpoint is created with the token from the environment, another with the token typed at a prompt
    from_env = rollway(
        api,
        "endpoints",
        "create",
        "dev-cluster",
        "--project",
        "daily",
        "--url",
        "https://127.0.0.1:6443",
        "--insecure",
        ROLLWAY_ENDPOINT_TOKEN="env-token-value",
    )
    prompted = CliRunner().invoke(
        cli,
        [
            "--url",
            api.url,
            "endpoints",
            "create",
            "prod-cluster",
            "--project",
            "daily",
            "--url",
            "https://127.0.0.1:7443",
            "--ask-token",
        ],
        env={"ROLLWAY_API_TOKEN": TOKEN, "ROLLWAY_URL": None, "ROLLWAY_ENDPOINT_TOKEN": None},
        input="typed-token-value\n",
    )
    listed = rollway(api, "endpoints", "list", "--project", "daily")
    as_json = rollway(api, "endpoints", "list", "-o", "json")

    # Then both are created holding a token, the list shows which credentials each holds, never a token's value
    assert from_env.exit_code == 0, from_env.output
    assert re.search(r"endpoint daily/dev-cluster created \(\S+\), credentials: token,insecure", from_env.output)
    assert prompted.exit_code == 0, prompted.output
    assert "endpoint daily/prod-cluster created" in prompted.output
    rows = table_rows(listed.output)
    assert [row[:5] for row in rows] == [
        ["daily", "dev-cluster", "kubernetes", "https://127.0.0.1:6443", "token,insecure"],
        ["daily", "prod-cluster", "kubernetes", "https://127.0.0.1:7443", "token"],
    ]
    assert [item["hasToken"] for item in json.loads(as_json.output)] == [True, True]
    for text in (from_env.output, prompted.output, listed.output, as_json.output):
        assert "env-token-value" not in text and "typed-token-value" not in text


# -- apply


def test_apply_orders_a_rollback_pipeline_before_the_pipeline_naming_it(api: ServedApp, tmp_path: Path) -> None:
    # Given one file where a pipeline comes before the rollback pipeline it names
    path = write(tmp_path / "release.yaml", linked("Release", "Release_Rollback"), pipeline_doc("Release_Rollback"))

    # When it is applied
    result = rollway(api, "apply", "-f", str(path))

    # Then both are created, the rollback pipeline first, and the link holds
    assert result.exit_code == 0, result.output
    assert re.findall(r"pipeline daily/(\S+) created", result.output) == ["Release_Rollback", "Release"]
    (release,) = api.http.get("/api/pipelines", params={"name": "Release"}).json()
    assert release["stages"]["Check"]["rollback"]["pipeline"] == "Release_Rollback"


def test_apply_saves_nothing_when_one_document_is_invalid(api: ServedApp, tmp_path: Path) -> None:
    # Given an existing pipeline, and a file changing it, adding a new one, and holding a broken third
    api.create(pipeline_doc("Existing", description="before"))
    broken = pipeline_doc("Broken", stageOrder=["Check", "Ghost"])
    path = write(tmp_path / "batch.yaml", pipeline_doc("Existing", description="after"), pipeline_doc("Fresh"), broken)

    # When the installed command applies it
    result = rollway_process("--url", api.url, "apply", "-f", str(path))

    # Then it fails naming the document and its problem, without a traceback, and nothing changed
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("Error: document 3 (Broken) of 3 has 1 problem; nothing was applied (HTTP 400)")
    assert "documents[2].stageOrder[1]: names stage 'Ghost'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert names(api) == ["Existing"], api.http.get("/api/pipelines").json()
    assert api.http.get("/api/pipelines", params={"name": "Existing"}).json()[0]["description"] == "before"


def test_apply_prints_the_warnings_of_a_pipeline_it_saves_disabled(api: ServedApp, tmp_path: Path) -> None:
    # Given a pipeline whose REST task binds a project variable that does not exist yet
    document = pipeline_doc("Release", enabled=True)
    document["stages"]["Check"]["tasks"]["Gate"] = {"type": "REST", "input": {"url": "${var.apiBase}/deploy"}}
    path = write(tmp_path / "release.yaml", document)

    # When it is applied (and tried first with --dry-run)
    tried = rollway(api, "apply", "-f", str(path), "--dry-run")
    result = rollway(api, "apply", "-f", str(path))

    # Then it is saved disabled and each warning is printed under it, both times
    for output in (tried.output, result.output):
        assert "pipeline daily/Release" in output and ", disabled with 1 warning" in output, output
        assert "  - stages.Check.tasks.Gate.input.url: project variable 'apiBase' does not exist" in output
    assert result.exit_code == 0, result.output
    assert api.http.get("/api/pipelines", params={"name": "Release"}).json()[0]["enabled"] is False


def test_apply_dry_run_validates_and_saves_nothing(api: ServedApp, tmp_path: Path) -> None:
    # Given an existing pipeline and a file changing it and adding one that links to a rollback of the same file
    api.create(pipeline_doc("Existing"))
    path = write(
        tmp_path / "batch.yaml",
        pipeline_doc("Existing", description="changed"),
        linked("Release", "Release_Rollback"),
        pipeline_doc("Release_Rollback"),
    )
    broken = write(tmp_path / "broken.yaml", pipeline_doc("Fresh"), linked("Other", "Nowhere"))

    # When each is applied with --dry-run
    valid = rollway(api, "apply", "-f", str(path), "--dry-run")
    invalid = rollway(api, "apply", "-f", str(broken), "--dry-run")

    # Then the valid one says what would change, the invalid one names its problem, and nothing was saved
    assert valid.exit_code == 0, valid.output
    assert "pipeline daily/Existing would be updated" in valid.output
    assert "pipeline daily/Release_Rollback would be created" in valid.output
    assert valid.output.strip().endswith("dry run: the file is valid; nothing was saved")
    assert invalid.exit_code == 1
    assert "rollback pipeline 'Nowhere' does not exist in project 'daily'" in invalid.output
    assert names(api) == ["Existing"]
    assert api.http.get("/api/pipelines", params={"name": "Existing"}).json()[0]["description"] == ""


def test_apply_keeps_an_existing_pipeline_enabled_unless_the_file_says_otherwise(
    api: ServedApp, tmp_path: Path
) -> None:
    # Given an enabled pipeline, and a file changing it that does not say whether it is enabled
    api.create(pipeline_doc("Release", enabled=True))
    path = write(tmp_path / "release.yaml", pipeline_doc("Release", description="changed"))

    # When the file is applied, then again with `enabled: false`
    kept = rollway(api, "apply", "-f", str(path))
    enabled_after_first = api.http.get("/api/pipelines", params={"name": "Release"}).json()[0]
    write(path, pipeline_doc("Release", description="changed", enabled=False))
    switched = rollway(api, "apply", "-f", str(path))

    # Then the first apply updates it and it stays enabled; the second turns it off as the file says
    assert kept.exit_code == 0 and "pipeline daily/Release updated" in kept.output, kept.output
    assert (enabled_after_first["description"], enabled_after_first["enabled"]) == ("changed", True)
    assert switched.exit_code == 0 and "pipeline daily/Release updated" in switched.output
    assert api.http.get("/api/pipelines", params={"name": "Release"}).json()[0]["enabled"] is False


# -- what is not Rollway, and the help


def test_a_url_that_is_not_rollway_is_one_line_naming_it(web: HTTPServer) -> None:
    # Given a web server that answers HTML 404s, and 200s that are not JSON
    web.expect_request("/api/executions").respond_with_data(
        "<html>\n<body><h1>404 Not Found</h1></body>\n</html>\n", status=404, content_type="text/html"
    )
    web.expect_request("/api/pipelines").respond_with_data("hello there\n", content_type="text/plain")
    web.expect_request("/api/endpoints").respond_with_json([{"hello": "there"}])
    url = web.url_for("/").rstrip("/")

    # When Rollway commands are pointed at it, and at a port where nothing listens
    html = rollway_process("--url", url, "executions")
    text = rollway_process("--url", url, "pipelines")
    json_rows = rollway_process("--url", url, "endpoints", "list")
    refused = rollway_process("--url", "http://127.0.0.1:9", "describe", "abcd")

    # Then each fails with one line naming the URL and what came back, never a traceback
    for result in (html, text, json_rows, refused):
        assert result.returncode == 1, result
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
    assert f"{url} does not answer like the Rollway API: GET /api/executions got HTTP 404 (text/html)" in html.stderr
    assert "404 Not Found" in html.stderr
    assert "got HTTP 200 (text/plain): 'hello there'" in text.stderr
    assert f"{url} answered without the field 'project': is it the Rollway API?" in json_rows.stderr
    assert "cannot reach the Rollway API at http://127.0.0.1:9" in refused.stderr


def test_the_help_names_the_settings_from_the_environment() -> None:
    # When the top group's help is printed
    result = CliRunner().invoke(cli, ["--help"])

    # Then it names every ROLLWAY_* setting, and the new commands
    assert result.exit_code == 0
    for name in (
        "ROLLWAY_URL",
        "ROLLWAY_API_TOKEN",
        "ROLLWAY_DATABASE_URL",
        "ROLLWAY_REDIS_URL",
        "ROLLWAY_SECRET_KEY",
        "ROLLWAY_SECRET_KEY_OLD",
        "ROLLWAY_SWEEP_SECONDS",
        "ROLLWAY_LEASE_SECONDS",
        "ROLLWAY_EGRESS_DENY",
        "ROLLWAY_REDIS_PREFIX",
    ):
        assert name in result.output, name
    for command in ("describe", "logs", "pipelines", "enable", "disable", "export", "endpoints"):
        assert re.search(rf"^\s+{command}\s", result.output, re.MULTILINE), command
