"""The Celery app factory, and the per-process context its tasks use."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from kombu import Queue

from orchestrator import defaults
from orchestrator.endpoints import Endpoint
from orchestrator.engine import Engine
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.sweep import Sweeper
from workers.broker import broker_transport
from workers.constants import QUEUE_DEFAULT, QUEUE_ORCHESTRATOR, QUEUES, TASK_SWEEP
from workers.dbretry import with_retry
from workers.dispatcher import CeleryDispatcher, NamedMessages
from workers.executors import build_executors
from workers.heartbeat import Heartbeat
from workers.http import HttpClient
from workers.notifier import Notifier
from workers.probe import EndpointProber
from workers.runner import TaskRunner


class Context:
    """What one process needs to run Rollway tasks, built on first use.

    Built lazily because a prefork worker forks after the app is made: database connections must be
    opened in the child that uses them.
    """

    def __init__(self, settings: Settings, celery: Celery) -> None:
        self.settings = settings
        self.celery = celery

    @cached_property
    def store(self) -> Store:
        settings = self.settings
        return Store.connect(
            settings.database_url, settings.secret_key, old_secret_keys=settings.secret_key_old, migrate=False
        )

    @cached_property
    def dispatcher(self) -> CeleryDispatcher:
        return CeleryDispatcher(self.celery)

    @cached_property
    def engine(self) -> Engine:
        prober = EndpointProber(self.settings.egress_deny)
        return Engine(self.store, self.dispatcher, self.settings.sweep_seconds, prober)

    @cached_property
    def notifier(self) -> Notifier:
        return Notifier(self.store, HttpClient(self.settings.egress_deny), self.settings.egress_deny)

    @cached_property
    def runner(self) -> TaskRunner:
        executors = build_executors(HttpClient(self.settings.egress_deny), self.endpoint)
        heartbeat = Heartbeat(self.store, self.settings.lease_seconds)
        return TaskRunner(self.store, self.engine, executors, heartbeat)

    def endpoint(self, endpoint_id: str) -> Endpoint:
        """An endpoint for an executor, read through a database outage like every other read of a worker."""
        return with_retry(lambda: self.store.get_endpoint(endpoint_id), "read an endpoint")

    @cached_property
    def sweeper(self) -> Sweeper:
        return Sweeper(self.engine, self.settings.lease_seconds)

    def reset(self) -> None:
        """Forget everything built so far (a forked child must not share its parent's connections)."""
        store = self.__dict__.pop("store", None)
        if store is not None:
            store.engine.dispose(close=False)
        for name in ("engine", "runner", "sweeper", "notifier"):
            self.__dict__.pop(name, None)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for Rollway's queues: late acks, one message at a time, JSON only, and the sweep's beat."""
    transport_options: dict[str, Any] = {"visibility_timeout": defaults.VISIBILITY_TIMEOUT_SECONDS}
    if settings.redis_prefix:
        transport_options["global_keyprefix"] = settings.redis_prefix
    if settings.redis_url is None:
        # The in-memory transport polls its queues, once a second unless told otherwise.
        transport_options = {"polling_interval": 0.01}
    return {
        "broker_url": settings.broker_url,
        # kombu's Redis transport, made to survive a Redis restart under Celery 5.7 (see workers/broker.py).
        "broker_transport": broker_transport(settings.broker_url),
        "result_backend": settings.redis_url or "cache+memory://",
        "broker_transport_options": transport_options,
        "result_backend_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": QUEUE_DEFAULT,
        "task_queues": [Queue(name) for name in QUEUES],
        "task_routes": {TASK_SWEEP: {"queue": QUEUE_ORCHESTRATOR}},
        # Task events for Flower (`rollway flower`): workers send them (as `celery worker -E` would), and so does
        # whoever sends a task, so a message no worker has taken yet is listed too.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": 3600,
        "timezone": "UTC",
        # A task that finishes while the broker is away records its outcome in the database; cancelling it on
        # the lost connection would only make the sweep run it again.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # Beat keeps no schedule file: the sweep is one interval, so after a restart it simply runs again.
        "beat_scheduler": "celery.beat:Scheduler",
        "beat_schedule": {
            "rollway-sweep": {
                "task": TASK_SWEEP,
                "schedule": settings.sweep_seconds,
                # A sweep nobody took before the next one is due is dropped, not piled up behind it.
                "options": {"queue": QUEUE_ORCHESTRATOR, "expires": settings.sweep_seconds},
            }
        },
    }


def make_celery(settings: Settings) -> Celery:
    """A Celery app with Rollway's queues and tasks registered, each working through one process context."""
    from workers.tasks import register_tasks

    app = Celery("rollway", set_as_current=False, amqp=NamedMessages)
    app.conf.update(celery_config(settings))
    context = Context(settings, app)
    register_tasks(app, context)

    def _forked(**_: object) -> None:
        context.reset()

    worker_process_init.connect(_forked, weak=False)
    return app
