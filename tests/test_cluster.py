"""The Kubernetes adapter against kubesim over HTTP, through the official client: credentials, failures in our
error tree, and the generic verbs (apply above all)."""

from __future__ import annotations

import datetime
import email.utils
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_support import READY_DELAY, TOKEN, deployment_yaml, endpoint, self_signed, service_yaml, tls_front

from kubesim import KubeSim
from orchestrator.errors import ClusterBusy, ClusterError, ClusterRefused, ClusterUnreachable
from orchestrator.rollout import rollout_status
from workers.cluster import ClusterClient, ClusterClients, ClusterThrottled, retry_after


@pytest.fixture
def sim() -> Iterator[KubeSim]:
    """A cluster that takes only TOKEN, with a `demo` namespace."""
    with KubeSim(ready_delay=READY_DELAY, token=TOKEN) as running:
        client = ClusterClient.connect(endpoint(running.url))
        client.create(client.ref("v1", "Namespace", "demo"), {"metadata": {"name": "demo"}})
        client.close()
        yield running


@pytest.fixture
def cluster(sim: KubeSim) -> Iterator[ClusterClient]:
    client = ClusterClient.connect(endpoint(sim.url))
    yield client
    client.close()


def doc(text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def test_a_client_built_from_an_endpoint_reads_with_its_token(cluster: ClusterClient) -> None:
    # When the client reads a namespace that exists and one that does not
    found = cluster.read(cluster.ref("v1", "Namespace", "demo"))
    missing = cluster.read(cluster.ref("v1", "Namespace", "nope"))

    # Then the token was taken and the missing one reads as None
    assert found is not None and found["metadata"]["name"] == "demo" and found["status"]["phase"] == "Active"
    assert missing is None


def test_a_wrong_token_is_refused_with_401(sim: KubeSim) -> None:
    # Given an endpoint whose token the cluster does not take
    client = ClusterClient.connect(endpoint(sim.url, token="stolen"))

    # When it reads anything, Then the error says the token was refused, with the HTTP status and reason kept
    with pytest.raises(ClusterRefused) as caught:
        client.read(client.ref("v1", "Namespace", "demo"))
    assert caught.value.status == 401 and caught.value.reason == "Unauthorized"
    assert "the endpoint's token was refused (401)" in caught.value.message and sim.url in caught.value.message
    assert "stolen" not in caught.value.message


def test_an_unreachable_url_is_reported_with_the_url() -> None:
    # Given an endpoint where nothing listens
    client = ClusterClient.connect(endpoint("http://127.0.0.1:9"))

    # When it reads, Then the error names the URL, the object and that no connection could be made
    with pytest.raises(ClusterUnreachable) as caught:
        client.read(client.ref("apps/v1", "Deployment", "web", "demo"))
    message = caught.value.message
    assert "http://127.0.0.1:9" in message and "Deployment demo/web" in message and "cannot connect" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("status", "reason"), [(500, "InternalError"), (503, "ServiceUnavailable"), (429, "TooManyRequests")]
)
def test_server_errors_and_throttling_are_busy(sim: KubeSim, cluster: ClusterClient, status: int, reason: str) -> None:
    # Given a cluster answering the next request with an error
    sim.inject_faults(status, 1)

    # When the client reads, Then the error is ClusterBusy (worth asking again), with status and reason
    with pytest.raises(ClusterBusy) as caught:
        cluster.read(cluster.ref("v1", "Namespace", "demo"))
    assert caught.value.status == status and caught.value.reason == reason
    assert f"({status} {reason})" in caught.value.message
    assert not isinstance(caught.value, ClusterThrottled)  # the answer asked for no particular wait

    # And the next request gets through
    assert cluster.read(cluster.ref("v1", "Namespace", "demo")) is not None


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_answer_carries_the_wait_its_retry_after_asks(sim: KubeSim, cluster: ClusterClient, status: int) -> None:
    # Given a cluster answering the next write with an error and `Retry-After: 2`
    sim.inject_faults(status, 1, retry_after=2)

    # When the client writes, Then the error is still ClusterBusy, and carries the 2 s the server asked for
    with pytest.raises(ClusterThrottled) as caught:
        cluster.create(cluster.ref("v1", "ConfigMap", "settings", "demo"), {"metadata": {"name": "settings"}})
    assert isinstance(caught.value, ClusterBusy) and caught.value.status == status
    assert caught.value.retry_after == 2.0


def test_a_retry_after_given_as_a_date_is_read_against_the_answers_own_date(
    sim: KubeSim, cluster: ClusterClient
) -> None:
    # Given a cluster answering the next request with 503 and `Retry-After` as an HTTP-date 30 s ahead
    sim.inject_faults(503, 1, retry_after=email.utils.formatdate(time.time() + 30, usegmt=True))

    # When the client reads, Then the wait is those 30 s (both dates are whole seconds, so give or take one)
    with pytest.raises(ClusterThrottled) as caught:
        cluster.read(cluster.ref("v1", "Namespace", "demo"))
    assert 28.0 <= caught.value.retry_after <= 31.0


@pytest.mark.parametrize(
    ("value", "date", "seconds"),
    [
        ("2", None, 2.0),
        (" 120 ", None, 120.0),
        ("1.5", None, 1.5),
        ("-5", None, 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", None, 10.0),  # no Date: measured from the worker's clock
        ("Wed, 21 Oct 2015 07:28:30 GMT", "not a date", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # already past
        (None, None, None),
        ("", None, None),
        ("soon", None, None),
        ("nan", None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    value: str | None, date: str | None, seconds: float | None
) -> None:
    # Given a worker whose clock reads 07:28:20 GMT on 21 Oct 2015
    now = datetime.datetime(2015, 10, 21, 7, 28, 20, tzinfo=datetime.UTC).timestamp()

    # When a Retry-After header is read, Then it is the seconds to wait, or None when it says none
    assert retry_after(value, date, now) == seconds


def test_forbidden_is_refused(sim: KubeSim, cluster: ClusterClient) -> None:
    # Given a cluster that forbids the next request
    sim.inject_faults(403, 1)

    # When the client asks, Then it is ClusterRefused with 403
    with pytest.raises(ClusterRefused) as caught:
        cluster.read(cluster.ref("v1", "Namespace", "demo"))
    assert caught.value.status == 403 and "(403)" in caught.value.message


def test_apply_creates_then_changes_nothing_when_applied_again(cluster: ClusterClient) -> None:
    # Given a Deployment document applied once, and rolled out (so the controller has nothing left to write)
    document = doc(deployment_yaml("nginx:1.25"))
    ref = cluster.ref_of(document)
    first = cluster.apply(ref, document)
    wait_until(lambda: rollout_status(cluster.get(ref)).complete)
    settled = cluster.get(ref)

    # When it is applied again
    second = cluster.apply(ref, document)

    # Then the first created it and the second wrote nothing: same resourceVersion, same generation
    assert (first.change, first.before) == ("created", None)
    assert second.change == "unchanged"
    assert second.object["metadata"]["resourceVersion"] == settled["metadata"]["resourceVersion"]
    assert cluster.get(ref)["metadata"]["resourceVersion"] == settled["metadata"]["resourceVersion"]
    assert second.object["metadata"]["generation"] == first.object["metadata"]["generation"] == 1


def test_apply_of_a_changed_deployment_patches_it(cluster: ClusterClient) -> None:
    # Given a Deployment that runs nginx:1.25
    ref = cluster.ref("apps/v1", "Deployment", "web", "demo")
    cluster.apply(ref, doc(deployment_yaml("nginx:1.25")))

    # When the document with nginx:1.26 and 3 replicas is applied
    applied = cluster.apply(ref, doc(deployment_yaml("nginx:1.26", replicas=3)))

    # Then the Deployment was patched in place: new generation, image and replicas, same uid
    assert applied.change == "configured" and applied.before is not None
    live = cluster.get(ref)
    assert live["metadata"]["uid"] == applied.before["metadata"]["uid"]
    assert live["metadata"]["generation"] == 2 and live["spec"]["replicas"] == 3
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"


def test_apply_ignores_the_metadata_the_server_owns(cluster: ClusterClient) -> None:
    # Given a Service as the cluster returned it (resourceVersion, uid, status and all)
    ref = cluster.ref("v1", "Service", "web", "demo")
    returned = cluster.apply(ref, doc(service_yaml())).object

    # When that object is applied back
    again = cluster.apply(ref, returned)

    # Then nothing changed and nothing conflicted
    assert again.change == "unchanged"


def test_creating_in_a_missing_namespace_says_the_namespace_does_not_exist(cluster: ClusterClient) -> None:
    # When a Service is created in a namespace that does not exist
    with pytest.raises(ClusterError) as caught:
        cluster.create(cluster.ref("v1", "Service", "web", "nowhere"), doc(service_yaml(namespace="nowhere")))

    # Then the error says so
    assert "namespace nowhere does not exist" in caught.value.message and caught.value.status == 404


def test_create_of_an_existing_object_fails_with_already_exists(cluster: ClusterClient) -> None:
    # Given a Service
    ref = cluster.ref("v1", "Service", "web", "demo")
    cluster.create(ref, doc(service_yaml()))

    # When it is created again, Then the error carries the reason AlreadyExists
    with pytest.raises(ClusterError) as caught:
        cluster.create(ref, doc(service_yaml()))
    assert caught.value.reason == "AlreadyExists" and caught.value.status == 409
    assert "create Service demo/web" in caught.value.message and "already exists" in caught.value.message


def test_an_unknown_kind_is_a_clear_error(cluster: ClusterClient) -> None:
    # When a kind the cluster does not serve is named, Then the error says which and where
    with pytest.raises(ClusterError) as caught:
        cluster.ref("v1", "Frobnicator", "x", "demo")
    assert "unknown kind Frobnicator (apiVersion v1)" in caught.value.message
    assert cluster.url in caught.value.message and caught.value.reason == "UnknownKind"

    # And an API group the cluster does not have says the same
    with pytest.raises(ClusterError, match=r"unknown kind Widget \(apiVersion example.com/v1\)"):
        cluster.ref("example.com/v1", "Widget", "x", "demo")


def test_delete_removes_an_object_and_reports_one_already_gone(cluster: ClusterClient) -> None:
    # Given a Service
    ref = cluster.ref("v1", "Service", "web", "demo")
    cluster.create(ref, doc(service_yaml()))

    # When it is deleted twice
    first = cluster.delete(ref)
    second = cluster.delete(ref)

    # Then the first deleted it and the second found nothing to delete
    assert first is not None and second is None
    assert cluster.read(ref) is None


def test_replica_sets_of_a_deployment_carry_their_revisions(cluster: ClusterClient) -> None:
    # Given a Deployment rolled out twice, the second time once the first rollout has its ReplicaSet (as on a
    # real cluster, two changes within one controller pass would make only the second template's)
    ref = cluster.ref("apps/v1", "Deployment", "web", "demo")

    def revisions() -> set[str]:
        found = cluster.replica_sets(cluster.get(ref))
        return {rs["metadata"]["annotations"].get("deployment.kubernetes.io/revision", "") for rs in found}

    cluster.apply(ref, doc(deployment_yaml("nginx:1.25")))
    wait_until(lambda: revisions() == {"1"})
    cluster.apply(ref, doc(deployment_yaml("nginx:1.26")))

    # When its ReplicaSets are listed (the controller makes them on its next pass)
    wait_until(lambda: revisions() == {"1", "2"})

    # Then there is one per template, each with its revision
    assert revisions() == {"1", "2"}


def test_a_kubeconfig_endpoint_reaches_the_cluster_with_its_token(sim: KubeSim) -> None:
    # Given an endpoint that is a kubeconfig with a token user
    kubeconfig = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sim", "cluster": {"server": sim.url}}],
            "users": [{"name": "ci", "user": {"token": TOKEN}}],
            "contexts": [{"name": "ci@sim", "context": {"cluster": "sim", "user": "ci"}}],
            "current-context": "ci@sim",
        }
    )
    client = ClusterClient.connect(endpoint("", token=None, kubeconfig=kubeconfig))

    # When it reads, Then it is in
    assert client.url == sim.url
    assert client.read(client.ref("v1", "Namespace", "demo")) is not None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kubeconfig": "clusters: [unclosed"}, "is not valid YAML"),
        ({"kubeconfig": "current-context: nowhere\n"}, "cannot be used"),
        (
            {
                "kubeconfig": "clusters: [{name: a, cluster: {server: 'http://x'}}]\n"
                "contexts: [{name: c, context: {cluster: b}}]\ncurrent-context: c\n"
            },
            r"kubeconfig\.contexts\[0\]\.context\.cluster: names 'b', which kubeconfig\.clusters does not hold",
        ),
        ({"url": "http://127.0.0.1:1", "token": "a\nb"}, "the token of endpoint dev must be one line"),
        ({"url": "https://127.0.0.1:1", "ca_data": "not base64 at all!"}, "neither base64 PEM nor PEM"),
        ({"url": ""}, "has neither a URL nor a kubeconfig"),
    ],
)
def test_unusable_credentials_are_clear_errors(fields: dict[str, Any], problem: str) -> None:
    # When a client is built from an endpoint whose credentials cannot be used, Then the error says why
    options = {"url": "", "token": None, **fields}
    with pytest.raises(ClusterError, match=problem) as caught:
        ClusterClient.connect(endpoint(**options))
    assert "endpoint dev" in caught.value.message


def test_a_kubeconfig_of_inline_data_trusts_its_ca_and_sends_its_token(sim: KubeSim, tmp_path: Path) -> None:
    # Given the cluster behind HTTPS with a self-signed certificate, and a kubeconfig with that certificate and a
    # token inline (the server named for TLS as the certificate does not name it, by its IP)
    cert, key, ca_data = self_signed(tmp_path)
    with tls_front(sim.url, cert, key) as url:
        cluster = {"server": url, "certificate-authority-data": ca_data, "tls-server-name": "127.0.0.1"}
        kubeconfig = yaml.safe_dump(
            {
                "clusters": [{"name": "sim", "cluster": cluster}],
                "users": [{"name": "ci", "user": {"token": TOKEN}}],
                "contexts": [{"name": "ci@sim", "context": {"cluster": "sim", "user": "ci"}}],
                "current-context": "ci@sim",
            }
        )
        client = ClusterClient.connect(endpoint("", token=None, kubeconfig=kubeconfig))

        # When it reads, Then it verified the server and got in
        assert client.read(client.ref("v1", "Namespace", "demo")) is not None
        client.close()


def test_a_https_endpoint_trusts_its_ca_data(sim: KubeSim, tmp_path: Path) -> None:
    # Given the cluster behind HTTPS with a self-signed certificate
    cert, key, ca_data = self_signed(tmp_path)
    with tls_front(sim.url, cert, key) as url:
        trusting = ClusterClient.connect(endpoint(url, ca_data=ca_data))
        doubting = ClusterClient.connect(endpoint(url, id="other"))

        # When an endpoint with the certificate as CA data reads, Then it gets through
        assert trusting.read(trusting.ref("v1", "Namespace", "demo")) is not None

        # And one without it cannot verify the server
        with pytest.raises(ClusterUnreachable, match=r"TLS failed.*CERTIFICATE_VERIFY_FAILED"):
            doubting.read(doubting.ref("v1", "Namespace", "demo"))


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_an_insecure_endpoint_skips_verification(sim: KubeSim, tmp_path: Path) -> None:
    # Given the cluster behind HTTPS with a certificate nobody trusts
    cert, key, _ = self_signed(tmp_path)
    with tls_front(sim.url, cert, key) as url:
        # When an insecure endpoint reads, Then it gets through
        client = ClusterClient.connect(endpoint(url, insecure=True))
        assert client.read(client.ref("v1", "Namespace", "demo")) is not None


def test_clients_are_kept_per_endpoint_until_it_changes(sim: KubeSim) -> None:
    # Given the client cache of a worker
    clients = ClusterClients()
    before = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    dev = endpoint(sim.url, updated_at=before)

    # When the same endpoint is asked for twice, then after it was updated
    first, again = clients.client(dev), clients.client(dev)
    updated = clients.client(endpoint(sim.url, updated_at=before + datetime.timedelta(seconds=1)))
    other = clients.client(endpoint(sim.url, name="prod", updated_at=before))

    # Then the client is reused until the endpoint changes, and each endpoint has its own
    assert first is again and updated is not first and other is not updated
    assert updated.read(updated.ref("v1", "Namespace", "demo")) is not None
    clients.close()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for something the cluster's controllers do on their own time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
