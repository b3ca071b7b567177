"""Credentials sealed at rest with ROLLWAY_SECRET_KEY."""

from __future__ import annotations

import pytest

from orchestrator.errors import BadRequest, ConfigurationError
from orchestrator.vault import Vault


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


def test_without_a_key_credentials_are_refused_but_no_credentials_need_none() -> None:
    # Given a server without ROLLWAY_SECRET_KEY
    vault = Vault(None)

    # Then sealing a credential is refused with the reason, and an endpoint without any needs no key
    with pytest.raises(BadRequest, match="ROLLWAY_SECRET_KEY is not set"):
        vault.seal({"token": "t"})
    assert vault.seal({}) == "" and vault.open("") == {}
