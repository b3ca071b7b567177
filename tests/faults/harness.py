"""What the fault suite is made of, as plain helpers (fixtures are in conftest.py).

- `TcpProxy`: a TCP proxy in front of PostgreSQL that a test makes refuse, hang and resume.
- `RedisServer`: a private redis-server on a free port, stopped and started on the same port.
- `RollwayProcess`: `rollway worker` / `rollway beat` in a process group of its own, so a test can SIGKILL the
  group, or one prefork child (found through /proc).
- `Ledger`: the web service the release pipeline talks to. It creates orders by POST and honours
  `Idempotency-Key` the way payment APIs do (a repeated key gets the stored answer, with no new effect), counts
  effects per execution, serves the POLL's status, and can be made slow to keep a task in flight.
- The 5-task release pipeline and its rollback pipeline, `Burst` (triggers executions over HTTP at a steady pace,
  as a client honouring 503 + Retry-After does), `Prober` (API answers while a fault lasts) and `settle` (waits
  until every execution has ended and compares each with the status it would have had without the fault).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from orchestrator.execution import Execution
from orchestrator.settings import Settings
from orchestrator.store import Store

from rollway_testing import TERMINAL, TOKEN, rollway_command

Doc = dict[str, Any]

# Short enough that a lost task run is noticed within seconds, long enough that a loaded 2-core machine renews it.
LEASE_SECONDS = 5
SWEEP_SECONDS = 1
PROJECT = "faults"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- the TCP proxy


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST rather than a FIN, as a crashed peer or a dropped route would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass(eq=False)
class _Pair:
    """One proxied connection: the client's socket, the upstream's, and what waits to be written to each."""

    client: socket.socket
    upstream: socket.socket
    to_client: bytearray = field(default_factory=bytearray)
    to_upstream: bytearray = field(default_factory=bytearray)
    events: dict[str, int] = field(default_factory=lambda: {"client": 0, "upstream": 0})

    def sock(self, side: str) -> socket.socket:
        return self.client if side == "client" else self.upstream

    def outgoing(self, side: str) -> bytearray:
        """Bytes waiting to be written to `side`."""
        return self.to_client if side == "client" else self.to_upstream

    def incoming(self, side: str) -> bytearray:
        """Where bytes read from `side` wait for the other side."""
        return self.to_upstream if side == "client" else self.to_client


class TcpProxy:
    """A TCP proxy to `target` on 127.0.0.1:`port` with four modes the test switches between.

    pass: bytes flow both ways. refuse: the listener is closed (connecting gets ECONNREFUSED) and every open
    connection is reset. hang: connections are accepted but not connected upstream, and open ones carry nothing
    either way; the kernel buffers what is sent, as with a frozen server. resume: back to pass, forwarding what
    waited. One selector thread moves every byte; a mode change runs in that thread, so it is complete when the
    call returns. Bounded: at most `max_connections` connections and `buffer` bytes waiting per direction.
    """

    def __init__(
        self, target: tuple[str, int], port: int = 0, max_connections: int = 256, buffer: int = 256 * 1024
    ) -> None:
        self.target = target
        self.port = port
        self.max_connections = max_connections
        self.buffer = buffer
        self.mode = "pass"
        self.accepted = 0
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._commands: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = queue.SimpleQueue()
        self._pairs: set[_Pair] = set()
        self._held: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- what tests call

    def start(self) -> TcpProxy:
        self._listen()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._loop, name=f"tcp-proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    @property
    def connections(self) -> int:
        """Open proxied connections, plus those accepted and held while hanging."""
        return len(self._pairs) + len(self._held)

    def refuse(self) -> None:
        """Close the listener and reset every connection: the database is down."""
        self._call(self._refuse)

    def hang(self) -> None:
        """Accept but forward nothing, on new and open connections alike: the database is frozen."""
        self._call(self._hang)

    def resume(self) -> None:
        """Back to forwarding, on the same port."""
        self._call(self._resume)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._call(self._close_all)
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        self._thread = None
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()

    # -- inside the loop thread

    def _call(self, command: Callable[[], None]) -> None:
        if self._thread is None or not self._thread.is_alive():
            command()
            return
        done = threading.Event()
        self._commands.put((command, done))
        self._wake()
        if not done.wait(timeout=10):
            raise RuntimeError("the proxy's thread did not carry out the command")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def _loop(self) -> None:
        while not self._stopping:
            for key, events in self._selector.select(timeout=0.5):
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        self._wake_read.recv(4096)
                elif key.data == "listen":
                    self._accept()
                else:
                    pair, side = key.data
                    if pair in self._pairs:
                        self._pump(pair, side, events)
            self._run_commands()
        self._run_commands()

    def _run_commands(self) -> None:
        while True:
            try:
                command, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                command()
            finally:
                done.set()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "listen")

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        self.accepted += 1
        if self.connections >= self.max_connections:
            _reset(client)
        elif self.mode == "hang":
            self._held.append(client)
        else:
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            _reset(client)
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, upstream)
        self._pairs.add(pair)
        self._update(pair)

    def _pump(self, pair: _Pair, side: str, events: int) -> None:
        other = "upstream" if side == "client" else "client"
        if events & selectors.EVENT_READ:
            try:
                data = pair.sock(side).recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self._drop(pair, other)
                return
            if data:
                pair.incoming(side).extend(data)
                if not self._flush(pair, other):
                    return
        if events & selectors.EVENT_WRITE and not self._flush(pair, side):
            return
        self._update(pair)

    def _flush(self, pair: _Pair, side: str) -> bool:
        """Write what waits for `side`; False if the connection was dropped."""
        waiting = pair.outgoing(side)
        if not waiting or self.mode != "pass":
            return True
        try:
            sent = pair.sock(side).send(waiting)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self._drop(pair, None)
            return False
        del waiting[:sent]
        return True

    def _update(self, pair: _Pair) -> None:
        """Register each socket for what it can do now: nothing at all unless passing."""
        for side in ("client", "upstream"):
            wanted = 0
            if self.mode == "pass":
                if len(pair.incoming(side)) < self.buffer:
                    wanted |= selectors.EVENT_READ
                if pair.outgoing(side):
                    wanted |= selectors.EVENT_WRITE
            current = pair.events[side]
            sock = pair.sock(side)
            if wanted == current:
                continue
            if current == 0:
                self._selector.register(sock, wanted, (pair, side))
            elif wanted == 0:
                self._selector.unregister(sock)
            else:
                self._selector.modify(sock, wanted, (pair, side))
            pair.events[side] = wanted

    def _unregister(self, pair: _Pair) -> None:
        for side in ("client", "upstream"):
            if pair.events[side]:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(pair.sock(side))
                pair.events[side] = 0

    def _drop(self, pair: _Pair, flush_to: str | None) -> None:
        """One side closed: hand the other what it was still owed (once, best effort), then close both."""
        self._unregister(pair)
        self._pairs.discard(pair)
        if flush_to is not None and pair.outgoing(flush_to):
            with contextlib.suppress(OSError):
                pair.sock(flush_to).send(pair.outgoing(flush_to))
        pair.client.close()
        pair.upstream.close()

    def _refuse(self) -> None:
        self.mode = "refuse"
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
        for pair in list(self._pairs):
            self._unregister(pair)
            _reset(pair.client)
            _reset(pair.upstream)
        self._pairs.clear()
        for client in self._held:
            _reset(client)
        self._held.clear()

    def _hang(self) -> None:
        if self._listener is None:
            self._listen()
        self.mode = "hang"
        for pair in self._pairs:
            self._update(pair)

    def _resume(self) -> None:
        if self._listener is None:
            self._listen()
        self.mode = "pass"
        held, self._held = self._held, []
        for client in held:
            self._connect(client)
        for pair in list(self._pairs):
            if self._flush(pair, "client") and self._flush(pair, "upstream"):
                self._update(pair)

    def _close_all(self) -> None:
        self._refuse()
        self.mode = "pass"


# -- the private Redis


class RedisServer:
    """A redis-server of the test's own on a free port, without persistence: a restart loses every message."""

    def __init__(self, log_path: Path, binary: str = "redis-server") -> None:
        self.binary = binary
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start on the port of the previous start (the workers' broker URL does not change)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    *("--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--daemonize", "no"),
                    *("--dir", str(self.log_path.parent)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        """Stop it as a crash would: SIGKILL (nothing is persisted either way)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill()
        self.process.wait(timeout=10)

    def client(self) -> redis.Redis:
        """A client that fails at once while the server is down (redis-py retries for seconds by default)."""
        return redis.Redis(port=self.port, socket_timeout=2, retry=Retry(NoBackoff(), 0))


# -- Rollway processes in process groups of their own


class RollwayProcess:
    """`rollway <args>` in a new session (its own process group), logging to `<folder>/<name>.log`."""

    def __init__(self, name: str, args: Iterable[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.log_path = folder / f"{name}.log"
        with self.log_path.open("wb") as log:
            # cwd: `celery beat` writes its schedule file there.
            self.process = subprocess.Popen(
                [*rollway_command(), *args],
                env=env | {"PYTHONUNBUFFERED": "1"},
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, marker: bytes, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log_path.read_bytes():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        state = "exited" if self.process.poll() is not None else "still running"
        raise RuntimeError(f"rollway {self.name} did not start ({state}, no {marker!r} in its log):\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def children(self) -> list[int]:
        """The pids of its child processes (the prefork pool of a worker)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(item) for item in text.split()]

    def kill_group(self) -> None:
        """SIGKILL the whole process group, main process and children at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill_group()


def _socket_inodes(local_port: int) -> set[str]:
    """Inodes of the TCP sockets bound to 127.0.0.1:`local_port` (the client end of a connection)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                    inodes.add(fields[9])
    return inodes


def owner_of_port(local_port: int, pids: Iterable[int]) -> int | None:
    """Which of `pids` holds the socket whose local port is `local_port`: the process making that request."""
    wanted = {f"socket:[{inode}]" for inode in _socket_inodes(local_port)}
    for pid in pids:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{descriptor}") in wanted:
                    return pid
    return None


# -- the ledger web service


@dataclass(frozen=True)
class Effect:
    """One POST that changed something: which kind, for which execution, under which key."""

    kind: str
    execution: str
    key: str | None
    at: float


@dataclass(frozen=True)
class InFlight:
    """A slowed request being served: what it is and the client's port (to find the process waiting on it)."""

    kind: str
    client_port: int


class Ledger:
    """Orders created by POST /orders with an Idempotency-Key; GET /orders/<id>/status says DONE from the 2nd poll.

    A repeated key gets the stored answer and has no effect: `repeats` counts those. A POST without a key has an
    effect each time (`unkeyed` counts them). `slow_next(kind, seconds)` makes the next request of a kind ("order",
    "poll") take that long, after its effect; it is announced in `in_flight` while it is being served.
    """

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.answers: dict[str, tuple[int, Doc]] = {}
        self.pending: set[str] = set()
        self.effects: list[Effect] = []
        self.repeats = 0
        self.unkeyed = 0
        self.polls: Counter[str] = Counter()
        self.gates: dict[str, bool] = {}
        self.slow: dict[str, list[float]] = {}
        self.in_flight: queue.SimpleQueue[InFlight] = queue.SimpleQueue()
        self._orders = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> Ledger:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def slow_next(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.slow.setdefault(kind, []).append(seconds)

    def open_gate(self, name: str) -> None:
        with self.lock:
            self.gates[name] = True

    def doubles(self) -> dict[tuple[str, str], int]:
        """(kind, execution) whose effect happened more than once: what "no POST counted twice" forbids."""
        counts = Counter((effect.kind, effect.execution) for effect in self.effects)
        return {key: count for key, count in counts.items() if count > 1}

    def effects_of(self, kind: str) -> Counter[str]:
        return Counter(effect.execution for effect in self.effects if effect.kind == kind)

    # -- serving

    def _delay(self, kind: str, client_port: int) -> None:
        with self.lock:
            waiting = self.slow.get(kind)
            seconds = waiting.pop(0) if waiting else 0.0
        if seconds:
            self.in_flight.put(InFlight(kind, client_port))
            time.sleep(seconds)

    def _post(self, kind: str, key: str | None, body: Doc, make: Callable[[], tuple[int, Doc]]) -> tuple[int, Doc]:
        """Payment-API idempotency: the first request with a key has the effect; the others get its answer."""
        execution = str(body.get("execution", ""))
        with self.lock:
            if key is None:
                self.unkeyed += 1
            else:
                # A repeat arriving while the first is still being served waits for its answer.
                while key in self.pending:
                    self.lock.wait(timeout=30)
                if key in self.answers:
                    self.repeats += 1
                    return self.answers[key]
                self.pending.add(key)
        try:
            answer = make()
            with self.lock:
                self.effects.append(Effect(kind, execution, key, time.monotonic()))
                if key is not None:
                    self.answers[key] = answer
            return answer
        finally:
            with self.lock:
                if key is not None:
                    self.pending.discard(key)
                self.lock.notify_all()

    def _new_order(self, body: Doc) -> tuple[int, Doc]:
        with self.lock:
            self._orders += 1
            order = f"O-{self._orders}"
        return 201, {"id": order, "execution": body.get("execution"), "n": body.get("n")}

    def route(self, method: str, path: str, key: str | None, body: Doc, client_port: int) -> tuple[int, Doc]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["orders"]:
            answer = self._post("order", key, body, lambda: self._new_order(body))
            self._delay("order", client_port)
            return answer
        if method == "POST" and len(parts) == 3 and parts[0] == "orders" and parts[2] == "cancel":
            return self._post("cancel", key, body, lambda: (200, {"id": parts[1], "state": "CANCELED"}))
        if method == "GET" and len(parts) == 3 and parts[0] == "orders" and parts[2] == "status":
            with self.lock:
                self.polls[parts[1]] += 1
                count = self.polls[parts[1]]
            self._delay("poll", client_port)
            return 200, {"id": parts[1], "state": "DONE" if count >= 2 else "PENDING", "polls": count}
        if method == "GET" and len(parts) == 2 and parts[0] == "orders":
            return 200, {"id": parts[1], "polls": self.polls[parts[1]]}
        if method == "GET" and len(parts) == 2 and parts[0] == "gates":
            with self.lock:
                return 200, {"open": self.gates.get(parts[1], False)}
        return 404, {"error": f"no route for {method} {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        ledger = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    body = {}
                key = self.headers.get("Idempotency-Key")
                status, answer = ledger.route(
                    self.command, self.path, key, body if isinstance(body, dict) else {}, self.client_address[1]
                )
                data = json.dumps(answer).encode()
                with contextlib.suppress(OSError):  # the worker that asked may have been killed meanwhile
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


# -- the pipelines


def _rest(action: str, url: str, **fields: Any) -> Doc:
    return {"type": "REST", "input": {"action": action, "url": url, **fields}}


def _k8s(action: str, yaml: str) -> Doc:
    return {
        "type": "K8S",
        "endpoints": {"kubernetesServer": "faults-cluster"},
        "input": {"action": action, "yaml": yaml},
    }


CONFIG_YAML = """apiVersion: v1
kind: Namespace
metadata: {name: "NAMESPACE"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: release, namespace: "NAMESPACE"}
data: {order: "${Deploy.Order.output.responseJson.id}", n: "${input.n}"}
"""

UNDO_YAML = """apiVersion: v1
kind: ConfigMap
metadata: {name: release, namespace: "${input.namespace}"}
"""


def release_pipeline(ledger: str, name: str = "Release", concurrency: int = 100, idempotent: bool = True) -> Doc:
    """Order (REST POST), Wait (POLL, DONE on the 2nd poll), Config (K8S APPLY), Check (Condition), Confirm (REST GET).

    Check fails when the input says `ship: no`; the stage's rollback runs `<name>_Undo`.
    """
    order = _rest("post", f"{ledger}/orders", payload={"execution": "${executionId}", "n": "${input.n}"})
    if idempotent:
        order["input"]["idempotent"] = True
    order_id = "${Deploy.Order.output.responseJson.id}"
    return {
        "kind": "PIPELINE",
        "name": name,
        "project": PROJECT,
        "enabled": True,
        "concurrency": concurrency,
        "input": {"n": "", "ship": "yes"},
        "stageOrder": ["Deploy"],
        "stages": {
            "Deploy": {
                "taskOrder": ["Order", "Wait", "Config", "Check", "Confirm"],
                "rollback": {
                    "pipeline": f"{name}_Undo",
                    "input": {"order": order_id, "namespace": "run-${executionIndex}"},
                },
                "tasks": {
                    "Order": order,
                    "Wait": {
                        "type": "POLL",
                        "input": {
                            "url": f"{ledger}/orders/{order_id}/status",
                            "pollCount": 10,
                            "pollIntervalSeconds": 1,
                            "exitCriteria": {"success": "${responseJson.state} == 'DONE'"},
                        },
                    },
                    "Config": _k8s("APPLY", CONFIG_YAML.replace("NAMESPACE", "run-${executionIndex}")),
                    "Check": {"type": "Condition", "input": {"condition": "${input.ship} == 'yes'"}},
                    "Confirm": _rest("get", f"{ledger}/orders/{order_id}"),
                },
            }
        },
    }


def undo_pipeline(ledger: str, name: str = "Release_Undo") -> Doc:
    """Cancel the order (an idempotent REST POST) and delete the release's ConfigMap."""
    cancel = _rest("post", f"{ledger}/orders/${{input.order}}/cancel", payload={"execution": "${executionId}"})
    cancel["input"]["idempotent"] = True
    return {
        "kind": "PIPELINE",
        "name": name,
        "project": PROJECT,
        "enabled": True,
        "input": {"order": "", "namespace": ""},
        "stageOrder": ["Undo"],
        "stages": {
            "Undo": {
                "taskOrder": ["Cancel Order", "Remove Config"],
                "tasks": {"Cancel Order": cancel, "Remove Config": _k8s("DELETE", UNDO_YAML)},
            }
        },
    }


def serial_pipeline(name: str = "Serial") -> Doc:
    """Concurrency 1: one release at a time. A Condition fails it when the input says `ship: no`."""
    return {
        "kind": "PIPELINE",
        "name": name,
        "project": PROJECT,
        "enabled": True,
        "concurrency": 1,
        "input": {"n": "", "ship": "yes"},
        "stageOrder": ["Deploy"],
        "stages": {
            "Deploy": {
                "taskOrder": ["Check"],
                "rollback": {"pipeline": f"{name}_Undo", "input": {}},
                "tasks": {"Check": {"type": "Condition", "input": {"condition": "${input.ship} == 'yes'"}}},
            }
        },
    }


def gated_undo_pipeline(ledger: str, gate: str, name: str = "Serial_Undo") -> Doc:
    """A rollback that runs until the ledger's gate `gate` opens."""
    return {
        "kind": "PIPELINE",
        "name": name,
        "project": PROJECT,
        "enabled": True,
        "stageOrder": ["Undo"],
        "stages": {
            "Undo": {
                "taskOrder": ["Wait Gate"],
                "tasks": {
                    "Wait Gate": {
                        "type": "POLL",
                        "input": {
                            "url": f"{ledger}/gates/{gate}",
                            "pollCount": 120,
                            "pollIntervalSeconds": 0.5,
                            "exitCriteria": {"success": "${responseJson.open} == true"},
                        },
                    }
                },
            }
        },
    }


def fails(n: int) -> bool:
    """About one release in five is made to fail (and roll back)."""
    return n % 5 == 3


def release_input(n: int) -> Doc:
    return {"n": str(n), "ship": "no" if fails(n) else "yes"}


def expected_status(execution: Execution) -> str:
    """Where an execution ends without any fault: releases by their input, rollbacks COMPLETED."""
    if execution.rollback:
        return "COMPLETED"
    return "ROLLBACK_COMPLETED" if execution.input.get("ship") == "no" else "COMPLETED"


# -- talking to the API as a client would


def api_client(url: str, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=timeout)


def unavailable_problem(answer: httpx.Response) -> str | None:
    """What is wrong with an answer given while a service is down (None: a 2xx, or a proper 503)."""
    if 200 <= answer.status_code < 300:
        return None
    if answer.status_code != 503:
        return f"{answer.request.method} {answer.request.url.path} answered {answer.status_code}: {answer.text[:300]}"
    try:
        code = answer.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    if code != "unavailable" or not answer.headers.get("Retry-After"):
        return f"a 503 without code 'unavailable' and Retry-After: {answer.headers} {answer.text[:300]}"
    return None


def retry_after(answer: httpx.Response) -> float:
    try:
        return min(max(float(answer.headers.get("Retry-After", "1")), 0.1), 2.0)
    except ValueError:
        return 1.0


@dataclass
class Triggered:
    """One trigger of the burst: its number, the execution (None until a 202), and every answer on the way."""

    n: int
    at: float = field(default_factory=time.monotonic)
    execution_id: str | None = None
    answers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def trigger(
    client: httpx.Client, pipeline_id: str, n: int, patience: float = 40.0, stop: threading.Event | None = None
) -> Triggered:
    """POST an execution, retrying on 503 after its Retry-After (and after a timeout), never on anything else."""
    done = Triggered(n)
    stop = stop or threading.Event()
    while time.monotonic() - done.at < patience and not stop.is_set():
        try:
            answer = client.post(f"/api/pipelines/{pipeline_id}/executions", json={"input": release_input(n)})
        except httpx.TimeoutException:
            done.answers.append("timeout")
            done.problems.append(f"trigger {n}: no answer within {client.timeout.read}s")
            continue
        except httpx.TransportError as error:
            done.answers.append(type(error).__name__)
            done.problems.append(f"trigger {n}: {error!r}")
            stop.wait(0.5)
            continue
        done.answers.append(str(answer.status_code))
        if answer.status_code == 202:
            done.execution_id = answer.json()["executionId"]
            break
        problem = unavailable_problem(answer)
        if problem is not None:
            done.problems.append(f"trigger {n}: {problem}")
            if answer.status_code != 503:
                break
        stop.wait(retry_after(answer))
    else:
        done.problems.append(f"trigger {n}: no 202 within {patience}s ({done.answers})")
    done.seconds = time.monotonic() - done.at
    return done


class Burst:
    """Triggers `count` executions from a thread, one every `interval` seconds, each retried on 503."""

    def __init__(self, api_url: str, pipeline_id: str, count: int = 32, interval: float = 0.25) -> None:
        self.pipeline_id = pipeline_id
        self.count = count
        self.interval = interval
        self.triggered: list[Triggered] = []
        self._client = api_client(api_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="burst", daemon=True)

    def start(self) -> Burst:
        self._thread.start()
        return self

    def _run(self) -> None:
        for n in range(self.count):
            if self._stop.is_set():
                return
            self.triggered.append(trigger(self._client, self.pipeline_id, n, stop=self._stop))
            self._stop.wait(self.interval)

    def wait_for(self, sent: int, timeout: float = 60.0) -> None:
        """Until `sent` triggers have been answered."""
        deadline = time.monotonic() + timeout
        while len(self.triggered) < sent and time.monotonic() < deadline:
            time.sleep(0.02)
        if len(self.triggered) < sent:
            raise AssertionError(f"only {len(self.triggered)} of {sent} triggers answered within {timeout}s")

    def join(self, timeout: float = 120.0) -> None:
        """Until every trigger has been answered."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the burst did not finish within {timeout}s ({len(self.triggered)} sent)")

    def close(self) -> None:
        """Stop triggering (a test that failed half-way) and close the client."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self._client.close()

    @property
    def problems(self) -> list[str]:
        return [problem for item in self.triggered for problem in item.problems]

    def answers(self) -> Counter[str]:
        return Counter(answer for item in self.triggered for answer in item.answers)


@dataclass(frozen=True)
class Probe:
    """One API request made while a fault lasted."""

    at: float
    seconds: float
    status: int | None
    problem: str | None


class Prober:
    """GETs an API path every `interval` seconds from a thread, recording how (and how fast) each is answered."""

    def __init__(self, api_url: str, path: str = "/api/executions?limit=1", interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self.probes: list[Probe] = []
        self._client = api_client(api_url, timeout=15.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                answer = self._client.get(self.path)
                probe = Probe(started, time.monotonic() - started, answer.status_code, unavailable_problem(answer))
            except httpx.HTTPError as error:
                probe = Probe(started, time.monotonic() - started, None, f"no answer: {error!r}")
            self.probes.append(probe)
            self._stop.wait(self.interval)

    def statuses(self) -> Counter[int | None]:
        return Counter(probe.status for probe in self.probes)

    def slowest(self) -> float:
        return max((probe.seconds for probe in self.probes), default=0.0)

    def problems(self, within: float) -> list[str]:
        """Bad answers, and answers slower than `within` seconds."""
        found = [f"{probe.problem} (after {probe.seconds:.1f}s)" for probe in self.probes if probe.problem]
        found += [
            f"GET {self.path} took {probe.seconds:.1f}s (answered {probe.status})"
            for probe in self.probes
            if probe.seconds > within and not probe.problem
        ]
        return found


# -- waiting for the outcome


@dataclass
class Outcome:
    """Where every execution stood when the wait ended."""

    executions: list[Execution]
    ended_at: float
    stuck: list[Execution] = field(default_factory=list)
    wrong: list[Execution] = field(default_factory=list)

    @property
    def releases(self) -> list[Execution]:
        return [item for item in self.executions if not item.rollback]

    @property
    def rollbacks(self) -> list[Execution]:
        return [item for item in self.executions if item.rollback]

    def describe(self, items: Iterable[Execution]) -> str:
        return "\n".join(
            f"  {item.pipeline_name} #{item.index} n={item.input.get('n', '-')} {item.id}: {item.status}, "
            f"expected {expected_status(item)}: {item.status_message[:300]}"
            for item in items
        )


def settle(store: Store, timeout: float = 90.0, stall: float = 30.0) -> Outcome:
    """Wait until every execution in the database has ended, at most `timeout` s, or `stall` s without any change."""
    started = time.monotonic()
    changed, last = started, None
    while True:
        executions = store.list_executions(limit=1000)
        stuck = [item for item in executions if item.status not in TERMINAL]
        now = time.monotonic()
        picture = sorted((item.id, item.status) for item in executions)
        if picture != last:
            changed, last = now, picture
        if not stuck or now - started > timeout or now - changed > stall:
            break
        time.sleep(0.25)
    wrong = [item for item in executions if item.status in TERMINAL and item.status != expected_status(item)]
    return Outcome(executions, time.monotonic(), stuck, wrong)


def check_outcome(
    outcome: Outcome, ledger: Ledger, burst: Burst | None = None, *, fault_over: float | None = None
) -> str:
    """Assert the acceptance criteria: every execution where it would have ended, none stuck, no POST twice.

    Returns the one-line summary of the figures.
    """
    releases = outcome.releases
    repeated = ledger.doubles()
    summary = (
        f"executions={len(releases)} rollbacks={len(outcome.rollbacks)} "
        f"completed={sum(item.status == 'COMPLETED' for item in releases)} "
        f"rolled_back={sum(item.status == 'ROLLBACK_COMPLETED' for item in releases)} "
        f"stuck={len(outcome.stuck)} wrong={len(outcome.wrong)} "
        f"post_effects={len(ledger.effects)} post_repeats={ledger.repeats} doubled={len(repeated)} "
        f"unkeyed_posts={ledger.unkeyed}"
    )
    if fault_over is not None:
        summary += f" recovered_in={max(0.0, outcome.ended_at - fault_over):.1f}s"
    if burst is not None:
        summary += f" trigger_answers={dict(burst.answers())}"
    problems = []
    if burst is not None:
        problems += burst.problems
        missing = [item.n for item in burst.triggered if item.execution_id is None]
        if missing:
            problems.append(f"triggers never accepted: {missing}")
        known = {item.id for item in releases}
        lost = [item.execution_id for item in burst.triggered if item.execution_id and item.execution_id not in known]
        if lost:
            problems.append(f"accepted executions missing from the database: {lost}")
    if outcome.stuck:
        problems.append(f"{len(outcome.stuck)} execution(s) stuck:\n{outcome.describe(outcome.stuck)}")
    if outcome.wrong:
        problems.append(f"{len(outcome.wrong)} execution(s) ended otherwise:\n{outcome.describe(outcome.wrong)}")
    if repeated:
        problems.append(f"POST effects performed more than once (kind, execution): {repeated}")
    if ledger.unkeyed:
        problems.append(f"{ledger.unkeyed} POST(s) came without an Idempotency-Key")
    ordered = ledger.effects_of("order")
    unordered = [item.id for item in releases if item.status in TERMINAL and ordered[item.id] != 1]
    if unordered:
        problems.append(f"releases whose order was not placed exactly once: {unordered}")
    assert not problems, summary + "\n" + "\n".join(problems)
    return summary


def pending_task_ids(broker: redis.Redis) -> list[str]:
    """Celery ids of the run_task messages waiting in the broker, not yet handed to any worker.

    Every list key is read, so priority sub-queues (`<queue>\\x06\\x16<n>`) and key prefixes are covered.
    """
    found = []
    for key in broker.scan_iter(count=1000):
        if broker.type(key) != b"list":
            continue
        for raw in broker.lrange(key, 0, -1):
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                headers = json.loads(raw)["headers"]
                if headers.get("task") == "rollway.run_task":
                    found.append(str(headers["id"]))
    return found


# The message's name carries the run's label (`rollway.run_task[<pipeline> #<n> / <stage> / <task>]`), then its id.
DISCARDED = re.compile(r"Discarding revoked task: rollway\.run_task(?:\[.*\])?\[([0-9a-f-]{36})\]$", re.MULTILINE)


# -- one deployment of Rollway


class ApiProcess:
    """`rollway serve` in a process of its own (waitress, as in production), and an HTTP client of it.

    A process rather than a thread of the test: a request stuck on a hung database, or a socket the broker
    dropped, stays in the API's process, where it would be in production.
    """

    def __init__(self, process: RollwayProcess, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.http = api_client(self.url, timeout=30.0)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.alive():
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/api/pipelines").status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"rollway serve did not answer on {self.url}:\n{self.process.log()}")

    def create(self, document: Doc) -> Doc:
        """POST a pipeline document; it must be created."""
        return self.create_at("/api/pipelines", document)

    def create_at(self, path: str, body: Doc) -> Doc:
        answer = self.http.post(path, json=body)
        assert answer.status_code == 201, answer.text
        created: Doc = answer.json()
        return created

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


class Deployment:
    """A Rollway deployment for one test: `rollway serve`, `rollway worker`s and a `rollway beat`, each a process
    group of its own, all on the database through the test's proxy and on the test's private Redis."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.processes: list[RollwayProcess] = []
        self.api: ApiProcess | None = None
        self._celery: Celery | None = None

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def serve_api(self) -> ApiProcess:
        port = free_port()
        self.api = ApiProcess(self.start("api", "serve", "--port", str(port)), port)
        self.api.wait_ready()
        return self.api

    def start(self, name: str, *args: str) -> RollwayProcess:
        """Start `rollway <args>` without waiting for it."""
        process = RollwayProcess(name, args, self.env, self.folder)
        self.processes.append(process)
        return process

    def workers(self, *names: str, concurrency: int = 2, beat: bool = True) -> list[RollwayProcess]:
        """`rollway worker -c N` processes and a `rollway beat` (the sweep, in a process of its own: killing a
        worker must not stop it), started together; the workers are returned once all are ready."""
        started = [self.start(name, "worker", "--loglevel", "INFO", "-c", str(concurrency)) for name in names]
        sweeper = self.start("beat", "beat") if beat else None
        for worker in started:
            worker.wait_ready(b" ready.")
        if sweeper is not None:
            sweeper.wait_ready(b"Starting")
        return started

    def celery(self) -> Celery:
        """A Celery app of this deployment, as Flower would hold one (control: inspect, revoke)."""
        if self._celery is None:
            from workers.celery_app import make_celery

            self._celery = make_celery(self.settings)
        return self._celery

    def logs(self) -> str:
        return "\n".join(f"--- {item.log_path.name}\n{item.log()[-15000:]}" for item in self.processes)

    def stop(self) -> None:
        if self.api is not None:
            self.api.http.close()
        for process in self.processes:
            process.stop()
        if self._celery is not None:
            self._celery.close()


def release(rollway: Deployment, ledger: Ledger) -> dict[str, Any]:
    """The release pipeline and its rollback pipeline, created through the API."""
    assert rollway.api is not None
    rollway.api.create(undo_pipeline(ledger.url))
    created: dict[str, Any] = rollway.api.create(release_pipeline(ledger.url))
    return created
