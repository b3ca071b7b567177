"""Rollway's settings: one frozen, typed object built once at start-up and passed in explicitly."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator import defaults
from orchestrator.errors import ConfigurationError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

Network = IPv4Network | IPv6Network
# `ROLLWAY_EGRESS_DENY=none`: REST and POLL tasks may reach every address.
DENY_NOTHING = "none"


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses; ValueError naming the first that is neither."""
    found: list[Network] = []
    for entry in entries:
        try:
            # Not strict: `10.1.2.3/8` means the range it lies in, as `ip route` reads it.
            found.append(ip_network(entry.strip(), strict=False))
        except ValueError as error:
            raise ValueError(f"{entry.strip()!r} is not a CIDR such as 10.0.0.0/8 or fd00::/8") from error
    return tuple(found)


DEFAULT_EGRESS_DENY = networks(defaults.EGRESS_DENY)


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """Where the embedded SQLite database lives when no database URL is given (XDG data home)."""
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", ".")) / ".local" / "share")
    return Path(base) / "rollway"


@dataclass(frozen=True)
class Settings:
    """Everything Rollway reads from its environment.

    `redis_url` is the Celery broker and result backend; `None` means Celery's in-memory transport,
    which only works with a worker inside the same process (the embedded demo). `redis_prefix` starts
    every Redis key Rollway uses, so deployments sharing one Redis never see each other's queues.
    `lease_seconds` and `sweep_seconds`: see `orchestrator/defaults.py`. `egress_deny` lists the networks REST
    and POLL tasks may not reach (`ROLLWAY_EGRESS_DENY`, see `egress_deny_from`). `secret_key_old` holds keys
    that sealed credentials before `secret_key` replaced them: they still open, until `rollway db rotate-key`.
    """

    database_url: str
    redis_url: str | None = DEFAULT_REDIS_URL
    secret_key: str | None = None
    api_token: str | None = None
    redis_prefix: str = ""
    lease_seconds: float = defaults.LEASE_SECONDS
    sweep_seconds: float = defaults.SWEEP_SECONDS
    egress_deny: tuple[Network, ...] = DEFAULT_EGRESS_DENY
    # Last, so positional construction keeps its meaning.
    secret_key_old: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `ROLLWAY_*` variables once; unset ones take their embedded defaults."""
        env = os.environ if environ is None else environ
        database_url = env.get("ROLLWAY_DATABASE_URL") or sqlite_url(default_data_dir(env) / "rollway.db")
        settings = cls(
            database_url=database_url,
            redis_url=env.get("ROLLWAY_REDIS_URL") or DEFAULT_REDIS_URL,
            secret_key=env.get("ROLLWAY_SECRET_KEY") or None,
            secret_key_old=_key_list(env.get("ROLLWAY_SECRET_KEY_OLD", "")),
            api_token=env.get("ROLLWAY_API_TOKEN") or None,
            redis_prefix=env.get("ROLLWAY_REDIS_PREFIX", ""),
            lease_seconds=_seconds(env, "ROLLWAY_LEASE_SECONDS", defaults.LEASE_SECONDS),
            sweep_seconds=_seconds(env, "ROLLWAY_SWEEP_SECONDS", defaults.SWEEP_SECONDS),
            egress_deny=egress_deny_from(env.get("ROLLWAY_EGRESS_DENY", "")),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigurationError naming the setting whose value cannot work."""
        scheme = urlsplit(self.database_url).scheme.split("+")[0]
        if scheme not in ("sqlite", "postgresql"):
            raise ConfigurationError(
                f"ROLLWAY_DATABASE_URL must be a sqlite:// or postgresql:// URL, not {self.database_url!r}"
            )
        if self.redis_url is not None and urlsplit(self.redis_url).scheme not in ("redis", "rediss", "sentinel"):
            raise ConfigurationError(f"ROLLWAY_REDIS_URL must be a redis:// URL, not {self.redis_url!r}")
        if self.secret_key_old and not self.secret_key:
            raise ConfigurationError(
                "ROLLWAY_SECRET_KEY_OLD is set but ROLLWAY_SECRET_KEY is not: old keys open, only the current one seals"
            )

    @property
    def broker_url(self) -> str:
        return self.redis_url or "memory://"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def with_changes(self, **changes: object) -> Settings:
        """A copy with some fields replaced (tests and the demo build their own settings this way)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def _key_list(text: str) -> tuple[str, ...]:
    """The keys of a comma-separated list, blanks dropped."""
    return tuple(key for key in (part.strip() for part in text.split(",")) if key)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds from the environment; ConfigurationError naming the variable otherwise."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    # At most a day: a longer lease or sweep would leave a lost release unnoticed for longer than anyone waits.
    if not 0 < value <= 86400:
        raise ConfigurationError(f"{name} must be a number of seconds above 0 and at most 86400, not {text!r}")
    return value


def egress_deny_from(text: str) -> tuple[Network, ...]:
    """The value of `ROLLWAY_EGRESS_DENY`: comma-separated CIDRs, which replace the default list.

    Unset or empty means the default (`defaults.EGRESS_DENY`), like every other Rollway variable: a deployment
    file that passes an empty value on must not open the metadata service by accident. `none` denies nothing.
    """
    text = text.strip()
    if not text:
        return DEFAULT_EGRESS_DENY
    if text.lower() == DENY_NOTHING:
        return ()
    try:
        return networks(entry for entry in text.split(",") if entry.strip())
    except ValueError as error:
        raise ConfigurationError(f"ROLLWAY_EGRESS_DENY: {error}; give comma-separated CIDRs, or none") from error


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"
