"""Kubeconfigs and endpoint credentials are never turned against workers: no kubeconfig plugin runs, no file it names
is read, and a token only ever goes to the server it was given for."""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_support import TOKEN, namespace_yaml, run, self_signed
from k8s_support import endpoint as sim_endpoint

from kubesim import KubeSim
from orchestrator.endpoints import Endpoint
from orchestrator.errors import BadRequest, ClusterError
from orchestrator.kubeconfig import read_access, refused_fields
from orchestrator.settings import Settings
from orchestrator.store import Store
from workers.cluster import ClusterClient
from workers.executors.base import Failed, Succeeded
from workers.executors.k8s import K8sExecutor

from rollway_testing import TERMINAL, ServedApp, wait_until

Doc = dict[str, Any]
MARKER = "SECRET-MARKER-4f1c9e"  # the content of a file on the worker that must never come back


def kubeconfig(server: str, user: Doc | None = None, **cluster: Any) -> str:
    """A one-context kubeconfig for `server` with that user."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
            "users": [{"name": "u", "user": user or {}}],
            "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "ctx",
        }
    )


@dataclass(frozen=True)
class Hostile:
    """A kubeconfig that would run a command or read a file on the worker, and the field that must be named."""

    kubeconfig: str
    field: str


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A file on the worker holding the marker, over two lines (so it could never be a valid header either)."""
    path = tmp_path / "worker-secret"
    path.write_text(f"{MARKER}\nsecond line of the secret\n")
    return path


def hostile(kind: str, tmp_path: Path, secret_file: Path, server: str = "http://127.0.0.1:9") -> Hostile:
    """The hostile kubeconfig of each kind; a command would `touch` tmp_path/<kind>.touched."""
    touched = str(tmp_path / f"{kind}.touched")
    users = "kubeconfig.users[0].user"
    cases = {
        "exec": Hostile(
            kubeconfig(
                server,
                {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "touch", "args": [touched]}},
            ),
            f"{users}.exec",
        ),
        "auth-provider": Hostile(
            kubeconfig(server, {"auth-provider": {"name": "gcp", "config": {"cmd-path": f"touch {touched}"}}}),
            f"{users}.auth-provider",
        ),
        "tokenFile": Hostile(kubeconfig(server, {"tokenFile": str(secret_file)}), f"{users}.tokenFile"),
        "certificate-authority": Hostile(
            kubeconfig(
                server.replace("http:", "https:"), {"token": "t"}, **{"certificate-authority": str(secret_file)}
            ),
            "kubeconfig.clusters[0].cluster.certificate-authority",
        ),
        "client-key": Hostile(
            kubeconfig(server, {"client-certificate": str(secret_file), "client-key": str(secret_file)}),
            f"{users}.client-key",
        ),
    }
    return cases[kind]


KINDS = ["exec", "auth-provider", "tokenFile", "certificate-authority", "client-key"]


def nothing_touched(tmp_path: Path) -> bool:
    return not list(tmp_path.glob("*.touched"))


# --- at save ---


@pytest.mark.parametrize("kind", KINDS)
def test_a_kubeconfig_that_runs_or_reads_anything_is_refused_at_save(
    api: ServedApp, tmp_path: Path, secret_file: Path, kind: str
) -> None:
    # Given a kubeconfig that would run a command or read a file on the worker
    bad = hostile(kind, tmp_path, secret_file)
    body = {"name": "dev-cluster", "project": "demo", "type": "kubernetes", "kubeconfig": bad.kubeconfig}

    # When it is posted as a new endpoint, and patched onto an endpoint that exists
    posted = api.http.post("/api/endpoints", json=body)
    existing = api.create_at("/api/endpoints", body | {"name": "other", "kubeconfig": kubeconfig("http://127.0.0.1:9")})
    patched = api.http.patch(f"/api/endpoints/{existing['id']}", json={"kubeconfig": bad.kubeconfig})

    # Then both are refused, naming the field; nothing ran, nothing of the file came back, nothing changed
    for answer in (posted, patched):
        assert answer.status_code == 400, answer.text
        assert bad.field in [item["path"] for item in answer.json()["error"]["details"]], answer.text
        assert MARKER not in answer.text
    assert [item["name"] for item in api.http.get("/api/endpoints").json()] == ["other"]
    assert api.http.get(f"/api/endpoints/{existing['id']}").json()["updatedAt"] == existing["updatedAt"]
    assert nothing_touched(tmp_path)


@pytest.mark.parametrize(
    ("document", "fields"),
    [
        ({"users": [{"name": "u", "user": {"exec": {"command": "sh"}}}]}, ["kubeconfig.users[0].user.exec"]),
        (
            {"contexts": [{"name": "x", "context": {"extensions": [{"extension": {"keyFile": "/k", "ok": 1}}]}}]},
            ["kubeconfig.contexts[0].context.extensions[0].extension.keyFile"],
        ),
        (
            {"clusters": [{"cluster": {"ca-file": "/a", "certificate-authority-data": "eA=="}}]},
            ["kubeconfig.clusters[0].cluster.ca-file"],
        ),
        ({"users": [{"user": {"username": "me", "password": "pw", "token": "t"}}]}, []),
    ],
)
def test_refused_fields_are_found_wherever_they_stand(document: Doc, fields: list[str]) -> None:
    # When a document is searched, Then every command or file field is named by its path, and data fields pass
    assert [problem.path for problem in refused_fields(document)] == fields


def test_a_kubeconfig_of_aliases_and_cycles_is_searched_once_and_answered() -> None:
    # Given a kubeconfig whose YAML aliases share a plugin among many places, and one that refers to itself
    shared = "users: &u [{name: u, user: {exec: {command: sh}}}]\nmore: [*u, *u, *u]\nclusters: [{name: c}]\n"
    cyclic = "loop: &loop [*loop]\nclusters: [{name: c}]\n"

    # When each is read, Then the plugin is named once, at its first place, and the cycle ends
    with pytest.raises(BadRequest) as caught:
        read_access(shared)
    assert [problem.path for problem in caught.value.details if "command" in problem.message] == [
        "kubeconfig.users[0].user.exec"
    ]
    with pytest.raises(BadRequest):
        read_access(cyclic)


# --- in the worker, for an endpoint stored without the check ---


@pytest.fixture
def store(api: ServedApp, settings: Settings) -> Iterator[Store]:
    """The API's store, used to write endpoints straight into the database, as no request could."""
    opened = Store.connect(settings.database_url, settings.secret_key, migrate=False)
    yield opened
    opened.dispose()


def plant(store: Store, name: str, kubeconfig_text: str) -> Endpoint:
    return store.add_endpoint(
        Endpoint(id=f"id-{name}", name=name, project="demo", type="kubernetes", url="", kubeconfig=kubeconfig_text)
    )


def test_a_planted_kubeconfig_fails_its_k8s_tasks_without_running_or_reading_anything(
    api: ServedApp, store: Store, worker: Any, tmp_path: Path, secret_file: Path
) -> None:
    # Given a cluster, and hostile kubeconfigs written straight into the database, all pointing at that cluster
    with KubeSim(token=TOKEN) as sim:
        kinds = ["exec", "auth-provider", "tokenFile"]
        cases = {kind: hostile(kind, tmp_path, secret_file, server=sim.url) for kind in kinds}
        for kind, case in cases.items():
            plant(store, kind, case.kubeconfig)
        # ... and a pipeline for each with one K8S task on it
        executions = {kind: start(api, k8s_pipeline(kind, index)) for index, kind in enumerate(kinds)}

        # When they run on a worker
        found = {kind: finished(api, execution_id) for kind, execution_id in executions.items()}

        # Then every task failed saying which field of its kubeconfig cannot be used
        for kind, case in cases.items():
            view = found[kind]["stages"][0]["tasks"][0]
            assert (found[kind]["status"], view["status"]) == ("FAILED", "FAILED"), found[kind]
            message = view["statusMessage"]
            assert f"the kubeconfig of endpoint {kind} cannot be used" in message and case.field in message, message
        # ... no command ran, nothing of the file came back anywhere, and the cluster was never written to
        assert nothing_touched(tmp_path)
        for execution_id in executions.values():
            assert MARKER not in api.http.get(f"/api/executions/{execution_id}").text
            assert MARKER not in api.http.get(f"/api/executions/{execution_id}/events").text
        assert MARKER not in worker.log()
        listed = ClusterClient.connect(sim_endpoint(sim.url))
        assert all(listed.read(listed.ref("v1", "Namespace", f"ns-{index}")) is None for index in range(len(kinds)))
        listed.close()


def k8s_pipeline(kind: str, index: int) -> Doc:
    """A pipeline whose one K8S task applies the namespace ns-<index> on the endpoint named `kind`."""
    task = {
        "type": "K8S",
        "endpoints": {"kubernetesServer": kind},
        "input": {"action": "APPLY", "yaml": namespace_yaml(f"ns-{index}")},
    }
    stage = {"taskOrder": ["Apply"], "tasks": {"Apply": task}}
    return {"name": f"Planted {kind}", "project": "demo", "enabled": True, "stageOrder": ["S"], "stages": {"S": stage}}


def start(api: ServedApp, document: Doc) -> str:
    pipeline = api.create(document)
    started = api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {}})
    assert started.status_code == 202, started.text
    execution_id: str = started.json()["executionId"]
    return execution_id


def finished(api: ServedApp, execution_id: str) -> Doc:
    def ended() -> Doc | None:
        view: Doc = api.http.get(f"/api/executions/{execution_id}").json()
        return view if view["status"] in TERMINAL else None

    done: Doc = wait_until(ended, timeout=90, what=f"execution {execution_id} to end")
    return done


@pytest.mark.parametrize("kind", KINDS)
def test_the_worker_refuses_a_hostile_kubeconfig_before_it_connects(
    tmp_path: Path, secret_file: Path, kind: str
) -> None:
    # Given an endpoint whose stored kubeconfig would run a command or read a file
    bad = hostile(kind, tmp_path, secret_file)
    endpoint = Endpoint(id="e", name="dev", project="demo", type="kubernetes", url="", kubeconfig=bad.kubeconfig)

    # When the worker builds its client, Then it is a clear error naming the field, and nothing ran or was read
    with pytest.raises(ClusterError) as caught:
        ClusterClient.connect(endpoint)
    assert "the kubeconfig of endpoint dev cannot be used" in caught.value.message
    assert bad.field in caught.value.message and MARKER not in caught.value.message
    assert nothing_touched(tmp_path)


# --- a token goes only where it was given ---


class Recorder:
    """A real HTTP server that records the Authorization header of every request and refuses them all (401)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                recorder.seen.append(self.headers.get("Authorization") or "")
                body = json.dumps(
                    {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401}
                ).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[Recorder]:
        recorder = cls()
        recorder.thread.start()
        try:
            yield recorder
        finally:
            recorder.server.shutdown()
            recorder.server.server_close()
            recorder.thread.join(timeout=5)


def test_a_moved_endpoint_never_sends_its_old_token_to_the_new_url(api: ServedApp, store: Store) -> None:
    # Given an endpoint on a cluster with its token, which a worker has already used
    with KubeSim(token=TOKEN) as sim, Recorder.running() as recorder:
        created = api.create_at(
            "/api/endpoints", {"name": "dev-cluster", "project": "demo", "url": sim.url, "token": TOKEN}
        )
        executor = K8sExecutor(store.get_endpoint)
        task = {"action": "APPLY", "yaml": namespace_yaml()}
        assert isinstance(run(executor, task, role=created["id"])[-1], Succeeded)

        # When its URL is changed to another server, without giving the token again, and a task runs
        moved = api.http.patch(f"/api/endpoints/{created['id']}", json={"url": recorder.url})

        outcome = run(executor, task, role=created["id"])[-1]

        # Then the same worker's next K8S task reaches the new server without the old token
        assert moved.status_code == 200, moved.text
        assert isinstance(outcome, Failed) and "401" in outcome.message
        assert recorder.seen, "the task never reached the new server"
        assert all(TOKEN not in header for header in recorder.seen), recorder.seen
        # ... and the endpoint says it has no token any more
        assert (moved.json()["url"], moved.json()["hasToken"]) == (recorder.url, False)

        # When the token for the new server is given with it, Then that one is sent
        again = api.http.patch(f"/api/endpoints/{created['id']}", json={"url": recorder.url, "token": "new-token"})
        assert again.status_code == 200 and again.json()["hasToken"] is True, again.text
        run(executor, task, role=created["id"])
        assert recorder.seen[-1] == "Bearer new-token"
        executor.clusters.close()


def test_basic_auth_of_a_kubeconfig_is_sent_as_given() -> None:
    # Given a kubeconfig with a username and password
    with Recorder.running() as recorder:
        text = kubeconfig(recorder.url, {"username": "deployer", "password": "pa:ss"})
        client = ClusterClient.connect(
            Endpoint(id="e", name="dev", project="d", type="kubernetes", url="", kubeconfig=text)
        )

        # When it asks the server anything, Then the server saw exactly those credentials
        with pytest.raises(ClusterError):
            client.read(client.ref("v1", "Namespace", "demo"))
        client.close()
    assert recorder.seen == ["Basic " + base64.b64encode(b"deployer:pa:ss").decode()]


# --- inline data still works ---


@contextmanager
def mutual_tls(cert: Path, key: Path, client_ca: Path) -> Iterator[tuple[str, list[str]]]:
    """An HTTPS server that takes only clients with a certificate signed by `client_ca`; yields its URL and the
    common names of the clients it saw. It answers every request with the Namespace `demo`."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            seen.extend(value for rdn in peer["subject"] for name, value in rdn if name == "commonName")
            body = json.dumps({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "demo"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_ca)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_kubeconfig_of_inline_data_reaches_a_mutual_tls_server(tmp_path: Path) -> None:
    # Given a server that checks its clients' certificates, and a kubeconfig carrying the CA, client certificate
    # and key inline
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    server_dir.mkdir()
    client_dir.mkdir()
    server_cert, server_key, server_ca = self_signed(server_dir)
    client_cert, client_key, _ = self_signed(client_dir)
    with mutual_tls(server_cert, server_key, client_cert) as (url, seen):
        user = {
            "client-certificate-data": base64.b64encode(client_cert.read_bytes()).decode(),
            "client-key-data": base64.b64encode(client_key.read_bytes()).decode(),
        }
        text = kubeconfig(url, user, **{"certificate-authority-data": server_ca})
        client = ClusterClient.connect(
            Endpoint(id="e", name="dev", project="d", type="kubernetes", url="", kubeconfig=text)
        )

        # When it reads, Then it is in with its certificate
        found = client.read(client.ref("v1", "Namespace", "demo"))
        assert found is not None and found["metadata"]["name"] == "demo"
        assert seen == ["kubesim"]
        # ... and the key it wrote for urllib3 only its own user may read
        key_file = client._api.configuration.key_file
        assert os.stat(key_file).st_mode & 0o077 == 0
        client.close()
