"""What REST and POLL tasks may reach, carry and read: the egress deny list, a client per request, redirects
checked hop by hop, bodies cut at a limit, and URLs kept out of the logs. Real local HTTP servers throughout;
tasks run through the real executors, the engine and, in the last story, the API and a `rollway worker`."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from orchestrator import defaults
from orchestrator.document import load_pipeline
from orchestrator.engine import Engine
from orchestrator.errors import ConfigurationError
from orchestrator.execution import Execution
from orchestrator.settings import DEFAULT_EGRESS_DENY, Settings, sqlite_url
from orchestrator.status import ExecutionStatus
from orchestrator.store import Store
from workers.dispatcher import InlineDispatcher
from workers.egress import denied_by, refusal
from workers.executors import build_executors
from workers.executors.base import Failed, Succeeded, TaskCall
from workers.executors.poll import PollExecutor
from workers.executors.rest import RestExecutor
from workers.heartbeat import Heartbeat
from workers.http import HttpClient
from workers.runner import TaskRunner

from rollway_testing import TERMINAL, ServedApp, WorkerProcess

Doc = dict[str, Any]
METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
SECRET = "SECRETMARK"


def rest(url: str, **fields: Any) -> TaskCall:
    return TaskCall("REST", {"action": "get", "url": url, **fields})


# --- the setting ---------------------------------------------------------------------------------------------


def test_unset_or_empty_means_the_link_local_and_metadata_ranges_and_loopback_stays_reachable() -> None:
    # Given no ROLLWAY_EGRESS_DENY, or an empty one passed on by a deployment file
    for environ in ({}, {"ROLLWAY_EGRESS_DENY": ""}, {"ROLLWAY_EGRESS_DENY": "  "}):
        # When settings are read
        deny = Settings.from_env(environ).egress_deny

        # Then the metadata addresses are denied, and loopback is not
        assert deny == DEFAULT_EGRESS_DENY
        assert denied_by(ip_address("169.254.169.254"), deny) == ip_network("169.254.0.0/16")
        assert denied_by(ip_address("fd00:ec2::254"), deny) is not None
        assert denied_by(ip_address("100.100.100.200"), deny) is not None
        assert denied_by(ip_address("127.0.0.1"), deny) is None and denied_by(ip_address("::1"), deny) is None


def test_a_list_replaces_the_default_and_none_denies_nothing() -> None:
    # When the variable lists networks, or says none
    listed = Settings.from_env({"ROLLWAY_EGRESS_DENY": "10.0.0.0/8, 127.0.0.1 ,fd00::/8,"}).egress_deny
    nothing = Settings.from_env({"ROLLWAY_EGRESS_DENY": "none"}).egress_deny

    # Then exactly those are denied (a bare address is its own /32), and the default ones no longer are
    assert listed == (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"), ip_network("fd00::/8"))
    assert denied_by(ip_address("169.254.169.254"), listed) is None
    assert nothing == ()


@pytest.mark.parametrize("value", ["10.0.0.0/33", "metadata", "10.0.0.0/8;192.168.0.0/16"])
def test_a_value_that_is_not_a_cidr_list_is_a_configuration_error_naming_the_variable(value: str) -> None:
    # When the variable holds something that is not a CIDR, Then reading settings fails naming it and the entry
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({"ROLLWAY_EGRESS_DENY": value})
    assert "ROLLWAY_EGRESS_DENY" in raised.value.message and repr(value) in raised.value.message


def test_every_resolved_address_counts_and_an_ipv4_address_written_as_ipv6_counts_as_itself() -> None:
    # Given the default deny list
    deny = DEFAULT_EGRESS_DENY

    # When a host resolves to an allowed and a denied address, or a literal maps a denied IPv4 address
    both = refusal("meta.example", ["127.0.0.1", "169.254.169.254"], deny)
    mapped = refusal("::ffff:169.254.169.254", ["::ffff:169.254.169.254"], deny)

    # Then both are refused, naming the denied address and the variable
    assert both == "meta.example resolves to 169.254.169.254, which is denied by ROLLWAY_EGRESS_DENY (169.254.0.0/16)"
    assert mapped is not None and "ROLLWAY_EGRESS_DENY (169.254.0.0/16)" in mapped
    assert refusal("localhost", ["127.0.0.1", "::1"], deny) is None


# --- where a task may connect --------------------------------------------------------------------------------


def test_rest_to_the_metadata_address_fails_naming_the_address_and_the_setting() -> None:
    # Given a client on the default deny list
    http = HttpClient(timeout=5)

    # When a REST task asks the cloud metadata service for credentials, by address and by its decimal spelling
    by_address = RestExecutor(http).execute(rest(METADATA_URL))
    by_number = RestExecutor(http).execute(rest("http://2852039166/latest/"))

    # Then each fails before any connection, saying which address the setting denies
    assert isinstance(by_address, Failed) and isinstance(by_number, Failed)
    assert by_address.message == (
        f"GET {METADATA_URL} refused: 169.254.169.254 is denied by ROLLWAY_EGRESS_DENY (169.254.0.0/16)"
    )
    assert by_number.message == (
        "GET http://2852039166/latest/ refused: "
        "2852039166 resolves to 169.254.169.254, which is denied by ROLLWAY_EGRESS_DENY (169.254.0.0/16)"
    )


def test_a_host_name_is_checked_by_the_addresses_it_resolves_to(web: HTTPServer) -> None:
    # Given a local service, and a deny list naming loopback
    web.expect_request("/inside").respond_with_data("internal data")
    http = HttpClient([ip_network("127.0.0.0/8"), ip_network("::1/128")], timeout=5)

    # When a REST task calls it through the name localhost
    outcome = RestExecutor(http).execute(rest(f"http://localhost:{web.port}/inside"))

    # Then it is refused by the address localhost resolves to, and the service never saw a request
    assert isinstance(outcome, Failed)
    assert "localhost resolves to" in outcome.message and "denied by ROLLWAY_EGRESS_DENY" in outcome.message
    assert web.log == []


def test_a_redirect_to_a_denied_address_is_refused(web: HTTPServer) -> None:
    # Given an allowed service that redirects to the metadata service
    web.expect_request("/go").respond_with_response(Response(status=302, headers={"Location": METADATA_URL}))

    # When a REST task calls the allowed service
    outcome = RestExecutor(HttpClient(timeout=5)).execute(rest(web.url_for("/go")))

    # Then the redirect is checked like the first request and refused
    assert isinstance(outcome, Failed)
    assert "169.254.169.254 is denied by ROLLWAY_EGRESS_DENY" in outcome.message


def test_a_redirect_chain_longer_than_the_limit_fails(web: HTTPServer) -> None:
    # Given a service whose pages redirect to the next one, one more time than a task follows
    last = defaults.HTTP_MAX_REDIRECTS + 1

    def hop(request: Request) -> Response:
        step = int(request.path.rsplit("/", 1)[1])
        if step == last:
            return Response("finally")
        return Response(status=307, headers={"Location": f"/hop/{step + 1}"})

    web.expect_request(re.compile(r"/hop/\d+")).respond_with_handler(hop)

    # When a REST task follows it
    outcome = RestExecutor(HttpClient(timeout=5)).execute(rest(web.url_for("/hop/0")))

    # Then it gives up after the limit
    assert isinstance(outcome, Failed), outcome
    assert f"more than {defaults.HTTP_MAX_REDIRECTS} redirects" in outcome.message


def test_a_redirect_to_another_origin_carries_no_credentials(web: HTTPServer) -> None:
    # Given a service that redirects to another origin (another port), which records what it receives
    other = HTTPServer(host="127.0.0.1", port=0)
    other.start()
    try:
        other.expect_request("/landing").respond_with_data("landed")
        web.expect_request("/login").respond_with_response(
            Response(status=302, headers={"Location": other.url_for("/landing")})
        )

        # When a REST task calls the first with a bearer token and a cookie
        headers = {"Authorization": "Bearer top-secret", "Cookie": "session=top-secret", "X-Trace": "t1"}
        outcome = RestExecutor(HttpClient(timeout=5)).execute(rest(web.url_for("/login"), headers=headers))

        # Then the second origin answered without either of them (other headers follow)
        assert isinstance(outcome, Succeeded) and outcome.output["responseBody"] == "landed"
        landed = other.log[0][0]
        assert "Authorization" not in landed.headers and "Cookie" not in landed.headers
        assert landed.headers["X-Trace"] == "t1"
    finally:
        other.stop()


def test_a_denied_poll_fails_at_once_even_when_it_ignores_failures() -> None:
    # Given a POLL task that would poll again after a failed poll
    task_input = {"url": METADATA_URL, "pollCount": 5, "pollIntervalSeconds": 1, "ignoreFailure": True}

    # When it polls the metadata service
    outcome = PollExecutor(HttpClient(timeout=5)).execute(TaskCall("POLL", task_input))

    # Then it fails on the first poll: asking again would be refused again
    assert isinstance(outcome, Failed), outcome
    assert "denied by ROLLWAY_EGRESS_DENY" in outcome.message
    assert outcome.output is not None and outcome.output["iterationCount"] == 1


# --- what a task carries from one run to the next ------------------------------------------------------------


@dataclass
class Harness:
    """An engine on SQLite whose task runs run in-process through the real runner and executors."""

    store: Store
    engine: Engine
    dispatcher: InlineDispatcher
    runner: TaskRunner

    def run(self, document: Doc) -> Execution:
        record = self.store.add_pipeline(load_pipeline(document, self.store.rollback_target))
        execution = self.engine.trigger(record, {}, "test", "tester")
        self.dispatcher.drain(self.runner)
        return self.store.get_execution(execution.id)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    store = Store.connect(sqlite_url(tmp_path / "rollway.db"))
    dispatcher = InlineDispatcher(sleep=lambda _seconds: None)
    engine = Engine(store, dispatcher)
    # One client for every task, as a worker process has.
    executors = build_executors(HttpClient(timeout=5), store.get_endpoint)
    yield Harness(store, engine, dispatcher, TaskRunner(store, engine, executors, Heartbeat(store, 60)))
    store.dispose()


def one_task(name: str, project: str, task: Doc) -> Doc:
    stage = {"taskOrder": ["Call"], "tasks": {"Call": task}}
    return {"name": name, "project": project, "enabled": True, "stageOrder": ["S"], "stages": {"S": stage}}


def test_a_cookie_set_for_one_pipeline_is_never_sent_for_another(harness: Harness, web: HTTPServer) -> None:
    # Given a service that hands out a session cookie, and records the cookies it is sent
    web.expect_request("/login").respond_with_response(
        Response("in", headers={"Set-Cookie": "session=team-a-secret; Path=/"})
    )
    seen: list[str | None] = []

    def status(request: Request) -> Response:
        seen.append(request.headers.get("Cookie"))
        return Response(json.dumps({"state": "DONE"}), content_type="application/json")

    web.expect_request("/status").respond_with_handler(status)

    # When pipeline A of one project logs in with REST, then pipeline B of another project polls the same service
    login = harness.run(one_task("A", "team-a", {"type": "REST", "input": {"url": web.url_for("/login")}}))
    poll = {"url": web.url_for("/status"), "pollCount": 1, "exitCriteria": {"success": "responseJson.state == 'DONE'"}}
    polled = harness.run(one_task("B", "team-b", {"type": "POLL", "input": poll}))

    # Then both completed, and B's request carried no cookie
    assert login.status is ExecutionStatus.COMPLETED and polled.status is ExecutionStatus.COMPLETED
    assert web.log[0][1].headers.get("Set-Cookie", "").startswith("session=team-a-secret")
    assert seen == [None]


# --- how much a task reads -----------------------------------------------------------------------------------

HUGE_BYTES = 300 * 1024 * 1024
MEASURE = """
import json, resource, sys
from workers.executors.base import TaskCall
from workers.executors.rest import RestExecutor
from workers.http import HttpClient

executor = RestExecutor(HttpClient(timeout=30))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcome = executor.execute(TaskCall("REST", {"action": "get", "url": sys.argv[1]}))
grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
output = dict(getattr(outcome, "output", None) or {})
print(json.dumps({
    "outcome": type(outcome).__name__, "grown_kib": grown_kib, "truncated": output.get("responseTruncated"),
    "body_chars": len(output.get("responseBody") or ""), "code": output.get("responseCode"),
}))
"""


def test_a_300_mb_answer_is_cut_at_the_body_limit_and_memory_stays_flat(web: HTTPServer) -> None:
    # Given a service that streams 300 MB of JSON-looking text
    def huge(_request: Request) -> Response:
        chunk = b"x" * 65536

        def stream() -> Iterator[bytes]:
            yield b'{"data": "'
            for _ in range(HUGE_BYTES // len(chunk)):
                yield chunk

        return Response(stream(), content_type="application/json", direct_passthrough=True)

    web.expect_request("/dump").respond_with_handler(huge)

    # When a REST task calls it, in a process of its own whose peak memory we read
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, web.url_for("/dump")], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout.strip().splitlines()[-1])

    # Then the task completed with the body cut at the limit and marked so, and the process grew by far less
    assert measured["outcome"] == "Succeeded" and measured["code"] == 200
    assert measured["grown_kib"] < 100 * 1024, measured
    assert measured["truncated"] is True and measured["body_chars"] == defaults.HTTP_BODY_LIMIT_BYTES


def test_a_whole_answer_within_the_limit_is_not_marked_truncated(web: HTTPServer) -> None:
    # Given a service answering a small JSON body
    web.expect_request("/small").respond_with_json({"ok": True})

    # When a REST task calls it
    outcome = RestExecutor(HttpClient(timeout=5)).execute(rest(web.url_for("/small")))

    # Then the output is whole, parsed, and says it is not truncated
    assert isinstance(outcome, Succeeded)
    assert outcome.output["responseJson"] == {"ok": True} and outcome.output["responseTruncated"] is False


def test_an_answer_that_trickles_past_the_deadline_fails_the_task(web: HTTPServer) -> None:
    # Given a service that sends its body a few bytes at a time, never quite idle long enough to time out
    def trickle(_request: Request) -> Response:
        def stream() -> Iterator[bytes]:
            for _ in range(200):
                time.sleep(0.05)
                yield b"."

        return Response(stream(), direct_passthrough=True)

    web.expect_request("/slow").respond_with_handler(trickle)

    # When a REST task with a short deadline calls it
    outcome = RestExecutor(HttpClient(timeout=5, deadline=0.3)).execute(rest(web.url_for("/slow")))

    # Then it fails as timed out, instead of reading for as long as the server keeps sending
    assert isinstance(outcome, Failed), outcome
    assert "timed out: no complete answer within 0.3s" in outcome.message


# --- what the logs show --------------------------------------------------------------------------------------


def test_a_url_with_a_token_in_its_query_leaves_no_trace_in_the_logs(
    harness: Harness, web: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a service that answers one call and fails another, both called with a token in the query
    web.expect_request("/ok").respond_with_data("fine")
    web.expect_request("/broken").respond_with_data("no", status=500)
    caplog.set_level(logging.INFO)
    tasks = {
        "Call": {"type": "REST", "input": {"url": web.url_for("/ok") + f"?token={SECRET}"}},
        "Broken": {
            "type": "REST",
            "input": {"url": web.url_for("/broken") + f"?token={SECRET}"},
            "ignoreFailure": True,
        },
    }
    document = {
        "name": "Q",
        "enabled": True,
        "stageOrder": ["S"],
        "stages": {"S": {"taskOrder": ["Call,Broken"], "tasks": tasks}},
    }

    # When the pipeline runs, with INFO logs captured
    execution = harness.run(document)

    # Then the token reached the service, but no log line and no status message names it
    assert execution.status is ExecutionStatus.COMPLETED
    assert all(request.args["token"] == SECRET for request, _ in web.log)
    # (the test server's own access log names what it received: what the client side logs is the question)
    logged = [record.getMessage() for record in caplog.records if record.name != "werkzeug"]
    assert logged and not [line for line in logged if SECRET in line]
    broken = next(run for run in harness.store.task_runs(execution.id) if run.name == "Broken")
    assert broken.status_message.endswith("/broken?... answered 500") and SECRET not in broken.status_message


# --- the whole way: API and worker ---------------------------------------------------------------------------


def test_through_the_api_a_worker_refuses_the_metadata_service_and_logs_no_query_secret(
    api: ServedApp, worker: WorkerProcess, web: HTTPServer, wait: Any
) -> None:
    # Given a pipeline that calls a service with a token in the query, then the cloud metadata service
    web.expect_request("/deploy").respond_with_json({"deployed": True})
    stages = {
        "Deploy": {
            "taskOrder": ["Call"],
            "tasks": {"Call": {"type": "REST", "input": {"url": web.url_for("/deploy") + f"?token={SECRET}"}}},
        },
        "Steal": {"taskOrder": ["Metadata"], "tasks": {"Metadata": {"type": "REST", "input": {"url": METADATA_URL}}}},
    }
    created = api.create(
        {
            "kind": "PIPELINE",
            "name": "Egress",
            "project": "e2e",
            "enabled": True,
            "stageOrder": list(stages),
            "stages": stages,
        }
    )

    # When it runs on a `rollway worker --loglevel INFO`
    answer = api.http.post(f"/api/pipelines/{created['id']}/executions", json={"input": {}})
    assert answer.status_code == 202, answer.text
    execution_id = answer.json()["executionId"]
    found = wait(
        lambda: (view := api.http.get(f"/api/executions/{execution_id}").json())["status"] in TERMINAL and view,
        what="the execution to end",
    )

    # Then the metadata task failed naming the address and the setting, and the worker's log has no token
    assert found["status"] == "FAILED", found
    metadata = found["stages"][1]["tasks"][0]
    assert "169.254.169.254 is denied by ROLLWAY_EGRESS_DENY (169.254.0.0/16)" in metadata["statusMessage"]
    assert web.log and web.log[0][0].args["token"] == SECRET
    assert SECRET not in worker.log()
