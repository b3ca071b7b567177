"""Credentials at rest: encrypted with a key derived from ROLLWAY_SECRET_KEY (Fernet: AES-128-CBC + HMAC-SHA256).

The secret key should be long and random; it is stretched with SHA-256 into the Fernet key, so every
process with the same ROLLWAY_SECRET_KEY reads what the others wrote.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken

from orchestrator.errors import BadRequest, ConfigurationError


class Vault:
    """Seals and opens small JSON secrets."""

    def __init__(self, secret_key: str | None) -> None:
        self._fernet = None
        if secret_key:
            key = base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest())
            self._fernet = Fernet(key)

    def seal(self, secrets: Mapping[str, str]) -> str:
        """Encrypt credentials; raises BadRequest when there is no key to encrypt them with."""
        if not secrets:
            return ""
        if self._fernet is None:
            raise BadRequest("credentials cannot be stored: ROLLWAY_SECRET_KEY is not set on the Rollway server")
        return self._fernet.encrypt(json.dumps(dict(secrets)).encode()).decode()

    def open(self, sealed: str) -> dict[str, str]:
        """Decrypt what `seal` made; raises ConfigurationError when the key is missing or not the one used."""
        if not sealed:
            return {}
        if self._fernet is None:
            raise ConfigurationError("stored credentials cannot be read: ROLLWAY_SECRET_KEY is not set")
        try:
            opened: dict[str, str] = json.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken as error:
            raise ConfigurationError("stored credentials cannot be read: ROLLWAY_SECRET_KEY has changed") from error
        return opened
