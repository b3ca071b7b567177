"""``KubeSim``: one emulated cluster — store, controllers and HTTP server — with a start/stop lifecycle."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import TracebackType

from kubesim.admin import FaultInjector
from kubesim.clock import Clock, SystemClock
from kubesim.commands import CommandPolicy
from kubesim.controller import ControlLoop
from kubesim.images import ImagePolicy
from kubesim.network import NODE_IP, NODE_NAME, Network
from kubesim.proxy import ServiceHealth
from kubesim.registry import Registry
from kubesim.resources import NAMESPACES, NODES, SERVICES
from kubesim.routes import Router
from kubesim.server import ApiServer
from kubesim.store import Store

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class KubeSim:
    """An emulated Kubernetes cluster served over HTTP.

    ``port=0`` picks a free port; ``url`` tells which after ``start``. ``stop`` then ``start`` is a restart of the
    API server: on the same port, with the same objects. ``unpullable`` and ``crashing`` are image names or globs;
    so is ``failing``: the images whose Job commands exit 1 (see ``commands.py``: kubesim runs no command);
    ``ready_delay`` is how long a new pod takes to become Ready, and a Job's command to run; ``token``, when set,
    is the only bearer token accepted (others get 401).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        unpullable: Iterable[str] = (),
        crashing: Iterable[str] = (),
        failing: Iterable[str] = (),
        ready_delay: float = 0.3,
        token: str | None = None,
        clock: Clock | None = None,
        tick: float = 0.05,
        history_limit: int = 2000,
    ):
        self._host = host
        self._port = port
        self._token = token
        self.clock = clock or SystemClock()
        self.images = ImagePolicy(unpullable, crashing)
        self.faults = FaultInjector()
        self.commands = CommandPolicy(failing)
        self.store = Store(history_limit)
        network = Network()
        self.registry = Registry(self.store, self.clock, network)
        self.controllers = ControlLoop(
            self.registry, self.images, network, self.clock, ready_delay=ready_delay, tick=tick, commands=self.commands
        )
        self._server: ApiServer | None = None
        self._thread: threading.Thread | None = None
        self._bootstrap()

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError("KubeSim is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> KubeSim:
        """Serve in background threads; returns ``self``."""
        if self._server is not None:
            return self
        health = ServiceHealth(self.registry, self.images)
        router = Router(self.registry, health, self.clock, self._address, self.controllers.kubelet)
        self._server = ApiServer(
            (self._host, self._port),
            router=router,
            store=self.store,
            images=self.images,
            faults=self.faults,
            token=self._token,
            commands=self.commands,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="kubesim-http", daemon=True
        )
        self._thread.start()
        self.controllers.start()
        return self

    def stop(self) -> None:
        """Stop the controllers, end open watches and close the server."""
        self.controllers.stop()
        if self._server is not None:
            self._server.stopping.set()
            self.store.close()
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._port = self._server.server_address[1]  # a restart comes back where clients look for it
            self._server = None

    def set_images(self, unpullable: Iterable[str] | None = None, crashing: Iterable[str] | None = None) -> None:
        """Replace the unpullable and/or crashing image lists (``None`` keeps a list)."""
        self.images.set(unpullable, crashing)

    def set_commands(self, failing: Iterable[str] | None = None, variables: Mapping[str, str] | None = None) -> None:
        """Replace the images whose Job commands fail, and/or the values their commands would set."""
        self.commands.set(failing, variables)

    def inject_faults(self, status: int, count: int, retry_after: int | str | None = None) -> None:
        """Answer the next ``count`` API requests with HTTP ``status`` (and ``Retry-After``, seconds or HTTP-date)."""
        self.faults.arm(status, count, retry_after)

    def __enter__(self) -> KubeSim:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _address(self) -> str:
        return self.url.removeprefix("http://")

    def _bootstrap(self) -> None:
        """The objects every cluster starts with: system namespaces, the node and the ``kubernetes`` service."""
        for name in SYSTEM_NAMESPACES:
            self.registry.create(NAMESPACES, "", {"metadata": {"name": name}})
        node = {
            "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
            "status": {
                "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE_NAME}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": "kubesim",
                    "containerRuntimeVersion": "containerd://1.4.3",
                    "kernelVersion": "5.10.0",
                    "kubeProxyVersion": "v1.20.2",
                    "kubeletVersion": "v1.20.2",
                    "machineID": "kubesim",
                    "operatingSystem": "linux",
                    "osImage": "kubesim",
                    "systemUUID": "kubesim",
                },
            },
        }
        self.registry.create(NODES, "", node)
        service = {
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
        }
        self.registry.create(SERVICES, "default", service)
