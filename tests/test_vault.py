"""Credentials sealed at rest with ROLLWAY_SECRET_KEY: salted keys, old keys that still open, rotation."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import create_engine, select

from orchestrator import schema
from orchestrator.document import load_pipeline
from orchestrator.endpoints import Endpoint
from orchestrator.errors import BadRequest, ConfigurationError
from orchestrator.schema import endpoints
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.triggers import Draft, Triggers
from orchestrator.variables import Variable, Variables, VariableType
from orchestrator.vault import Vault

from rollway_testing import rollway_command


def sealed_the_old_way(secret_key: str, secrets: dict[str, str]) -> str:
    """What Rollway stored before salted keys: a bare Fernet token under the unsalted SHA-256 of the key."""
    key = base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest())
    return Fernet(key).encrypt(json.dumps(secrets).encode()).decode()


def rotate_key(**variables: str) -> subprocess.CompletedProcess[str]:
    """`rollway db rotate-key` with these ROLLWAY_* variables and no others."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ROLLWAY_")} | variables
    command = [*rollway_command(), "db", "rotate-key"]
    return subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=60)


def test_credentials_sealed_with_a_key_open_with_the_same_key_only() -> None:
    # Given credentials sealed by one process
    sealed = Vault("a-long-random-secret").seal({"token": "s3cr3t-token", "ca_data": "Q0E="})

    # Then the sealed text does not show them, another process with the same key opens them
    assert "s3cr3t-token" not in sealed and "Q0E=" not in sealed
    assert Vault("a-long-random-secret").open(sealed) == {"token": "s3cr3t-token", "ca_data": "Q0E="}
    # ... and a process with another key, or none, is told why it cannot
    with pytest.raises(ConfigurationError, match="has changed"):
        Vault("another-secret").open(sealed)
    with pytest.raises(ConfigurationError, match="not set"):
        Vault(None).open(sealed)


def test_each_seal_has_its_own_salt_so_the_key_is_not_the_unsalted_hash_of_the_secret() -> None:
    # Given the same credentials sealed twice under one secret key
    vault = Vault("a-long-random-secret")
    first, second = vault.seal({"token": "t"}), vault.seal({"token": "t"})

    # Then both are in the salted format, with different salts
    assert first.startswith("v2:") and second.startswith("v2:")
    assert first.split(":")[1] != second.split(":")[1]
    # ... and neither opens under the unsalted SHA-256 key that Rollway used before
    legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"a-long-random-secret").digest()))
    with pytest.raises(InvalidToken):
        legacy.decrypt(first.split(":", 2)[2].encode())


def test_values_sealed_before_salted_keys_still_open() -> None:
    # Given a credential stored by the Rollway before salted keys
    sealed = sealed_the_old_way("a-long-random-secret", {"token": "from-an-old-database"})

    # Then today's vault with the same key opens it, and one with another key explains
    assert Vault("a-long-random-secret").open(sealed) == {"token": "from-an-old-database"}
    with pytest.raises(ConfigurationError, match="ROLLWAY_SECRET_KEY_OLD"):
        Vault("another-secret").open(sealed)


def test_old_keys_open_what_they_sealed_and_rotation_reseals_under_the_current_key() -> None:
    # Given one value sealed under the old key and one in the pre-salt format under a still older key
    by_old = Vault("old-key").seal({"token": "sealed-by-old"})
    by_oldest = sealed_the_old_way("oldest-key", {"token": "sealed-by-oldest"})
    # ... and a vault whose current key is new, with both old keys listed
    vault = Vault("new-key", ("old-key", "oldest-key"))

    # When it opens and rotates them
    assert vault.open(by_old) == {"token": "sealed-by-old"}
    assert vault.open(by_oldest) == {"token": "sealed-by-oldest"}
    rotated = [vault.rotate(by_old), vault.rotate(by_oldest)]

    # Then the rotated values open under the new key alone, and no longer under the old ones
    assert [Vault("new-key").open(value) for value in rotated] == [
        {"token": "sealed-by-old"},
        {"token": "sealed-by-oldest"},
    ]
    for value in rotated:
        with pytest.raises(ConfigurationError, match="has changed"):
            Vault("old-key", ("oldest-key",)).open(value)
    # ... and new seals use the current key
    assert Vault("new-key").open(vault.seal({"token": "new"})) == {"token": "new"}
    assert vault.rotate("") == ""


def test_damaged_sealed_text_is_a_configuration_error_not_a_crash() -> None:
    # Given sealed text whose salt or shape was damaged
    vault = Vault("a-long-random-secret")
    token = vault.seal({"token": "t"}).split(":", 2)[2]

    # Then opening it says so
    for damaged in (f"v2:!!!:{token}", f"v2:c2hvcnQ=:{token}", "v2:only-two"):
        with pytest.raises(ConfigurationError, match="stored credentials cannot be read"):
            vault.open(damaged)


def test_without_a_key_credentials_are_refused_but_no_credentials_need_none() -> None:
    # Given a server without ROLLWAY_SECRET_KEY
    vault = Vault(None)

    # Then sealing a credential is refused with the reason, and an endpoint without any needs no key
    with pytest.raises(BadRequest, match="ROLLWAY_SECRET_KEY is not set"):
        vault.seal({"token": "t"})
    assert vault.seal({}) == "" and vault.open("") == {}


def test_old_keys_are_read_from_a_comma_separated_variable() -> None:
    # Given ROLLWAY_SECRET_KEY_OLD with two keys and stray blanks
    environ = {"ROLLWAY_SECRET_KEY": "new", "ROLLWAY_SECRET_KEY_OLD": " old-1 , ,old-2,"}

    # Then the settings hold both keys in order; old keys without a current one are refused
    assert Settings.from_env(environ).secret_key_old == ("old-1", "old-2")
    assert Settings.from_env({"ROLLWAY_SECRET_KEY": "new"}).secret_key_old == ()
    with pytest.raises(ConfigurationError, match="ROLLWAY_SECRET_KEY is not"):
        Settings.from_env({"ROLLWAY_SECRET_KEY_OLD": "old-1"})


def test_rotate_key_command_reseals_every_stored_credential_under_the_new_key(pg_url: str) -> None:
    # Given two endpoints with credentials sealed under the old key, one of them in the pre-salt format
    old = Store.connect(pg_url, "the-old-key")
    old.add_endpoint(Endpoint(id="ep-1", name="dev", project="shop", type="kubernetes", url="https://dev", token="t1"))
    old.add_endpoint(
        Endpoint(id="ep-2", name="prod", project="shop", type="kubernetes", url="https://prod", token="t2")
    )
    old.add_endpoint(Endpoint(id="ep-3", name="open", project="shop", type="kubernetes", url="https://open"))
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        legacy = sealed_the_old_way("the-old-key", {"token": "t2"})
        conn.execute(endpoints.update().where(endpoints.c.id == "ep-2").values(credentials=legacy))
    old.dispose()

    # When `rollway db rotate-key` runs with the new key, the old one listed as old
    done = rotate_key(
        ROLLWAY_DATABASE_URL=pg_url, ROLLWAY_SECRET_KEY="the-new-key", ROLLWAY_SECRET_KEY_OLD="the-old-key"
    )

    # Then it reports the two credentials it re-sealed
    assert done.returncode == 0, done.stderr
    assert "2 endpoint(s)" in done.stdout
    # ... which the new key alone now opens, in the salted format, while the old key no longer does
    new = Store.connect(pg_url, "the-new-key", migrate=False)
    try:
        assert [new.get_endpoint(name).token for name in ("ep-1", "ep-2", "ep-3")] == ["t1", "t2", None]
    finally:
        new.dispose()
    with engine.connect() as conn:
        stored = {row.id: row.credentials for row in conn.execute(select(endpoints.c.id, endpoints.c.credentials))}
    engine.dispose()
    assert stored["ep-1"].startswith("v2:") and stored["ep-2"].startswith("v2:") and stored["ep-3"] == ""
    with pytest.raises(ConfigurationError, match="has changed"):
        Vault("the-old-key").open(stored["ep-1"])


RELEASE = {
    "name": "Release",
    "project": "shop",
    "stageOrder": ["Check"],
    "stages": {
        "Check": {"taskOrder": ["First"], "tasks": {"First": {"type": "Condition", "input": {"condition": "1 == 1"}}}}
    },
}


def test_rotate_key_command_reseals_secret_variables_and_trigger_secrets_too(pg_url: str) -> None:
    # Given a SECRET and a REGULAR variable and a webhook trigger, sealed under the old key
    old = Store.connect(pg_url, "the-old-key")
    Variables(old.engine, old.vault).add(Variable("var-1", "shop", "token", VariableType.SECRET, "s3cret"))
    Variables(old.engine, old.vault).add(Variable("var-2", "shop", "region", VariableType.REGULAR, "eu"))
    old.add_pipeline(load_pipeline(RELEASE, None))
    Triggers(old.engine, old.vault).add("tr-1", Draft("push", "shop", "Release", "s" * 20, {}), "shop", "admin")
    old.dispose()

    # When `rollway db rotate-key` runs with the new key
    done = rotate_key(
        ROLLWAY_DATABASE_URL=pg_url, ROLLWAY_SECRET_KEY="the-new-key", ROLLWAY_SECRET_KEY_OLD="the-old-key"
    )

    # Then the secret variable and the trigger's secret open under the new key alone; the regular value is as it was
    assert done.returncode == 0, done.stderr
    assert "1 variable(s)" in done.stdout and "1 trigger(s)" in done.stdout
    new = Store.connect(pg_url, "the-new-key", migrate=False)
    try:
        found = Triggers(new.engine, new.vault).find("push")
        assert found is not None and found[1] == "s" * 20
        with new.engine.connect() as conn:
            stored = {
                row.id: row.value for row in conn.execute(select(schema.variables.c.id, schema.variables.c.value))
            }
        assert new.vault.open(stored["var-1"]) == {"value": "s3cret"}
        assert stored["var-2"] == "eu"
    finally:
        new.dispose()


def test_rotate_key_command_changes_nothing_when_a_credential_opens_under_no_key(pg_url: str) -> None:
    # Given an endpoint sealed under a key the command is not given
    lost = Store.connect(pg_url, "a-key-nobody-listed")
    lost.add_endpoint(Endpoint(id="ep-1", name="dev", project="shop", type="kubernetes", url="https://dev", token="t"))
    lost.dispose()

    # When `rollway db rotate-key` runs
    done = rotate_key(ROLLWAY_DATABASE_URL=pg_url, ROLLWAY_SECRET_KEY="the-new-key")

    # Then it fails naming the endpoint and the variable to set, and the credential is as it was
    assert done.returncode != 0
    assert "ep-1" in done.stderr and "ROLLWAY_SECRET_KEY_OLD" in done.stderr
    assert "Traceback" not in done.stderr
    still = Store.connect(pg_url, "a-key-nobody-listed", migrate=False)
    try:
        assert still.get_endpoint("ep-1").token == "t"
    finally:
        still.dispose()
