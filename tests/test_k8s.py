"""The K8S task through TaskCalls against kubesim over HTTP: each story re-runs an attempt with the state the last
one returned, as the worker does, until the task is no longer Waiting."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from k8s_support import (
    READY_DELAY,
    TOKEN,
    ManualClock,
    deployment_yaml,
    endpoint,
    lookup,
    namespace_yaml,
    release_yaml,
    run,
    service_yaml,
    waits,
)

from kubesim import KubeSim
from orchestrator.endpoints import Endpoint
from orchestrator.rollout import rollout_status, same_template
from workers.cluster import ClusterClients
from workers.executors.base import Failed, Outcome, Succeeded, Waiting
from workers.executors.k8s import K8sExecutor

ROLLOUT = {"namespace": "demo", "deployment": "web"}


@pytest.fixture
def sim() -> Iterator[KubeSim]:
    """A cluster that takes only TOKEN and cannot pull any `nginx:bad*` image."""
    with KubeSim(ready_delay=READY_DELAY, token=TOKEN, unpullable=["nginx:bad*"]) as running:
        yield running


@pytest.fixture
def executor(sim: KubeSim) -> K8sExecutor:
    """The executor of a worker whose `dev` endpoint is the cluster."""
    return K8sExecutor(lookup(endpoint(sim.url)))


def last(outcomes: list[Outcome]) -> Outcome:
    return outcomes[-1]


def succeeded(outcomes: list[Outcome]) -> dict[str, Any]:
    """The output of a run that must have succeeded."""
    outcome = outcomes[-1]
    assert isinstance(outcome, Succeeded), outcome
    return dict(outcome.output)


def failed(outcomes: list[Outcome]) -> Failed:
    outcome = outcomes[-1]
    assert isinstance(outcome, Failed), outcome
    return outcome


def release(executor: K8sExecutor, image: str) -> dict[str, Any]:
    """APPLY the release with `image`, then VERIFY it; the APPLY's output."""
    output = succeeded(run(executor, {"action": "APPLY", "yaml": release_yaml(image)}))
    succeeded(run(executor, {"action": "VERIFY", **ROLLOUT}))
    return output


def test_apply_of_a_release_creates_every_object_and_reports_a_first_release(executor: K8sExecutor) -> None:
    # When a Namespace, a Service and a Deployment are applied in one multi-document YAML (action in any case)
    output = succeeded(run(executor, {"action": "apply", "yaml": release_yaml("nginx:1.25")}))

    # Then each object is in the response as the cluster returned it, by kind and name
    response = output["response"]
    assert response["namespaces"]["demo"]["status"]["phase"] == "Active"
    assert response["services"]["web"]["spec"]["clusterIP"]
    deployment = response["deployments"]["web"]
    assert (
        deployment["metadata"]["uid"]
        and deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    )
    assert output["changes"] == ["namespace/demo created", "service/web created", "deployment/web created"]

    # And the Deployment is a first release: nothing was replaced
    first_release = {"previousImage": "", "previousRevision": "", "revision": "1", "image": "nginx:1.25"}
    assert {key: output[key] for key in first_release} == first_release
    assert output["deployments"] == {"web": first_release}


def test_verify_waits_for_the_rollout_then_succeeds(executor: K8sExecutor) -> None:
    # Given a Deployment just applied
    succeeded(run(executor, {"action": "APPLY", "yaml": release_yaml("nginx:1.25")}))

    # When it is verified
    outcomes = run(executor, {"action": "VERIFY", **ROLLOUT})

    # Then the task waited (never sleeping: a short countdown and the time it started in its state), then succeeded
    waiting = [outcome for outcome in outcomes if isinstance(outcome, Waiting)]
    assert waiting and all(0 < outcome.countdown <= 1 for outcome in waiting)
    assert waiting[0].message.startswith('Waiting for deployment "web"')
    assert len({outcome.state["memory"]["startedAt"] for outcome in waiting}) == 1
    output = succeeded(outcomes)
    assert output["status"] == 'deployment "web" successfully rolled out'
    assert (output["revision"], output["image"]) == ("1", "nginx:1.25")
    assert output["response"]["deployments"]["web"]["status"]["availableReplicas"] == 2


def test_a_second_release_reports_the_image_and_revision_it_replaced(executor: K8sExecutor) -> None:
    # Given nginx:1.25 rolled out
    release(executor, "nginx:1.25")

    # When the release is applied with nginx:1.26
    output = succeeded(run(executor, {"action": "APPLY", "yaml": release_yaml("nginx:1.26")}))

    # Then it says what it replaced, and only the Deployment changed
    assert (output["previousImage"], output["previousRevision"]) == ("nginx:1.25", "1")
    assert (output["image"], output["revision"]) == ("nginx:1.26", "2")
    assert output["changes"] == ["namespace/demo unchanged", "service/web unchanged", "deployment/web configured"]

    # And the rollout ends on revision 2
    verified = succeeded(run(executor, {"action": "VERIFY", **ROLLOUT}))
    assert (verified["revision"], verified["image"]) == ("2", "nginx:1.26")


def test_applying_the_same_release_again_changes_nothing(executor: K8sExecutor) -> None:
    # Given a release rolled out
    release(executor, "nginx:1.25")
    got = succeeded(run(executor, {"action": "GET", "yaml": deployment_yaml("nginx:1.25")}))
    version = got["response"]["deployments"]["web"]["metadata"]["resourceVersion"]

    # When it is applied again
    output = succeeded(run(executor, {"action": "APPLY", "yaml": release_yaml("nginx:1.25")}))

    # Then nothing was written: same resourceVersion and generation, the same image and revision before and after
    deployment = output["response"]["deployments"]["web"]
    assert (deployment["metadata"]["resourceVersion"], deployment["metadata"]["generation"]) == (version, 1)
    assert output["changes"] == ["namespace/demo unchanged", "service/web unchanged", "deployment/web unchanged"]
    before_after = (output["previousImage"], output["image"], output["previousRevision"], output["revision"])
    assert before_after == ("nginx:1.25", "nginx:1.25", "1", "1")


def test_a_release_that_never_becomes_ready_fails_verify_and_rollback_restores_the_previous_one(
    executor: K8sExecutor,
) -> None:
    # Given nginx:1.25 rolled out, then an image the cluster cannot pull applied
    release(executor, "nginx:1.25")
    succeeded(run(executor, {"action": "APPLY", "yaml": release_yaml("nginx:bad-1")}))

    # When it is verified
    verify = failed(run(executor, {"action": "VERIFY", **ROLLOUT}))

    # Then it fails on the progress deadline, naming the deployment and why its pods do not run
    assert 'deployment "web" exceeded its progress deadline' in verify.message
    assert "has timed out progressing" in verify.message
    assert "ImagePullBackOff" in verify.message or "ErrImagePull" in verify.message
    assert verify.output is not None and verify.output["image"] == "nginx:bad-1"

    # When the Deployment is rolled back
    rollback = succeeded(run(executor, {"action": "ROLLBACK", **ROLLOUT}))

    # Then it runs the previous template again, and says what it replaced
    assert rollback["rolledBack"] is True and rollback["rolledBackTo"] == "1"
    assert (rollback["previousImage"], rollback["previousRevision"]) == ("nginx:bad-1", "2")
    assert (rollback["image"], rollback["revision"]) == ("nginx:1.25", "3")
    assert rollback["message"] == "rolled back deployment web to revision 1 (image nginx:1.25)"

    # And the rollout of the restored template completes
    verified = succeeded(run(executor, {"action": "VERIFY", **ROLLOUT}))
    assert (verified["image"], verified["revision"]) == ("nginx:1.25", "3")


def test_rollback_to_a_given_revision(executor: K8sExecutor) -> None:
    # Given three releases
    for image in ("nginx:1.25", "nginx:1.26", "nginx:1.27"):
        release(executor, image)

    # When the Deployment is rolled back to revision 1 (given as text, as a binding would give it)
    output = succeeded(run(executor, {"action": "ROLLBACK", **ROLLOUT, "revision": "1"}))

    # Then it runs revision 1's image, replacing 1.27
    assert (output["rolledBackTo"], output["image"], output["previousImage"]) == ("1", "nginx:1.25", "nginx:1.27")
    verified = succeeded(run(executor, {"action": "VERIFY", **ROLLOUT}))
    assert (verified["image"], verified["revision"]) == ("nginx:1.25", "4")


def test_rollback_to_the_revision_already_running_is_a_no_op(executor: K8sExecutor) -> None:
    # Given two releases
    release(executor, "nginx:1.25")
    second = release(executor, "nginx:1.26")

    # When the Deployment is rolled back to the revision it runs
    output = succeeded(run(executor, {"action": "ROLLBACK", **ROLLOUT, "revision": 2}))

    # Then nothing was done, and the output says so
    assert output["rolledBack"] is False
    assert output["message"] == "skipped rollback (current template already matches revision 2)"
    assert output["image"] == output["previousImage"] == "nginx:1.26"
    deployment = output["response"]["deployments"]["web"]
    assert deployment["metadata"]["generation"] == second["response"]["deployments"]["web"]["metadata"]["generation"]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({}, 'no rollout history found for deployment "web"'),
        ({"revision": 7}, 'deployment "web" has no revision 7 in its history (revisions: 1)'),
        ({"deployment": "api"}, "Deployment demo/api does not exist"),
    ],
)
def test_rollback_fails_clearly_when_there_is_nothing_to_go_back_to(
    executor: K8sExecutor, extra: dict[str, Any], problem: str
) -> None:
    # Given a single release
    release(executor, "nginx:1.25")

    # When a rollback has no previous revision, no such revision, or no such Deployment, Then it fails saying so
    outcome = failed(run(executor, {"action": "ROLLBACK", **ROLLOUT, **extra}))
    assert problem in outcome.message


DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/demo/deployments/web"


@contextmanager
def stale_front(target: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A plain-HTTP server in front of the API at `target` that misreports the Deployment `demo/web` like a server
    whose generation went backwards: once `frozen["status"]` is set, its GETs answer that status and a generation
    no newer than its `observedGeneration`, so an earlier rollout looks like the current one. Yields its URL and
    the `frozen` map."""
    upstream = urlsplit(target)
    frozen: dict[str, Any] = {}

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            connection = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=10)
            headers = {key: value for key, value in self.headers.items() if key.lower() != "host"}
            connection.request(self.command, self.path, body=body or None, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            connection.close()
            if self.command == "GET" and self.path.split("?")[0] == DEPLOYMENT_PATH and "status" in frozen:
                deployment = json.loads(data)
                deployment["status"] = frozen["status"]
                deployment["metadata"]["generation"] = frozen["status"]["observedGeneration"]
                data = json.dumps(deployment).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.getheader("Content-Type") or "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", frozen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _web(url: str) -> dict[str, Any]:
    """The Deployment `demo/web` as the API at `url` answers it."""
    cluster = ClusterClients().client(endpoint(url))
    return cluster.get(cluster.ref("apps/v1", "Deployment", "web", "demo"))


def _new_template_available(url: str, image: str) -> bool:
    """Whether, on the cluster at `url`, the ReplicaSet of `image` has both pods available and the others none."""
    deployment = _web(url)
    sets = ClusterClients().client(endpoint(url)).replica_sets(deployment)
    new = [rs for rs in sets if same_template(rs["spec"]["template"], deployment["spec"]["template"])]
    old = [rs for rs in sets if rs not in new]
    return (
        len(new) == 1
        and image in json.dumps(new[0]["spec"]["template"])
        and (new[0].get("status") or {}).get("availableReplicas") == 2
        and not any((rs.get("status") or {}).get("replicas") for rs in old)
    )


@pytest.mark.parametrize("bound", [False, True], ids=["template", "template-and-revision"])
def test_verify_waits_for_the_deployed_template_even_when_the_server_misreports_the_generation(
    sim: KubeSim, executor: K8sExecutor, bound: bool
) -> None:
    # Given release nginx:1.25 rolled out, and a front to the cluster that from now on answers the Deployment with
    # that rollout's complete status and a generation that does not exceed it
    release(executor, "nginx:1.25")
    with stale_front(sim.url) as (url, frozen):
        frozen["status"] = _web(sim.url)["status"]

        # When nginx:1.26 is applied, and verified through the misreporting front (bound to the APPLY's revision,
        # as a pipeline binds it, or not)
        applied = succeeded(run(executor, {"action": "APPLY", "yaml": release_yaml("nginx:1.26")}))
        looks = _web(url)
        task = {"action": "VERIFY", **ROLLOUT, **({"revision": applied["revision"]} if bound else {})}
        available_while_waiting: list[bool] = []
        outcomes = run(
            K8sExecutor(lookup(endpoint(url))),
            task,
            between=lambda _: available_while_waiting.append(_new_template_available(sim.url, "nginx:1.26")),
        )

    # Then the Deployment looked rolled out from its status alone, yet VERIFY waited for the new ReplicaSet ...
    assert applied["revision"] == "2"
    assert rollout_status(looks).complete
    assert available_while_waiting and available_while_waiting[0] is False
    assert any("ReplicaSet" in outcome.message for outcome in waits(outcomes))
    # ... and succeeded only once nginx:1.26's pods were really all available and the old ones gone
    output = succeeded(outcomes)
    assert _new_template_available(sim.url, "nginx:1.26")
    assert (output["revision"], output["image"]) == ("2", "nginx:1.26")


def test_verify_fails_when_the_rollout_does_not_complete_within_the_timeout(executor: K8sExecutor) -> None:
    # Given a Deployment that cannot pull its image and has a long progress deadline
    yaml_text = "---\n".join([namespace_yaml(), deployment_yaml("nginx:bad-2", deadline=600)])
    succeeded(run(executor, {"action": "APPLY", "yaml": yaml_text}))

    # When it is verified with a 1 s timeout
    outcomes = run(executor, {"action": "VERIFY", **ROLLOUT, "timeout": 1})

    # Then it waited, then failed when the time was up, saying where the rollout stood
    assert isinstance(outcomes[0], Waiting)
    outcome = failed(outcomes)
    assert outcome.message.startswith("rollout of deployment web did not complete within 1 s: Waiting for deployment")
    assert all(outcome.countdown <= 1 for outcome in outcomes if isinstance(outcome, Waiting))


def test_create_fails_on_an_existing_object_unless_told_to_continue(executor: K8sExecutor) -> None:
    # Given a release created
    created = succeeded(run(executor, {"action": "CREATE", "yaml": release_yaml("nginx:1.25")}))
    assert created["changes"] == ["namespace/demo created", "service/web created", "deployment/web created"]
    assert created["previousImage"] == "" and created["revision"] == "1"

    # When it is created again, Then the task fails on the first object that exists
    conflict = failed(run(executor, {"action": "CREATE", "yaml": release_yaml("nginx:1.25")}))
    assert "create Namespace demo" in conflict.message and "already exists" in conflict.message
    assert "continueOnConflict" in conflict.message

    # When it is created again with continueOnConflict, Then existing objects are taken as they are
    output = succeeded(
        run(executor, {"action": "CREATE", "yaml": release_yaml("nginx:1.25"), "continueOnConflict": True})
    )
    assert output["changes"] == [
        "namespace/demo already exists",
        "service/web already exists",
        "deployment/web already exists",
    ]
    assert (
        output["response"]["deployments"]["web"]["metadata"]["uid"]
        == created["response"]["deployments"]["web"]["metadata"]["uid"]
    )
    assert "previousImage" not in output  # the task changed no Deployment


def test_get_and_delete(executor: K8sExecutor) -> None:
    # Given a release
    release(executor, "nginx:1.25")
    objects = "---\n".join([service_yaml(), deployment_yaml("nginx:1.25")])

    # When its Service and Deployment are fetched
    got = succeeded(run(executor, {"action": "GET", "yaml": objects}))

    # Then they are in the response as the cluster has them
    assert got["response"]["services"]["web"]["spec"]["ports"][0]["port"] == 80
    assert got["response"]["deployments"]["web"]["status"]["availableReplicas"] == 2

    # When they are deleted along with a ConfigMap that never existed
    ghost = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ghost, namespace: demo}\n"
    deleted = succeeded(run(executor, {"action": "DELETE", "yaml": "---\n".join([objects, ghost])}))

    # Then the task succeeded, saying what it deleted and what was already gone
    assert deleted["changes"] == [
        "service/web deleted",
        "deployment/web deleted",
        "configmap/ghost not found (already gone)",
    ]

    # And fetching them now fails, naming the missing object
    missing = failed(run(executor, {"action": "GET", "yaml": objects}))
    assert "Service demo/web does not exist" in missing.message


def test_documents_without_a_namespace_go_to_the_tasks_namespace(executor: K8sExecutor) -> None:
    # Given a namespace
    succeeded(run(executor, {"action": "APPLY", "yaml": namespace_yaml()}))
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: blue}\n"

    # When a document that names no namespace is applied with the task's namespace, and without
    inside = succeeded(run(executor, {"action": "APPLY", "yaml": config, "namespace": "demo"}))
    outside = succeeded(run(executor, {"action": "APPLY", "yaml": config}))

    # Then it went to the task's namespace, else to `default`, as `kubectl -n` does
    assert inside["response"]["configmaps"]["settings"]["metadata"]["namespace"] == "demo"
    assert outside["response"]["configmaps"]["settings"]["metadata"]["namespace"] == "default"


def test_a_burst_of_503_is_retried_with_a_growing_backoff_then_succeeds(sim: KubeSim, executor: K8sExecutor) -> None:
    # Given a cluster that answers the next three requests with 503
    sim.inject_faults(503, 3)

    # When a release is applied
    outcomes = run(executor, {"action": "APPLY", "yaml": release_yaml("nginx:1.25")})

    # Then the task waited three times, longer each time, counting its retries from one first failure
    waiting = waits(outcomes)
    assert [outcome.countdown for outcome in waiting] == [0.5, 1.0, 2.0]
    assert [outcome.state["retries"] for outcome in waiting] == [1, 2, 3]
    assert len({outcome.state["failingSince"] for outcome in waiting}) == 1
    assert "503 ServiceUnavailable" in waiting[0].message and waiting[0].message.endswith("; retry 1 in 0.5 s")
    assert waiting[2].message.endswith("; retry 3 in 2 s")

    # And then it succeeded, reporting the release as if nothing had happened
    output = succeeded(outcomes)
    assert output["previousImage"] == "" and output["image"] == "nginx:1.25"


def test_throttling_waits_at_least_as_long_as_the_server_asks(sim: KubeSim, executor: K8sExecutor) -> None:
    # Given a cluster that throttles the next two requests with 429 and `Retry-After: 2`
    sim.inject_faults(429, 2, retry_after=2)

    # When a release is applied
    outcomes = run(executor, {"action": "APPLY", "yaml": release_yaml("nginx:1.25")})

    # Then each wait is the 2 s the server asked for, not the backoff's shorter 0.5 s and 1 s, and the message says why
    waiting = waits(outcomes)
    assert [outcome.countdown for outcome in waiting] == [2.0, 2.0]
    assert "429 TooManyRequests" in waiting[0].message
    assert waiting[0].message.endswith("; retry 1 in 2 s (Retry-After 2 s)")

    # And then it succeeded
    assert succeeded(outcomes)["image"] == "nginx:1.25"


def test_an_unreachable_cluster_is_retried_for_two_minutes_then_fails_with_the_last_error() -> None:
    # Given an endpoint where nothing listens, and a worker whose clock the test moves
    clock = ManualClock()
    executor = K8sExecutor(lookup(endpoint("http://127.0.0.1:9")), clock=clock)

    # When a release is applied
    outcomes = run(executor, {"action": "APPLY", "yaml": release_yaml("nginx:1.25")}, clock=clock)

    # Then the task waited 0.5, 1, 2, 4, 8, then 15 s at a time until two minutes had passed, never past them
    countdowns = [outcome.countdown for outcome in waits(outcomes)]
    assert countdowns == [0.5, 1.0, 2.0, 4.0, 8.0] + [15.0] * 6 + [14.5]
    assert sum(countdowns) == 120.0

    # And then it failed with the last error, saying how long it kept trying
    outcome = failed(outcomes)
    assert "http://127.0.0.1:9" in outcome.message and "cannot connect" in outcome.message
    assert outcome.message.endswith("(still failing after 120 s of retries)")


def test_a_cluster_restarted_within_the_budget_gets_the_task_through(sim: KubeSim) -> None:
    # Given a worker that has already talked to the cluster (its connection is kept alive), on a clock the test moves
    clock, url = ManualClock(), sim.url
    executor = K8sExecutor(lookup(endpoint(url)), clock=clock)
    succeeded(run(executor, {"action": "APPLY", "yaml": namespace_yaml()}, clock=clock))

    # And the cluster's API server goes down
    sim.stop()

    # When a release is applied, and the API server is back on the same port after three retries
    def restart_after_three(waiting: Waiting) -> None:
        if waiting.state["retries"] == 3:
            sim.start()

    outcomes = run(
        executor, {"action": "APPLY", "yaml": release_yaml("nginx:1.25")}, clock=clock, between=restart_after_three
    )

    # Then the task waited while nothing answered, first the kept connection dropping, then no connection at all
    waiting = waits(outcomes)
    assert [outcome.countdown for outcome in waiting] == [0.5, 1.0, 2.0]
    assert "the connection failed" in waiting[0].message and "Remote end closed connection" in waiting[0].message
    assert "cannot connect" in waiting[-1].message and url in waiting[-1].message

    # And then it went through, with the namespace the cluster kept across its restart
    output = succeeded(outcomes)
    assert output["changes"] == ["namespace/demo unchanged", "service/web created", "deployment/web created"]


def test_a_cluster_that_stays_down_fails_the_task_when_the_budget_is_spent(sim: KubeSim) -> None:
    # Given a worker with a 30 s retry budget, on a clock the test moves, and a cluster whose API server is down
    clock, url = ManualClock(), sim.url
    executor = K8sExecutor(lookup(endpoint(url)), budget=30.0, clock=clock)
    sim.stop()

    # When a release is applied
    outcomes = run(executor, {"action": "APPLY", "yaml": release_yaml("nginx:1.25")}, clock=clock)

    # Then the task retried until the 30 s were spent, the last wait ending as they ran out
    countdowns = [outcome.countdown for outcome in waits(outcomes)]
    assert countdowns == [0.5, 1.0, 2.0, 4.0, 8.0, 14.5]
    assert waits(outcomes)[-1].message.endswith("; retry 6 in 14.5 s")

    # And it failed naming the cluster, why, and how long it kept trying
    outcome = failed(outcomes)
    assert url in outcome.message and "cannot connect" in outcome.message
    assert outcome.message.endswith("(still failing after 30 s of retries)")


def test_an_answer_ends_the_failure_streak(sim: KubeSim, executor: K8sExecutor) -> None:
    # Given a Deployment whose rollout cannot complete, and a cluster that answers the next two requests with 503
    yaml_text = "---\n".join([namespace_yaml(), deployment_yaml("nginx:bad-3", deadline=600)])
    succeeded(run(executor, {"action": "APPLY", "yaml": yaml_text}))
    sim.inject_faults(503, 2)

    # When it is verified, and the cluster fails once more after it first answers
    answered: list[Waiting] = []

    def fail_again_once(waiting: Waiting) -> None:
        if waiting.state["retries"] == 0 and not answered:
            answered.append(waiting)
            sim.inject_faults(503, 1)

    outcomes = run(executor, {"action": "VERIFY", **ROLLOUT, "timeout": 1}, between=fail_again_once)

    # Then the answer ended the first streak: the later failure is retry 1 again, with its own first failure
    retries = [outcome.state["retries"] for outcome in waits(outcomes)]
    assert retries[:4] == [1, 2, 0, 1]
    first, second = waits(outcomes)[0], waits(outcomes)[3]
    assert "failingSince" not in waits(outcomes)[2].state
    assert second.state["failingSince"] > first.state["failingSince"]
    assert second.countdown == 0.5 and second.message.endswith("; retry 1 in 0.5 s")

    # And the VERIFY itself still ended on its own timeout
    assert failed(outcomes).message.startswith("rollout of deployment web did not complete within 1 s")


def test_a_wrong_token_fails_at_once(sim: KubeSim) -> None:
    # Given an endpoint whose token the cluster does not take
    executor = K8sExecutor(lookup(endpoint(sim.url, token="stolen")))

    # When a release is applied, Then the first attempt fails, saying the token was refused
    outcomes = run(executor, {"action": "APPLY", "yaml": release_yaml("nginx:1.25")})
    assert len(outcomes) == 1
    assert "the endpoint's token was refused (401)" in failed(outcomes).message


@pytest.mark.parametrize(
    ("role", "problem"),
    [
        ("", "the task names no kubernetesServer endpoint"),
        ("prod", "the kubernetesServer endpoint prod cannot be used: endpoint prod does not exist"),
    ],
)
def test_a_missing_endpoint_fails_clearly(executor: K8sExecutor, role: str, problem: str) -> None:
    # When the task has no kubernetesServer endpoint, or one that does not exist, Then it fails saying so
    outcome = failed(run(executor, {"action": "VERIFY", **ROLLOUT}, role=role))
    assert problem in outcome.message


@pytest.mark.parametrize(
    ("task_input", "problem"),
    [
        ({"action": "SCALE"}, "action must be one of GET, CREATE, APPLY, DELETE, ROLLBACK, VERIFY, not 'SCALE'"),
        ({"action": "VERIFY", **ROLLOUT, "timeout": "abc"}, "timeout must be a number of seconds above 0, not 'abc'"),
        ({"action": "ROLLBACK", **ROLLOUT, "revision": "two"}, "revision must be a revision number"),
        ({"action": "VERIFY", "deployment": "web"}, "namespace must name the Deployment's namespace for VERIFY"),
        ({"action": "APPLY", "yaml": "kind: [unclosed"}, "yaml is not valid YAML"),
        ({"action": "APPLY", "yaml": "---\n---\n"}, "yaml holds no Kubernetes object"),
        (
            {"action": "APPLY", "yaml": "apiVersion: v1\nkind: ConfigMap\n"},
            "yaml[0] must be a Kubernetes object",
        ),
        ({"action": "CREATE", "yaml": service_yaml(), "continueOnConflict": "maybe"}, "continueOnConflict must be"),
    ],
)
def test_input_that_cannot_be_used_fails_naming_it(
    executor: K8sExecutor, task_input: dict[str, Any], problem: str
) -> None:
    # When the task's input holds a value of the wrong kind, Then it fails at once naming the value
    outcomes = run(executor, task_input)
    assert len(outcomes) == 1 and problem in failed(outcomes).message


def test_an_unknown_kind_fails_clearly(executor: K8sExecutor) -> None:
    # When a document's kind is not served by the cluster, Then the task fails naming it
    widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: demo}\n"
    outcome = failed(run(executor, {"action": "APPLY", "yaml": widget}))
    assert "unknown kind Widget (apiVersion example.com/v1)" in outcome.message


def test_an_unexpected_error_fails_the_task_instead_of_escaping(caplog: pytest.LogCaptureFixture) -> None:
    # Given an endpoint store that breaks in a way nobody planned for
    def broken(endpoint_id: str) -> Endpoint:
        raise RuntimeError("the endpoint store is on fire")

    # When a task runs, Then it fails with a message that says what happened
    outcome = failed(run(K8sExecutor(broken), {"action": "VERIFY", **ROLLOUT}))
    assert outcome.message == "K8S VERIFY failed unexpectedly: RuntimeError: the endpoint store is on fire"
