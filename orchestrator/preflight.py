"""The pre-flight check's I/O: read what `readiness.py` decides over, probe the endpoints whose probe is stale, and
keep probe results in the database (`endpoints.probed_at`, `probe_ok`, `probe_message`).

The probe itself is injected (`Prober`): it talks HTTP with an endpoint's credentials, which the orchestrator never
does itself (`workers/probe.py` is the real one). Without a prober, stale endpoints stay stale, and the decision
says so: a release is never let through on a probe nobody made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import Connection, or_, select

from orchestrator import defaults, readiness
from orchestrator.endpoints import Endpoint, Probe, probe_of
from orchestrator.errors import NotFound, Problem
from orchestrator.execution import PipelineRecord
from orchestrator.pipeline import Pipeline
from orchestrator.redaction import Secrets, redact_message
from orchestrator.schema import endpoints, now, pipelines, variables
from orchestrator.store import Store

log = logging.getLogger(__name__)

Prober = Callable[[Endpoint], tuple[bool, str]]
"""Ask an endpoint whether it answers with its credentials: (answered, what it said, for people)."""

# Probes of several endpoints run side by side, so a trigger waits for the slowest, not for their sum.
PARALLEL_PROBES = 8


class Preflight:
    """Decides whether a release may start, probing inline what the sweep has not kept fresh."""

    def __init__(
        self,
        store: Store,
        prober: Prober | None = None,
        fresh_seconds: float = defaults.PROBE_FRESH_SECONDS,
        refresh_seconds: float = defaults.PROBE_REFRESH_SECONDS,
    ) -> None:
        self.store = store
        self.prober = prober
        self.fresh_seconds = fresh_seconds
        self.refresh_seconds = refresh_seconds

    def check(self, pipeline: Pipeline) -> list[Problem]:
        """Why a release of `pipeline` must not start (empty: it may); stale or failed probes are made again first."""
        names = readiness.targets(pipeline)
        if not names:
            return []
        project = pipeline.project
        with self.store.transaction() as tx:
            rollbacks = {name: _rollback(tx.find_pipeline(project, name)) for name in names}
            wanted = readiness.endpoints_named(rollbacks.values())
            found = _probes(tx.conn, project, wanted)
            known = _variable_names(tx.conn, project)
        stamp = now()
        # A failed probe is asked again too: whoever triggers may just have fixed the endpoint, and a refusal
        # on an answer from before the fix would only teach them to force.
        stale = [
            endpoint_id
            for endpoint_id, probe in found.values()
            if not readiness.is_fresh(probe, stamp, self.fresh_seconds) or not (probe and probe.ok)
        ]
        if stale and self.prober is not None:
            self.probe(stale)
            with self.store.transaction() as tx:
                found = _probes(tx.conn, project, wanted)
        probes = {name: probe for name, (_, probe) in found.items()}
        facts = readiness.Facts(project, rollbacks, probes, known, now(), self.fresh_seconds)
        return readiness.reasons(pipeline, facts)

    def refresh(self, batch: int = defaults.PROBE_BATCH) -> int:
        """Probe the endpoints of enabled pipelines' rollback pipelines whose probe is older than the refresh
        window (the sweep's step), oldest first, at most `batch`; how many were probed."""
        if self.prober is None:
            return 0
        with self.store.transaction() as tx:
            due = _due(tx.conn, now() - timedelta(seconds=self.refresh_seconds), batch)
        self.probe(due)
        return len(due)

    def probe(self, endpoint_ids: Iterable[str]) -> None:
        """Probe endpoints side by side and record each answer."""
        ids = list(endpoint_ids)
        if not ids or self.prober is None:
            return
        with ThreadPoolExecutor(max_workers=min(PARALLEL_PROBES, len(ids)), thread_name_prefix="probe") as pool:
            list(pool.map(self._probe_one, ids))

    def _probe_one(self, endpoint_id: str) -> None:
        assert self.prober is not None
        try:
            endpoint = self.store.get_endpoint(endpoint_id)
        except NotFound:  # deleted meanwhile: nothing to record
            return
        try:
            ok, message = self.prober(endpoint)
        except Exception as error:  # a prober's bug must not fail a trigger or a sweep: it is a failed probe
            log.warning("probing endpoint %s failed: %s", endpoint.name, type(error).__name__)
            ok, message = False, f"the probe itself failed ({type(error).__name__})"
        # Said by a server or an HTTP library: masked as any message, and the endpoint's own secrets with it.
        secrets = Secrets.of([endpoint.token, endpoint.ca_data, endpoint.kubeconfig])
        record(self.store, endpoint, Probe(now(), ok, redact_message(message, secrets)[:1000]))


def record(store: Store, endpoint: Endpoint, probe: Probe) -> bool:
    """Keep a probe of `endpoint`, unless the endpoint changed since it was read (its probe is then about URL or
    credentials it no longer has); whether it was kept."""
    with store.engine.begin() as conn:
        kept = conn.execute(
            endpoints.update()
            .where(endpoints.c.id == endpoint.id, endpoints.c.updated_at == endpoint.updated_at)
            .values(probed_at=probe.at, probe_ok=probe.ok, probe_message=probe.message)
        )
    return kept.rowcount == 1


def _rollback(record: PipelineRecord | None) -> readiness.RollbackPipeline | None:
    return None if record is None else readiness.RollbackPipeline.of(record.pipeline)


def _probes(conn: Connection, project: str, names: list[str]) -> dict[str, tuple[str, Probe | None]]:
    """name -> (id, last probe) of the project's endpoints among `names`; a name that is not there does not exist."""
    if not names:
        return {}
    rows = conn.execute(
        select(
            endpoints.c.id, endpoints.c.name, endpoints.c.probed_at, endpoints.c.probe_ok, endpoints.c.probe_message
        ).where(endpoints.c.project == project, endpoints.c.name.in_(names))
    )
    return {row.name: (row.id, probe_of(row)) for row in rows}


def _variable_names(conn: Connection, project: str) -> frozenset[str]:
    rows = conn.execute(select(variables.c.name).where(variables.c.project == project))
    return frozenset(row.name for row in rows)


def _due(conn: Connection, before: datetime, limit: int) -> list[str]:
    """Ids of endpoints the sweep should probe now: named by a rollback pipeline of an enabled pipeline, and probed
    before `before` (or never), the oldest first."""
    rows = conn.execute(
        select(
            pipelines.c.project,
            pipelines.c.name,
            pipelines.c.enabled,
            pipelines.c.rollback_targets,
            pipelines.c.endpoint_names,
        )
    )
    wanted = readiness.rollback_endpoints(
        (row.project, row.name, row.enabled, row.rollback_targets, row.endpoint_names) for row in rows
    )
    if not wanted:
        return []
    candidates = conn.execute(
        select(endpoints.c.id, endpoints.c.project, endpoints.c.name, endpoints.c.probed_at)
        .where(or_(endpoints.c.probed_at.is_(None), endpoints.c.probed_at < before))
        .where(endpoints.c.name.in_(sorted({name for _, name in wanted})))
    )
    # Never probed first, then the oldest probe.
    due = sorted(
        (row.probed_at is not None, row.probed_at or before, row.id)
        for row in candidates
        if (row.project, row.name) in wanted
    )
    return [endpoint_id for _, _, endpoint_id in due[:limit]]
