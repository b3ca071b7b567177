"""Rollway's Redis broker transport: kombu's own, made to survive a Redis restart under Celery 5.7.

Celery 5.7.0 cleans up a lost broker connection in two passes, `Connection.collect()` then
`Connection.close()` (celery/celery#10242). The first pass stops half-way through closing the channel, when
draining its pending BRPOP hits the dead socket, and then detaches the transport from its connection
(`transport.client = None`). The second pass closes that half-closed channel again. If the channel holds
unacknowledged messages (an ETA task waiting, or a late-acked task running), kombu tries to restore them,
needs a new connection pool for that, and reads the broker address from the detached `transport.client`.
The result is `AttributeError: 'NoneType' object has no attribute 'hostname'`, which Celery does not treat
as a connection error, so the worker exits instead of reconnecting.

Here a detached channel refuses to open a connection and raises redis' ConnectionError instead. kombu and
Celery already treat that error as recoverable: the close is abandoned, the worker reconnects, and the
messages it held stay in Redis' unacked hash until the visibility timeout hands them out again. That is
what kombu and Celery 5.6 did too.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)

DETACHED = (
    "not restoring unacknowledged messages now: the broker connection is gone; "
    "Redis hands them out again after the visibility timeout"
)


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, except that it opens no connection once its transport is detached."""

    @property
    def pool(self) -> Any:
        self._refuse_if_detached()
        return super().pool

    @property
    def async_pool(self) -> Any:
        self._refuse_if_detached()
        return super().async_pool

    def _refuse_if_detached(self) -> None:
        # Connection.collect() or close() has run: the broker address is gone with the connection.
        if getattr(self.connection, "client", None) is None:
            logger.warning(DETACHED)
            raise RedisConnectionError(DETACHED)


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """kombu's Redis Sentinel channel, except that it opens no connection once its transport is detached."""


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with Rollway's channel."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Redis Sentinel transport with Rollway's channel."""

    Channel = SentinelChannel


# kombu picks its TLS defaults by the scheme's name, `rediss`, so a rediss:// broker keeps kombu's transport.
TRANSPORTS = {
    "redis": f"{__name__}:{Transport.__name__}",
    "sentinel": f"{__name__}:{SentinelTransport.__name__}",
}


def broker_transport(broker_url: str) -> str | None:
    """Celery's `broker_transport` for a broker URL: Rollway's for redis:// and sentinel://, else Celery's choice."""
    return TRANSPORTS.get(urlsplit(broker_url).scheme)
