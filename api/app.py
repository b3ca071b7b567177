"""The Flask app factory."""

from __future__ import annotations

import logging

from celery import Celery
from flask import Blueprint, Flask

from api import (
    accesslog,
    audit,
    auth,
    endpoints,
    executions,
    health,
    metrics,
    monitoring,
    pipelines,
    templates,
    tokens,
    triggers,
    useroperations,
    variables,
)
from api.errors import register_error_handlers
from api.services import EXTENSION, Services
from api.web import pages
from orchestrator import defaults
from orchestrator.audit import AuditTrail
from orchestrator.engine import Engine
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.tokens import Tokens
from workers.celery_app import make_celery
from workers.dispatcher import CeleryDispatcher
from workers.probe import EndpointProber

log = logging.getLogger(__name__)


def create_app(settings: Settings, celery: Celery | None = None, *, live_streams: int = 2) -> Flask:
    """The Rollway API on these settings; executions are sent to Celery through `celery` (made if None).

    `live_streams` is how many pages may follow the event log at once (each holds one of the server's threads).
    """
    # The pages serve their own static files (api/web/static), so the app has none of its own.
    app = Flask("rollway", static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = defaults.MAX_REQUEST_BYTES
    store = Store.connect(
        settings.database_url,
        settings.secret_key,
        old_secret_keys=settings.secret_key_old,
        migrate=False,
        for_api=True,
    )
    celery = celery or make_celery(settings)
    engine = Engine(store, CeleryDispatcher(celery), settings.sweep_seconds, EndpointProber(settings.egress_deny))
    app.extensions[EXTENSION] = Services(
        settings, store, engine, celery, Tokens(store.engine), AuditTrail(store.engine)
    )
    if settings.api_token is None:
        log.warning("ROLLWAY_API_TOKEN is not set: the API accepts every request without a token")

    accesslog.install(app)
    app.before_request(auth.check_token)
    app.after_request(audit.record)
    api = Blueprint("api", __name__, url_prefix="/api")
    api.register_blueprint(pipelines.blueprint)
    api.register_blueprint(executions.blueprint)
    api.register_blueprint(endpoints.blueprint)
    api.register_blueprint(templates.blueprint)
    api.register_blueprint(tokens.blueprint)
    api.register_blueprint(triggers.blueprint)
    api.register_blueprint(variables.blueprint)
    api.register_blueprint(useroperations.blueprint)
    api.register_blueprint(audit.blueprint)
    api.register_blueprint(monitoring.blueprint)
    app.register_blueprint(api)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(metrics.blueprint)
    pages.register(app, settings, live_streams)
    register_error_handlers(app)
    return app
