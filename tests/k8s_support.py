"""What the Kubernetes tests share: endpoints for a kubesim, the YAML they deploy, attempts re-run like the worker
does, and an HTTPS front for TLS stories."""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrator.endpoints import Endpoint
from orchestrator.errors import NotFound
from workers.executors.base import Outcome, TaskCall, Waiting
from workers.executors.k8s import K8sExecutor

# Pods become ready fast and deadlines pass fast: a rollout story takes a second or two.
READY_DELAY = 0.2
DEADLINE = 2
TOKEN = "k8s-test-token"


def endpoint(url: str, *, token: str | None = TOKEN, name: str = "dev", **fields: Any) -> Endpoint:
    """A Kubernetes endpoint named `name` (its id too) for the API at `url`."""
    return Endpoint(
        id=fields.pop("id", name), name=name, project="demo", type="kubernetes", url=url, token=token, **fields
    )


def lookup(*endpoints: Endpoint) -> Callable[[str], Endpoint]:
    """What the worker hands the executor: endpoints by id, NotFound for others."""
    by_id = {item.id: item for item in endpoints}

    def find(endpoint_id: str) -> Endpoint:
        if endpoint_id not in by_id:
            raise NotFound(f"endpoint {endpoint_id} does not exist")
        return by_id[endpoint_id]

    return find


def namespace_yaml(name: str = "demo") -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def service_yaml(name: str = "web", namespace: str = "demo") -> str:
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  selector:
    app: {name}
  ports:
  - port: 80
    targetPort: 80
"""


def deployment_yaml(
    image: str, name: str = "web", namespace: str = "demo", replicas: int = 2, deadline: int = DEADLINE
) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  labels:
    app: {name}
spec:
  replicas: {replicas}
  progressDeadlineSeconds: {deadline}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: {name}
        image: {image}
        ports:
        - containerPort: 80
"""


def release_yaml(image: str) -> str:
    """Namespace, Service and Deployment in one multi-document YAML, with an empty document as editors leave them."""
    return "---\n".join([namespace_yaml(), service_yaml(), "", deployment_yaml(image)])


class ManualClock:
    """A wall clock that moves only when told to: the executor sees the worker's waits pass, and the test does not
    wait them."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(
    executor: K8sExecutor,
    task_input: Mapping[str, Any],
    role: str = "dev",
    limit: int = 400,
    *,
    clock: ManualClock | None = None,
    between: Callable[[Waiting], None] | None = None,
) -> list[Outcome]:
    """Attempts until one is not Waiting, handing each the last one's state as the worker does.

    The worker waits the countdown before the next attempt; tests wait at most a few hundredths of it, since what
    decides a VERIFY is the wall clock and the cluster, not the number of attempts. With the executor's `clock`
    given, it is moved on by each countdown instead, and nothing is waited. `between` is called after each Waiting,
    before the next attempt: where a story changes the cluster while the task waits.
    """
    outcomes: list[Outcome] = []
    state: Mapping[str, Any] = {}
    endpoints = {"kubernetesServer": role} if role else {}
    while len(outcomes) < limit:
        outcome = executor.execute(
            TaskCall("K8S", task_input, attempt=len(outcomes) + 1, state=state, endpoints=endpoints)
        )
        outcomes.append(outcome)
        if not isinstance(outcome, Waiting):
            return outcomes
        state = outcome.state
        if between is not None:
            between(outcome)
        if clock is not None:
            clock.advance(outcome.countdown)
        else:
            time.sleep(min(outcome.countdown, 0.05))
    raise AssertionError(f"still waiting after {limit} attempts: {outcomes[-1]}")


def waits(outcomes: list[Outcome]) -> list[Waiting]:
    """The Waiting answers of a run."""
    return [outcome for outcome in outcomes if isinstance(outcome, Waiting)]


def self_signed(directory: Path) -> tuple[Path, Path, str]:
    """A certificate for 127.0.0.1 and its key as files, and the certificate as base64 PEM (a kubeconfig's CA data)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubesim")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(pem)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path, base64.b64encode(pem).decode()


@contextmanager
def tls_front(target: str, cert: Path, key: Path) -> Iterator[str]:
    """An HTTPS server passing every request on to the plain-HTTP API at `target`; yields its URL."""
    upstream = urlsplit(target)

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
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
