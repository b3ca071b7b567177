"""The endpoint probe against real kubesim clusters over HTTP: an answer, a refused token, a stopped cluster, and an
address the egress policy denies; what it says never holds the credentials."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_network

import pytest

from kubesim import KubeSim
from orchestrator.endpoints import Endpoint
from workers.probe import EndpointProber

TOKEN = "probe-test-token"


@pytest.fixture
def cluster() -> Iterator[KubeSim]:
    with KubeSim(ready_delay=0.1, token=TOKEN) as sim:
        yield sim


def kubernetes(url: str, token: str | None = TOKEN) -> Endpoint:
    return Endpoint(id="e1", name="prod-cluster", project="shop", type="kubernetes", url=url, token=token)


def test_a_cluster_that_takes_the_endpoints_token_answers(cluster: KubeSim) -> None:
    assert EndpointProber()(kubernetes(cluster.url)) == (True, "answered (HTTP 200 to GET /version)")


def test_a_wrong_or_missing_token_is_credentials_refused_and_never_repeated(cluster: KubeSim) -> None:
    # Given a cluster started with --token, and endpoints with a wrong token and with none
    prober = EndpointProber()

    # When each is probed
    wrong = prober(kubernetes(cluster.url, token="a-stolen-looking-token"))
    missing = prober(kubernetes(cluster.url, token=None))

    # Then both are refused credentials, and the token is not in what the probe says
    assert wrong == (False, "credentials refused (HTTP 401 to GET /version)")
    assert missing == wrong
    assert "a-stolen-looking-token" not in wrong[1]


def test_a_stopped_cluster_is_unreachable(cluster: KubeSim) -> None:
    # Given a cluster that stopped serving
    url = cluster.url
    cluster.stop()

    # Then the probe says it is unreachable, naming the request without its credentials
    ok, message = EndpointProber(timeout=2)(kubernetes(url))
    assert not ok
    assert message.startswith(f"unreachable: GET {url}/version failed") and TOKEN not in message


def test_an_address_the_egress_policy_denies_is_not_probed(cluster: KubeSim) -> None:
    # Given an egress policy that denies loopback (where the cluster listens)
    prober = EndpointProber(deny=(ip_network("127.0.0.0/8"),))

    # Then the probe never connects, and says why
    ok, message = prober(kubernetes(cluster.url))
    assert not ok and message.startswith("not probed: ") and "ROLLWAY_EGRESS_DENY" in message


def test_an_endpoint_whose_credentials_cannot_be_used_says_so_without_connecting() -> None:
    # Given CA data that is no certificate at all
    endpoint = Endpoint(
        id="e1",
        name="prod-cluster",
        project="shop",
        type="kubernetes",
        url="https://127.0.0.1:1",
        ca_data="bm90IGEgY2VydA==",
    )

    # Then the probe says its credentials cannot be used
    ok, message = EndpointProber()(endpoint)
    assert not ok and message.startswith("its credentials cannot be used: ") and "holds no PEM certificate" in message
