"""A worker's database work retried through an outage (`workers/dbretry.py`), with errors from a real PostgreSQL
client: a refused connection may pass, a constraint never will."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from orchestrator.errors import DatabaseUnavailable
from orchestrator.store import make_engine
from workers.dbretry import with_retry


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def refused() -> Iterator[Engine]:
    """An engine whose every connection is refused: nothing listens on its port."""
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{closed_port()}/rollway")
    yield engine
    engine.dispose()


def select_one(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT 1")).scalar_one())


def test_a_refused_connection_is_retried_with_backoff_until_the_database_answers(pg_url: str, refused: Engine) -> None:
    # Given a database that refuses the first two attempts, then answers
    good = make_engine(pg_url)
    attempts: list[Engine] = []

    def work() -> int:
        attempts.append(refused if len(attempts) < 2 else good)
        return select_one(attempts[-1])

    # When the work is retried
    waits: list[float] = []
    answer = with_retry(work, "test", sleep=waits.append)
    good.dispose()

    # Then it got its answer on the third attempt, after waiting longer each time
    assert answer == 1 and len(attempts) == 3
    assert waits == [0.2, 0.4]


def test_an_outage_longer_than_the_budget_gives_up_saying_how_long_it_tried(refused: Engine) -> None:
    # Given a database that never answers, and a clock that moves 10 s per wait
    clock = [0.0]

    def wait(seconds: float) -> None:
        clock[0] += 10.0

    # When the work is retried with a 30 s budget
    with pytest.raises(DatabaseUnavailable, match=r"claim: the database is still unreachable after 30 s"):
        with_retry(lambda: select_one(refused), "claim", budget=30.0, sleep=wait, clock=lambda: clock[0])


def test_an_error_that_will_not_pass_is_raised_at_once(pg_url: str) -> None:
    # Given work that breaks a constraint of a real table
    engine = make_engine(pg_url)

    def work() -> None:
        with engine.begin() as conn:
            conn.execute(text("CREATE TEMP TABLE once (id int primary key)"))
            conn.execute(text("INSERT INTO once VALUES (1), (1)"))

    # When it is run with retries, then the first error is raised, not retried
    waits: list[float] = []
    with pytest.raises(Exception, match="duplicate key") as raised:
        with_retry(work, "test", sleep=waits.append)
    engine.dispose()
    assert not isinstance(raised.value, DatabaseUnavailable) and waits == []


def test_a_k8s_task_whose_endpoint_cannot_be_read_is_not_failed_by_the_database(refused: Engine) -> None:
    # Given a K8S task whose endpoint is read from a database that refuses every connection
    from orchestrator.store import Store
    from workers.executors.base import TaskCall
    from workers.executors.k8s import K8sExecutor

    store = Store(refused)
    executor = K8sExecutor(lambda endpoint_id: with_retry(lambda: store.get_endpoint(endpoint_id), "read", budget=0.3))
    call = TaskCall("K8S", {"action": "GET", "yaml": "kind: Namespace\napiVersion: v1\nmetadata: {name: x}\n"})
    call = TaskCall(call.type, call.input, endpoints={"kubernetesServer": "endpoint-1"}, run_id="run-1")

    # When it runs, Then the outage is raised as Rollway's own (the worker puts the message back), not a failure
    with pytest.raises(DatabaseUnavailable, match="still unreachable"):
        executor.execute(call)
