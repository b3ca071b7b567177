"""Rollway's settings: one frozen, typed object built once at start-up and passed in explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator import defaults
from orchestrator.errors import ConfigurationError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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
    `lease_seconds` and `sweep_seconds`: see `orchestrator/defaults.py`. `secret_key_old` holds keys that
    sealed credentials before `secret_key` replaced them: they still open, until `rollway db rotate-key`.
    """

    database_url: str
    redis_url: str | None = DEFAULT_REDIS_URL
    secret_key: str | None = None
    api_token: str | None = None
    redis_prefix: str = ""
    lease_seconds: float = defaults.LEASE_SECONDS
    sweep_seconds: float = defaults.SWEEP_SECONDS
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


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"
