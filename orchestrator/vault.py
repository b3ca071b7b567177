"""Credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) under keys derived from ROLLWAY_SECRET_KEY.

Sealed text is `v2:<salt>:<Fernet token>`. Each seal draws a fresh random 16-byte salt and derives its Fernet
key from the secret key with Scrypt (n=2**14, r=8, p=1). The salt is stored beside the token because a key
derived without one (or with one fixed salt for every installation) lets a single precomputed table attack
every database, and a weak ROLLWAY_SECRET_KEY would fall to one cheap hash per guess. With a salt per value, a
stolen database costs an attacker a memory-hard Scrypt per guess and per value. Derivations are cached per
(key, salt), so a worker that opens the same endpoint for every task pays the ~30 ms once.

Rotation: ROLLWAY_SECRET_KEY seals; ROLLWAY_SECRET_KEY_OLD (a comma-separated list) still opens. A MultiFernet
over the current key and the old ones opens a value sealed by any of them, and `rotate` re-seals it under the
current key (`rollway db rotate-key` does that for every stored credential), after which the old keys can go.

Values written before v2 (no prefix: a bare Fernet token under the unsalted SHA-256 of the secret key) still
open, so existing databases keep working; they are re-sealed as v2 on their next write or by a rotation.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from orchestrator.errors import BadRequest, ConfigurationError

PREFIX = "v2"
SALT_BYTES = 16
# Scrypt's cost: 16 MiB of memory and ~30 ms per derivation, paid once per value and process (see the cache).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1


@functools.lru_cache(maxsize=4096)
def derive_key(secret_key: str, salt: bytes) -> bytes:
    """The Fernet key for one secret key and salt (Scrypt), cached: opening a credential per task stays cheap."""
    kdf = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return base64.urlsafe_b64encode(kdf.derive(secret_key.encode()))


def legacy_key(secret_key: str) -> bytes:
    """The Fernet key of values sealed before v2: the unsalted SHA-256 of the secret key."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest())


class Vault:
    """Seals small JSON secrets under the current key; opens what the current or an old key sealed."""

    def __init__(self, secret_key: str | None, old_keys: Sequence[str] = ()) -> None:
        self._current = secret_key or None
        # The current key first: MultiFernet tries keys in order, and a rotated database is all under it.
        self._keys = ([secret_key] if secret_key else []) + [key for key in old_keys if key]

    def seal(self, secrets: Mapping[str, str]) -> str:
        """Encrypt credentials; raises BadRequest when there is no key to encrypt them with."""
        if not secrets:
            return ""
        if self._current is None:
            raise BadRequest("credentials cannot be stored: ROLLWAY_SECRET_KEY is not set on the Rollway server")
        salt = os.urandom(SALT_BYTES)
        token = Fernet(derive_key(self._current, salt)).encrypt(json.dumps(dict(secrets)).encode())
        return f"{PREFIX}:{base64.urlsafe_b64encode(salt).decode()}:{token.decode()}"

    def open(self, sealed: str) -> dict[str, str]:
        """Decrypt what `seal` made; raises ConfigurationError when no key is set or none of them opens it."""
        if not sealed:
            return {}
        if not self._keys:
            raise ConfigurationError("stored credentials cannot be read: ROLLWAY_SECRET_KEY is not set")
        fernet, token = self._fernet_for(sealed)
        try:
            opened: dict[str, str] = json.loads(fernet.decrypt(token))
        except InvalidToken as error:
            raise ConfigurationError(
                "stored credentials cannot be read: ROLLWAY_SECRET_KEY has changed"
                " (set the key they were sealed with in ROLLWAY_SECRET_KEY_OLD)"
            ) from error
        return opened

    def rotate(self, sealed: str) -> str:
        """The same secrets sealed anew under the current key (and a fresh salt); "" stays ""."""
        if not sealed:
            return ""
        if self._current is None:
            raise ConfigurationError("credentials cannot be re-sealed: ROLLWAY_SECRET_KEY is not set")
        return self.seal(self.open(sealed))

    def _fernet_for(self, sealed: str) -> tuple[MultiFernet, bytes]:
        """The MultiFernet of every key for this value's format (and salt), and its Fernet token."""
        if not sealed.startswith(PREFIX + ":"):
            return MultiFernet([Fernet(legacy_key(key)) for key in self._keys]), sealed.encode()
        damaged = ConfigurationError("stored credentials cannot be read: they are not in the vault's v2 format")
        parts = sealed.split(":", 2)
        if len(parts) != 3:
            raise damaged
        try:
            salt = base64.urlsafe_b64decode(parts[1].encode())
        except (binascii.Error, ValueError) as error:
            raise damaged from error
        if len(salt) != SALT_BYTES:
            raise damaged
        return MultiFernet([Fernet(derive_key(key, salt)) for key in self._keys]), parts[2].encode()
