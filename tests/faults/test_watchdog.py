"""The database watchdog (`orchestrator/watchdog.py`): a PostgreSQL that stops answering in the middle of a
query makes that query fail within seconds instead of hanging, and the next one works once it is back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import TcpProxy
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from orchestrator.store import make_engine

pytestmark = pytest.mark.faults


@pytest.fixture
def hanging_proxy(pg_url: str) -> Iterator[TcpProxy]:
    url = make_url(pg_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432)).start()
    yield proxy
    proxy.stop()


def test_a_query_to_a_database_that_hangs_fails_within_the_hold_limit(pg_url: str, hanging_proxy: TcpProxy) -> None:
    # Given an engine through a proxy, whose connections may be held 1 s, and one good query through it
    url = make_url(pg_url).set(port=hanging_proxy.port)
    engine = make_engine(url.render_as_string(hide_password=False), hold_seconds=1.0, pre_ping=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1

    # When the database stops answering in the middle of the next query
    # Then the query fails (without the watchdog it would wait for as long as the proxy holds, here forever)
    with engine.connect() as conn:
        hanging_proxy.hang()
        with pytest.raises(OperationalError):
            conn.execute(text("SELECT 2"))
    # ... and once it is back, the engine works again without being rebuilt
    hanging_proxy.resume()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 3")).scalar_one() == 3
    engine.dispose()
