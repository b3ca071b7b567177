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
    }

    # When read
    settings = Settings.from_env(environ)

    # Then each is where a reader expects it
    assert settings == Settings(
        "postgresql://postgres@db/rollway", "redis://cache:6380/2", "s3cret", "t0ken", "team-a:"
    )
    assert not settings.is_sqlite


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
