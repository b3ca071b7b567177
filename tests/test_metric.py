"""The METRIC task: a metric gate against a real Prometheus (Debian's `prometheus`, started here on a free port)
scraping an exporter the test controls, judged by the pure measurement decision and run through the API by a
real worker."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.tasktypes import check_task_input
from workers.executors.base import Failed, Succeeded, TaskCall, Waiting
from workers.executors.metric import (
    ERROR,
    FAILED,
    INCONCLUSIVE,
    SUCCESSFUL,
    Conditions,
    MetricExecutor,
    MetricSettings,
    judge,
    verdict,
)
from workers.http import HttpClient

from rollway_testing import ServedApp, unavailable, wait_until

Doc = dict[str, Any]
HEALTHY = Conditions("result < 0.05", "result >= 0.05")


def no_bindings(reference: str) -> object:
    raise AssertionError(f"no pipeline binding expected, got {reference}")


# --- the measurement decision (pure) ---


@pytest.mark.parametrize(
    ("value", "conditions", "phase"),
    [
        (0.01, HEALTHY, SUCCESSFUL),
        (0.2, HEALTHY, FAILED),
        (0.05, Conditions("result < 0.05", "result > 0.1"), INCONCLUSIVE),
        (None, HEALTHY, INCONCLUSIVE),
        # Only a success condition: not meeting it fails; only a failure condition: not meeting it passes.
        (0.2, Conditions("result < 0.05", None), FAILED),
        (0.01, Conditions(None, "result > 0.05"), SUCCESSFUL),
        # Several series: `result` is a list, read by index.
        ([0.01, 0.3], Conditions("result[0] < 0.05 and result[1] < 0.05", None), FAILED),
        ([0.01, 0.02], Conditions("result[0] < 0.05 and result[1] < 0.05", None), SUCCESSFUL),
        # A condition that cannot be evaluated on the value (a list compared as a number) is an error.
        ([0.01, 0.02], HEALTHY, ERROR),
    ],
)
def test_a_measurement_is_judged_by_its_conditions_as_argo_does(value: Any, conditions: Conditions, phase: str) -> None:
    # Given a measured value and the task's conditions
    # When it is judged
    judged, message = judge(value, conditions, no_bindings)

    # Then its phase is as Argo Rollouts would give it, with a reason
    assert judged == phase, message
    assert message


def test_a_condition_may_read_pipeline_bindings_beside_the_result() -> None:
    # Given a threshold that comes from the pipeline's input
    def lookup(reference: str) -> object:
        assert reference == "input.maxErrors"
        return "0.05"

    # When a value is judged against it
    # Then the binding gives the threshold
    assert judge(0.01, Conditions("result < ${input.maxErrors}", None), lookup)[0] == SUCCESSFUL
    assert judge(0.2, Conditions("result < ${input.maxErrors}", None), lookup)[0] == FAILED


def measured(*phases: str) -> list[Doc]:
    return [{"at": "t", "value": 0.0, "phase": phase} for phase in phases]


@pytest.mark.parametrize(
    ("phases", "decided"),
    [
        ((SUCCESSFUL,), None),
        ((SUCCESSFUL, SUCCESSFUL, SUCCESSFUL), True),
        ((SUCCESSFUL, FAILED), None),  # one failure is tolerated
        ((FAILED, FAILED), False),  # the second is not: the gate fails before its count
        ((SUCCESSFUL, FAILED, SUCCESSFUL), True),
        ((INCONCLUSIVE, ERROR), False),  # errors count with inconclusive measurements
        ((INCONCLUSIVE, SUCCESSFUL, SUCCESSFUL), True),
    ],
)
def test_the_gate_is_decided_by_its_count_and_limits(phases: tuple[str, ...], decided: bool | None) -> None:
    # Given three measurements to take, one failure and one inconclusive measurement tolerated
    settings = MetricSettings(interval=1, count=3, failure_limit=1, inconclusive_limit=1)

    # When the measurements so far are weighed
    passed, summary = verdict(measured(*phases), settings)

    # Then the gate passes, fails or goes on
    assert passed is decided, summary


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        ({"count": 0}, "count", "must be greater than 0"),
        ({"interval": -1}, "interval", "must be greater than 0"),
        ({"failureLimit": -1}, "failureLimit", "must be 0 or more"),
        ({"inconclusiveLimit": 1.5}, "inconclusiveLimit", "must be a whole number 0 or more, not 1.5"),
        ({"successCondition": ""}, "successCondition", "must be a non-empty expression over 'result'"),
        ({"successCondition": None, "failureCondition": None}, "successCondition", "needs a successCondition"),
        ({"url": "prometheus:9090"}, "url", "must be an http:// or https:// URL"),
        ({"query": " "}, "query", "must be a PromQL query"),
    ],
)
def test_a_metric_task_is_checked_when_saved(given: Doc, field: str, message: str) -> None:
    # Given a METRIC task's input with one bad value
    task_input = {"url": "http://prom:9090", "query": "up", "successCondition": "result == 1", **given}
    task_input = {name: value for name, value in task_input.items() if value is not None}

    # When it is checked
    problems = check_task_input("METRIC", task_input)

    # Then the one problem names the field and what is wrong
    assert [problem.path for problem in problems] == [field], problems
    assert message in problems[0].message
    # ... and the good input passes, zero limits included
    good = {"url": "http://prom:9090", "query": "up", "successCondition": "result == 1", "failureLimit": 0}
    assert check_task_input("METRIC", good | {"inconclusiveLimit": 0, "count": 3, "interval": 0.5}) == []


def test_a_condition_that_does_not_parse_is_refused_when_the_pipeline_is_saved(api: ServedApp) -> None:
    # Given a pipeline whose METRIC condition is not an expression
    task = metric_task("http://127.0.0.1:1", "result <> 0.05")

    # When it is saved
    answer = api.http.post("/api/pipelines", json=one_task_pipeline("Bad-Gate", task))

    # Then it is refused with the condition's path
    assert answer.status_code == 400, answer.text
    paths = [detail["path"] for detail in answer.json()["error"]["details"]]
    assert paths == ["stages.Canary.tasks.Gate.input.successCondition"], answer.text


# --- a real Prometheus scraping an exporter the test controls ---


class Exporter:
    """A `/metrics` endpoint in Prometheus's text format whose gauges the test sets."""

    def __init__(self) -> None:
        self.gauges: dict[str, float] = {}
        gauges = self.gauges

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = "".join(f"# TYPE {name.split('{')[0]} gauge\n{name} {value}\n" for name, value in gauges.items())
                data = body.encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Prometheus:
    """A `prometheus` process scraping one exporter every second."""

    def __init__(self, exporter: Exporter, directory: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            unavailable("Prometheus", FileNotFoundError("no `prometheus` on PATH (apt-get install prometheus)"))
        config = directory / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs: [{{job_name: app, static_configs: [{{targets: ['{exporter.address}']}}]}}]\n"
        )
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = directory / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address={self.url.removeprefix('http://')}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.ready, timeout=60, interval=0.2, what=f"Prometheus to start (see {self.log_path})")

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log_path.read_text()[-3000:]
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def value(self, query: str) -> list[str]:
        """The sample values of an instant query, as Prometheus gives them."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=5).json()
        return [item["value"][1] for item in answer["data"]["result"]]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    started = Exporter()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def prometheus(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    started = Prometheus(exporter, tmp_path_factory.mktemp("prometheus"))
    yield started
    started.stop()


def scraped(prometheus: Prometheus, exporter: Exporter, gauges: dict[str, float]) -> None:
    """Set gauges and wait until Prometheus has scraped them."""
    exporter.gauges.update(gauges)
    for name, value in gauges.items():
        wait_until(
            lambda name=name, value=value: [float(text) for text in prometheus.value(name)] == [value],  # type: ignore[misc]
            timeout=30,
            interval=0.2,
            what=f"Prometheus to scrape {name} {value}",
        )


def metric_task(url: str, success: str | None, failure: str | None = None, **more: Any) -> Doc:
    given = {"url": url, "query": "app_error_rate", "successCondition": success, "failureCondition": failure}
    return {"type": "METRIC", "input": {k: v for k, v in given.items() if v is not None} | more}


def one_task_pipeline(name: str, task: Doc, **stage: Any) -> Doc:
    return {
        "kind": "PIPELINE",
        "name": name,
        "project": "e2e",
        "enabled": True,
        "stageOrder": ["Canary"],
        "stages": {"Canary": {"taskOrder": ["Gate"], "tasks": {"Gate": task}, **stage}},
    }


def measure_all(executor: MetricExecutor, task_input: Doc, limit: int = 10) -> list[Any]:
    """Run attempts as the worker would, handing each the state the last one kept (without waiting)."""
    outcomes: list[Any] = []
    state: dict[str, Any] = {}
    while len(outcomes) < limit:
        outcome = executor.execute(TaskCall("METRIC", task_input, state=state))
        outcomes.append(outcome)
        if not isinstance(outcome, Waiting):
            return outcomes
        state = dict(outcome.state)
    return outcomes


def test_measurements_of_a_real_prometheus_keep_every_value_and_phase(
    prometheus: Prometheus, exporter: Exporter
) -> None:
    # Given an exporter whose error rate Prometheus has scraped
    scraped(prometheus, exporter, {"checkout_error_rate": 0.01})
    executor = MetricExecutor(HttpClient(timeout=5))
    task_input = {
        "url": prometheus.url,
        "query": "checkout_error_rate",
        "successCondition": "result < 0.05",
        "failureCondition": "result >= 0.05",
        "count": 3,
        "interval": 0.1,
    }

    # When the gate measures three times
    outcomes = measure_all(executor, task_input)

    # Then it waits between measurements and succeeds on the third, with all three in its output
    assert [type(outcome) for outcome in outcomes] == [Waiting, Waiting, Succeeded], outcomes
    assert all(outcome.countdown == 0.1 for outcome in outcomes[:2])
    final = outcomes[-1].output
    assert final["status"] == "COMPLETED"
    assert [(item["value"], item["phase"]) for item in final["measurements"]] == [(0.01, SUCCESSFUL)] * 3
    assert all(item["at"] for item in final["measurements"])


def test_no_data_and_a_bad_query_are_inconclusive_and_errors_up_to_their_limit(
    prometheus: Prometheus, exporter: Exporter
) -> None:
    # Given a Prometheus that has no series of that name, and a query it cannot parse
    executor = MetricExecutor(HttpClient(timeout=5))
    task_input = {"url": prometheus.url, "successCondition": "result < 0.05", "count": 3, "inconclusiveLimit": 1}

    # When a gate queries each
    no_data = measure_all(executor, task_input | {"query": "no_such_metric_anywhere"})
    bad = measure_all(executor, task_input | {"query": "rate(checkout_error_rate[1m"})

    # Then the first measurement is tolerated, the second is one too many, and both are in the output
    assert [type(outcome) for outcome in no_data] == [Waiting, Failed], no_data
    assert [item["phase"] for item in no_data[-1].output["measurements"]] == [INCONCLUSIVE, INCONCLUSIVE]
    assert no_data[-1].output["measurements"][0]["value"] is None
    assert "metric gate failed" in no_data[-1].message
    assert [type(outcome) for outcome in bad] == [Waiting, Failed], bad
    errors = bad[-1].output["measurements"]
    assert [item["phase"] for item in errors] == [ERROR, ERROR]
    assert "Prometheus answered 400" in errors[0]["message"], errors


# --- through the API, with a real worker ---


def trigger(api: ServedApp, pipeline: Doc) -> str:
    answer = api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {}})
    assert answer.status_code == 202, answer.text
    execution_id: str = answer.json()["executionId"]
    return execution_id


def finished(api: ServedApp, execution_id: str) -> Doc:
    from rollway_testing import TERMINAL

    found: Doc = wait_until(
        lambda: (seen := api.http.get(f"/api/executions/{execution_id}").json())["status"] in TERMINAL and seen,
        timeout=90,
        what=f"execution {execution_id} to end",
    )
    return found


def gate_of(found: Doc) -> Doc:
    task: Doc = found["stages"][0]["tasks"][0]
    return task


def test_a_healthy_metric_lets_the_pipeline_complete_with_its_measurements(
    api: ServedApp, worker: Any, prometheus: Prometheus, exporter: Exporter
) -> None:
    # Given an application whose error rate is low, and a canary gated on it
    scraped(prometheus, exporter, {"app_error_rate": 0.01})
    task = metric_task(prometheus.url, "result < 0.05", "result >= 0.05", count=3, interval=0.5)
    pipeline = api.create(one_task_pipeline("Healthy-Canary", task))

    # When it runs
    found = finished(api, trigger(api, pipeline))

    # Then it completes, and the gate's output holds its three measurements
    assert found["status"] == "COMPLETED", found
    output = gate_of(found)["output"]
    assert output["status"] == "COMPLETED"
    assert [(item["value"], item["phase"]) for item in output["measurements"]] == [(0.01, SUCCESSFUL)] * 3


def test_a_metric_over_its_threshold_fails_the_gate_and_the_stage_rolls_back(
    api: ServedApp, worker: Any, prometheus: Prometheus, exporter: Exporter
) -> None:
    # Given an application whose error rate is over the threshold, in a stage linked to a rollback pipeline
    scraped(prometheus, exporter, {"app_error_rate": 0.2})
    undo = {"type": "Condition", "input": {"condition": "true"}}
    api.create(one_task_pipeline("Undo-Canary", undo))
    task = metric_task(prometheus.url, "result < 0.05", "result >= 0.05", count=5, interval=0.5, failureLimit=1)
    pipeline = api.create(one_task_pipeline("Bad-Canary", task, rollback={"pipeline": "Undo-Canary"}))

    # When it runs
    parent_id = trigger(api, pipeline)
    parent = finished(api, parent_id)

    # Then the gate fails on its second failed measurement, keeping both, and the stage's rollback runs
    assert parent["status"] == "ROLLBACK_COMPLETED", parent
    gate = gate_of(parent)
    assert gate["status"] == "FAILED"
    assert "metric gate failed" in gate["statusMessage"], gate
    assert gate["output"]["status"] == "FAILED"
    assert [(item["value"], item["phase"]) for item in gate["output"]["measurements"]] == [(0.2, FAILED)] * 2
    rollback = api.http.get(f"/api/executions/{parent['rollbackExecutionId']}").json()
    assert rollback["status"] == "COMPLETED", rollback
    assert rollback["pipeline"] == "Undo-Canary" and rollback["rollbackOf"] == parent_id
    assert "task 'Gate'" in rollback["comments"] and "metric gate failed" in rollback["comments"], rollback
