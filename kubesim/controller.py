"""The control loop: runs the simulated node, ReplicaSet, Deployment and Job controllers and the garbage collector,
on a tick and whenever a client writes."""

from __future__ import annotations

import logging
import threading

from kubesim.clock import Clock
from kubesim.commands import CommandPolicy
from kubesim.deployments import DeploymentController
from kubesim.images import ImagePolicy
from kubesim.jobs import JobController
from kubesim.kubelet import Kubelet
from kubesim.network import Network
from kubesim.objects import name_of, namespace_of, owner_uids, uid_of
from kubesim.registry import Registry
from kubesim.replicasets import ReplicaSetController
from kubesim.resources import RESOURCES
from kubesim.watch import Event

LOG = logging.getLogger("kubesim")


class ControlLoop:
    """Drives every simulated controller; ``step`` is one full pass and can be called directly in tests."""

    def __init__(
        self,
        registry: Registry,
        images: ImagePolicy,
        network: Network,
        clock: Clock,
        *,
        ready_delay: float,
        tick: float = 0.05,
        commands: CommandPolicy | None = None,
    ):
        self._registry = registry
        self._tick = tick
        self.kubelet = Kubelet(registry, images, network, clock, ready_delay, commands=commands)
        self.jobs = JobController(registry, clock)
        self.replica_sets = ReplicaSetController(registry, clock)
        self.deployments = DeploymentController(registry, clock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stepping = False
        self._thread: threading.Thread | None = None
        registry.store.add_listener(self._on_event)

    def step(self) -> None:
        """One pass of every controller, atomically with respect to API requests."""
        with self._registry.store.lock:
            self._stepping = True
            try:
                self._registry.finalize_namespaces()
                self._collect_garbage()
                self.kubelet.sync()
                self.replica_sets.sync_status()
                self.deployments.reconcile()
                self.replica_sets.sync_pods()
                self.jobs.sync()
                self.kubelet.sync()
                self.jobs.sync()
                self.replica_sets.sync_status()
                self.deployments.sync_status()
            finally:
                self._stepping = False

    def start(self) -> None:
        """Run ``step`` in a daemon thread until ``stop``; again after a ``stop``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kubesim-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._tick)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.step()
            except Exception:
                # A bug in one pass must not silently stop the cluster: log it and try again next tick.
                LOG.exception("kubesim controllers failed")

    def _on_event(self, event: Event) -> None:
        # A client's write wakes the loop early; the loop's own writes do not, or it would never rest.
        if not self._stepping:
            self._wake.set()

    def _collect_garbage(self) -> None:
        """Delete objects all of whose owners are gone, as the garbage collector does."""
        everything = [(kind, item) for kind in RESOURCES for item in self._registry.store.list(kind.qualified)]
        alive = {uid_of(item) for _, item in everything}
        for kind, item in everything:
            owners = owner_uids(item)
            orphaned = bool(owners) and not alive.intersection(owners)
            # An earlier deletion in this pass may already have taken the object with its owner.
            if orphaned and self._registry.store.get(kind.qualified, namespace_of(item), name_of(item)) is not None:
                self._registry.delete(kind, namespace_of(item), name_of(item))
