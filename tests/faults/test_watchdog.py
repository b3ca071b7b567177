"""The database watchdog (`orchestrator/watchdog.py`): a PostgreSQL that stops answering in the middle of a
query makes that query fail within the hold limit instead of hanging, and the next one works once it is back."""

from __future__ import annotations

import pytest
from harness import TcpProxy
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from orchestrator.store import make_engine

pytestmark = pytest.mark.faults


def test_a_query_to_a_database_that_hangs_fails_within_the_hold_limit(proxied_url: str, proxy: TcpProxy) -> None:
    # Given an engine through a proxy, whose connections may be held 1 s, and one good query through it
    engine = make_engine(proxied_url, hold_seconds=1.0, pre_ping=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1

    # When the database stops answering in the middle of the next query
    # Then the query fails (without the watchdog it would wait for as long as the proxy holds, here forever)
    with engine.connect() as conn:
        proxy.hang()
        with pytest.raises(OperationalError):
            conn.execute(text("SELECT 2"))
    # ... and once it is back, the engine works again without being rebuilt
    proxy.resume()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 3")).scalar_one() == 3
    engine.dispose()


def test_a_pooled_connection_to_a_database_that_hangs_fails_its_ping_within_the_hold_limit(
    proxied_url: str, proxy: TcpProxy
) -> None:
    # Given an engine that pings its pooled connections, with one connection used once and back in the pool
    engine = make_engine(proxied_url, hold_seconds=1.0, pre_ping=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1

    # When the database hangs before the next use
    proxy.hang()

    # Then taking a connection fails (its ping is cut, and a new connection times out), rather than waiting
    with pytest.raises(OperationalError):
        engine.connect().close()
    proxy.resume()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 2")).scalar_one() == 2
    engine.dispose()
