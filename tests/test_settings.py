"""Settings read once from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigurationError
from orchestrator.settings import DEFAULT_REDIS_URL, Settings


def test_unset_variables_take_the_embedded_defaults(tmp_path: Path) -> None:
    # Given an environment with nothing of Rollway's in it
    settings = Settings.from_env({"HOME": str(tmp_path)})

    # Then the database is a SQLite file under the user's data folder, and Redis is the local one
    assert settings.database_url == f"sqlite:///{tmp_path}/.local/share/rollway/rollway.db"
    assert (tmp_path / ".local/share/rollway").is_dir()
    assert settings.redis_url == DEFAULT_REDIS_URL and settings.broker_url == DEFAULT_REDIS_URL
    assert (settings.api_token, settings.secret_key, settings.redis_prefix) == (None, None, "")


def test_each_variable_sets_its_field() -> None:
    # Given every ROLLWAY_ variable
    environ = {
        "ROLLWAY_DATABASE_URL": "postgresql://postgres@db/rollway",
        "ROLLWAY_REDIS_URL": "redis://cache:6380/2",
        "ROLLWAY_SECRET_KEY": "s3cret",
        "ROLLWAY_API_TOKEN": "t0ken",
        "ROLLWAY_REDIS_PREFIX": "team-a:",
        "ROLLWAY_LEASE_SECONDS": "20",
        "ROLLWAY_SWEEP_SECONDS": "2.5",
    }

    # When read
    settings = Settings.from_env(environ)

    # Then each is where a reader expects it
    assert settings == Settings(
        "postgresql://postgres@db/rollway", "redis://cache:6380/2", "s3cret", "t0ken", "team-a:", 20.0, 2.5
    )
    assert not settings.is_sqlite


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf", "nan", "100000"])
@pytest.mark.parametrize("name", ["ROLLWAY_LEASE_SECONDS", "ROLLWAY_SWEEP_SECONDS"])
def test_a_lease_or_sweep_interval_that_cannot_work_is_refused_naming_the_variable(name: str, value: str) -> None:
    # Given a timing that is not a positive number of seconds up to a day
    # When read, then it is refused, naming the variable and the value
    with pytest.raises(ConfigurationError, match=f"{name} must be a number of seconds.*{value!r}"):
        Settings.from_env({"ROLLWAY_DATABASE_URL": "sqlite:///x.db", name: value})


def test_lease_and_sweep_default_to_a_minute_and_fifteen_seconds() -> None:
    # Given neither timing set, when read, then the documented defaults apply
    settings = Settings.from_env({"ROLLWAY_DATABASE_URL": "sqlite:///x.db"})
    assert (settings.lease_seconds, settings.sweep_seconds) == (60.0, 15.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [("ROLLWAY_DATABASE_URL", "mysql://root@db/rollway"), ("ROLLWAY_REDIS_URL", "amqp://guest@rabbit//")],
)
def test_a_url_rollway_cannot_use_is_refused_by_name(name: str, value: str) -> None:
    # When a setting names a backend Rollway does not support, Then the error names the variable
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value, "HOME": "/tmp"})


def test_without_redis_the_broker_is_in_memory() -> None:
    # Given settings with no Redis (the embedded demo)
    settings = Settings(database_url="sqlite:///x.db", redis_url=None)

    # Then Celery gets its in-memory transport
    assert settings.broker_url == "memory://"
