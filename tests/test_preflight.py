"""Rollback you can count on, through the API with a real worker and kubesim clusters over HTTP: a release whose
rollback could not run is refused with the reasons (409), `force` starts it anyway and says so in its events and
the audit trail, and the sweep keeps the rollback endpoints' probes fresh."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from kubesim import KubeSim
from orchestrator import preflight
from orchestrator.document import load_pipeline
from orchestrator.endpoints import Endpoint, Probe
from orchestrator.preflight import Preflight
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.webhooks import sign
from workers.probe import EndpointProber

from rollway_testing import SECRET_KEY, TOKEN, ServedApp, client_for, ended, wait_until

Doc = dict[str, Any]
CLUSTER_TOKEN = "prod-cluster-token"
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"
ROLLBACK = "Shop_Prod_Rollback"


@pytest.fixture
def prod() -> Iterator[KubeSim]:
    """The production cluster: it answers only its bearer token."""
    with KubeSim(ready_delay=0.1, token=CLUSTER_TOKEN) as sim:
        yield sim


def apply_namespace(endpoint: str) -> Doc:
    return {
        "type": "K8S",
        "endpoints": {"kubernetesServer": endpoint},
        "input": {"action": "APPLY", "yaml": NAMESPACE, "timeout": 30},
    }


def rollback_pipeline(*, enabled: bool = True, endpoint: str = "prod-rollback", **fields: Any) -> Doc:
    """The production rollback: it puts the namespace back through the rollback endpoint."""
    return {
        "name": ROLLBACK,
        "project": "shop",
        "enabled": enabled,
        "stageOrder": ["Undo"],
        "stages": {"Undo": {"taskOrder": ["Restore"], "tasks": {"Restore": apply_namespace(endpoint)}}},
        **fields,
    }


def release_pipeline(**link: Any) -> Doc:
    """The release: deploys to production through prod-cluster, its stage linked to the production rollback."""
    return {
        "name": "Shop",
        "project": "shop",
        "enabled": True,
        "input": {"tag": "1.25"},
        "stageOrder": ["Production"],
        "stages": {
            "Production": {
                "taskOrder": ["Deploy"],
                "tasks": {"Deploy": apply_namespace("prod-cluster")},
                "rollback": {"pipeline": ROLLBACK, **link},
            }
        },
    }


def endpoints_on(api: ServedApp, sim: KubeSim, rollback_token: str = CLUSTER_TOKEN) -> Doc:
    """prod-cluster (what the release deploys with) and prod-rollback (what its rollback uses) on `sim`."""
    api.create_at("/api/endpoints", {"name": "prod-cluster", "project": "shop", "url": sim.url, "token": CLUSTER_TOKEN})
    body = {"name": "prod-rollback", "project": "shop", "url": sim.url, "token": rollback_token}
    return api.create_at("/api/endpoints", body)


def trigger(client: httpx.Client, pipeline: Doc, **body: Any) -> httpx.Response:
    return client.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {}, **body})


def refused(answer: httpx.Response) -> list[str]:
    """The reasons of a refused trigger, checked to be a 409 in the API's error shape."""
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "rollback_not_ready" and "force" in error["message"], error
    return [item["message"] for item in error["details"]]


def executions_of(api: ServedApp, pipeline: Doc) -> list[Doc]:
    found: list[Doc] = api.http.get("/api/executions", params={"pipeline": pipeline["id"]}).json()
    return found


def events(api: ServedApp, execution_id: str) -> list[Doc]:
    found: list[Doc] = api.http.get(f"/api/executions/{execution_id}/events").json()
    return found


def test_a_release_whose_rollback_pipeline_is_disabled_is_refused_and_with_force_runs_and_says_so(
    api: ServedApp, worker: Any, prod: KubeSim
) -> None:
    # Given a release whose production rollback pipeline is disabled, and a developer
    endpoints_on(api, prod)
    api.create(rollback_pipeline(enabled=False))
    release = api.create(release_pipeline())
    developer = client_for(api, "developer", "dev-alice")

    # When the developer releases it
    answer = trigger(developer, release)

    # Then it is refused, naming the rollback pipeline, and nothing started
    assert refused(answer) == [f"rollback pipeline '{ROLLBACK}' is disabled"]
    assert executions_of(api, release) == []

    # When the developer forces it
    forced = trigger(developer, release, force=True, comments="hotfix, rollback reviewed by hand")

    # Then it runs to the end, and its history says who forced it past what
    assert forced.status_code == 202, forced.text
    assert ended(api, forced.json()["executionId"])["status"] == "COMPLETED"
    first = events(api, forced.json()["executionId"])[0]
    assert first["actor"] == "dev-alice" and first["previous"] is None
    assert first["message"] == (
        "forced: dev-alice started it although its rollback could not run (1 problem(s)): "
        f"rollback pipeline '{ROLLBACK}' is disabled; hotfix, rollback reviewed by hand"
    )
    # ... and so does the audit trail, beside the refusal before it
    trail = [item for item in api.http.get("/api/audit").json() if item["route"].endswith("pipelines.trigger")]
    assert [(item["status"], item["actor"]) for item in trail] == [(202, "dev-alice"), (409, "dev-alice")]
    assert f"rollback pipeline '{ROLLBACK}' is disabled" in trail[0]["note"] and trail[1]["note"] is None


def test_a_release_whose_rollback_endpoint_refuses_its_token_is_refused_until_the_token_is_fixed(
    api: ServedApp, worker: Any, prod: KubeSim
) -> None:
    # Given a cluster started with --token, and the rollback's endpoint given a wrong token
    rollback_endpoint = endpoints_on(api, prod, rollback_token="an-expired-token")
    api.create(rollback_pipeline())
    release = api.create(release_pipeline())

    # When the release is triggered
    answer = trigger(api.http, release)

    # Then it is refused, naming the endpoint, the rollback pipeline and the cluster's answer
    assert refused(answer) == [
        f"endpoint 'prod-rollback' of rollback pipeline '{ROLLBACK}' did not answer: credentials refused "
        "(HTTP 401 to GET /version)"
    ]
    # ... and the endpoint shows the probe, never the token
    view = api.http.get(f"/api/endpoints/{rollback_endpoint['id']}").json()
    assert view["probe"]["ok"] is False and "credentials refused" in view["probe"]["message"]
    assert "an-expired-token" not in json.dumps(view)

    # When it is forced, Then it runs, the override in its events
    forced = trigger(api.http, release, force=True)
    assert forced.status_code == 202, forced.text
    assert ended(api, forced.json()["executionId"])["status"] == "COMPLETED"
    assert "credentials refused" in events(api, forced.json()["executionId"])[0]["message"]

    # When the token is fixed, Then the old probe is forgotten and the next release starts without force
    fixed = api.http.patch(f"/api/endpoints/{rollback_endpoint['id']}", json={"token": CLUSTER_TOKEN})
    assert fixed.json()["probe"] is None
    started = trigger(api.http, release)
    assert started.status_code == 202, started.text
    assert not events(api, started.json()["executionId"])[0]["message"].startswith("forced")
    assert api.http.get(f"/api/endpoints/{rollback_endpoint['id']}").json()["probe"]["ok"] is True


def test_a_release_whose_rollback_cluster_is_down_is_refused_and_starts_once_it_is_back(
    api: ServedApp, worker: Any, prod: KubeSim
) -> None:
    # Given a release whose rollback cluster has stopped serving
    endpoints_on(api, prod)
    api.create(rollback_pipeline())
    release = api.create(release_pipeline())
    prod.stop()

    # When the release is triggered, Then it is refused: the rollback endpoint did not answer
    [reason] = refused(trigger(api.http, release))
    assert reason.startswith(f"endpoint 'prod-rollback' of rollback pipeline '{ROLLBACK}' did not answer: unreachable")

    # When the cluster is back (same address), Then the next trigger probes again and the release runs
    prod.start()
    answer = trigger(api.http, release)
    assert answer.status_code == 202, answer.text
    assert ended(api, answer.json()["executionId"])["status"] == "COMPLETED"


def test_a_mandatory_rollback_input_the_link_does_not_bind_is_refused_naming_it(api: ServedApp, prod: KubeSim) -> None:
    # Given a release linked to its rollback, which later gains a mandatory input without a default
    endpoints_on(api, prod)
    rollback = api.create(rollback_pipeline())
    release = api.create(release_pipeline())
    changed = rollback_pipeline(input={"previousTag": ""}, _inputMeta={"previousTag": {"mandatory": True}})
    assert api.http.put(f"/api/pipelines/{rollback['id']}", json=changed).status_code == 200

    # When the release is triggered, Then it is refused naming the input the rollback would lack
    assert refused(trigger(api.http, release)) == [
        f"mandatory input 'previousTag' of rollback pipeline '{ROLLBACK}' is not given by the rollback link of "
        "stage 'Production'"
    ]


def test_a_webhook_delivery_is_refused_alike_and_a_redelivery_after_the_fix_starts_the_run(
    api: ServedApp, worker: Any, prod: KubeSim
) -> None:
    # Given a webhook trigger of a release whose rollback pipeline is disabled
    endpoints_on(api, prod)
    rollback = api.create(rollback_pipeline(enabled=False))
    release = api.create(release_pipeline())
    secret = "a-webhook-secret-of-some-length"
    definition = {"name": "shop-push", "project": "shop", "pipeline": "Shop", "secret": secret}
    # (a hook is unattended: its definition cannot carry force, an override needs someone who read the reasons)
    unattended = api.http.post("/api/triggers", json={**definition, "force": True})
    assert unattended.status_code == 400 and "force" in unattended.json()["error"]["message"], unattended.text
    api.create_at("/api/triggers", definition)

    def deliver() -> httpx.Response:
        body = json.dumps({"after": "abc123"}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "d-42",
            "X-Hub-Signature-256": sign(secret, body),
        }
        return httpx.post(f"{api.url}/api/triggers/shop-push", content=body, headers=headers, timeout=30)

    # When a push is delivered, Then it is refused with the reason, and starts nothing
    assert refused(deliver()) == [f"rollback pipeline '{ROLLBACK}' is disabled"]
    assert executions_of(api, release) == []

    # When the rollback pipeline is enabled and the same delivery comes again, Then it starts the release
    assert api.http.patch(f"/api/pipelines/{rollback['id']}", json={"enabled": True}).status_code == 200
    again = deliver()
    assert again.status_code == 202 and again.json()["duplicate"] is False, again.text
    assert ended(api, again.json()["executionId"])["status"] == "COMPLETED"


@pytest.fixture
def quick_settings(settings: Settings) -> Settings:
    """The test deployment with a sweep every second."""
    return Settings(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        api_token=TOKEN,
        secret_key=SECRET_KEY,
        sweep_seconds=1.0,
    )


def test_the_sweep_probes_rollback_endpoints_and_refreshes_a_probe_as_it_ages(
    api: ServedApp, quick_settings: Settings, tmp_path: Any, prod: KubeSim
) -> None:
    # Given an enabled release whose rollback uses prod-rollback, never triggered, and `rollway beat` running
    from rollway_testing import WorkerProcess

    endpoint = endpoints_on(api, prod)
    api.create(rollback_pipeline())
    api.create(release_pipeline())
    beat = WorkerProcess(quick_settings, tmp_path / "worker-beat.log", "-c", "1", "--beat")
    try:
        beat.wait_ready()

        def probe() -> Doc | None:
            found: Doc | None = api.http.get(f"/api/endpoints/{endpoint['id']}").json()["probe"]
            return found

        # Then the sweep probes the rollback's endpoint by itself
        first = wait_until(probe, timeout=60, what="the sweep to probe prod-rollback")
        assert first["ok"] is True and first["message"] == "answered (HTTP 200 to GET /version)"

        # When that probe has aged past the refresh window (moved back in the database, as time would)
        database = create_engine(quick_settings.database_url)
        with database.begin() as conn:
            conn.execute(
                text("UPDATE endpoints SET probed_at = probed_at - :age WHERE id = :id"),
                {"age": timedelta(seconds=45), "id": endpoint["id"]},
            )
        database.dispose()
        aged = probe()
        assert aged is not None and aged["at"] < first["at"]

        # Then a later sweep probes it again: its probe time moves on
        wait_until(lambda: (now := probe()) is not None and now["at"] > first["at"], timeout=60, what="a fresh probe")
    finally:
        beat.stop()


# -- the I/O of the check on each store backend, with the real prober


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A store that can seal endpoint credentials, on each backend."""
    sealing = Store.connect(database_url, SECRET_KEY)
    yield sealing
    sealing.dispose()


def test_a_probe_of_an_endpoint_changed_meanwhile_is_not_kept(store: Store, prod: KubeSim) -> None:
    # Given an endpoint read for a probe, then given a new token before the probe's answer is recorded
    store.add_endpoint(Endpoint(id="e1", name="prod-rollback", project="shop", type="kubernetes", url=prod.url))
    read = store.get_endpoint("e1")
    store.replace_endpoint(replace(read, token=CLUSTER_TOKEN))

    # When the answer to the old credentials comes back
    kept = preflight.record(store, read, Probe(datetime.now(UTC), False, "credentials refused"))

    # Then it is dropped: it says nothing of the new token
    assert not kept and store.get_endpoint("e1").probe is None


def test_without_a_prober_an_endpoint_never_probed_refuses_the_release(store: Store, prod: KubeSim) -> None:
    # Given a release whose rollback uses an endpoint nobody has probed, checked by an engine that cannot probe
    store.add_endpoint(Endpoint(id="e1", name="prod-rollback", project="shop", type="kubernetes", url=prod.url))
    store.add_pipeline(load_pipeline(rollback_pipeline(), store.rollback_target))
    release = store.add_pipeline(load_pipeline(release_pipeline(), store.rollback_target))

    # Then the check does not take the endpoint on trust; with the real prober it probes it and lets it through
    assert [problem.message for problem in Preflight(store).check(release.pipeline)] == [
        f"endpoint 'prod-rollback' of rollback pipeline '{ROLLBACK}' has not been probed yet"
    ]
    store.replace_endpoint(replace(store.get_endpoint("e1"), token=CLUSTER_TOKEN))
    assert Preflight(store, EndpointProber()).check(release.pipeline) == []
    probe = store.get_endpoint("e1").probe
    assert probe is not None and probe.ok
