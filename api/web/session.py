"""The web session: the API token a person logged in with, sealed in a signed cookie, and the CSRF token of
its forms.

The cookie is HttpOnly and SameSite=Lax; the token in it is encrypted (Fernet) under a key derived from
ROLLWAY_SECRET_KEY (or ROLLWAY_API_TOKEN), so the cookie never shows it, and every API process can open it.
Without either setting the key is this process's own: sessions then last as long as the process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken
from flask import Flask, current_app, session

from orchestrator.errors import Forbidden
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

COOKIE_NAME = "rollway_session"
TOKEN = "token"
CSRF = "csrf"
CSRF_FIELD = "csrf"
LIFETIME = timedelta(hours=12)
_FERNET = "rollway.web.fernet"


def _key_material(settings: Settings) -> bytes:
    given = settings.secret_key or settings.api_token
    if given is None:
        log.info("neither ROLLWAY_SECRET_KEY nor ROLLWAY_API_TOKEN is set: web sessions last as long as this process")
        return secrets.token_bytes(32)
    return given.encode()


def _derive(material: bytes, purpose: str) -> bytes:
    return hmac.new(material, f"rollway web session: {purpose}".encode(), hashlib.sha256).digest()


def configure(app: Flask, settings: Settings) -> None:
    """Give the app its session signing key and cookie settings."""
    material = _key_material(settings)
    app.secret_key = _derive(material, "cookie signature")
    app.extensions[_FERNET] = Fernet(base64.urlsafe_b64encode(_derive(material, "token seal")))
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=LIFETIME,
    )


def _fernet() -> Fernet | None:
    found = current_app.extensions.get(_FERNET)
    return found if isinstance(found, Fernet) else None


def log_in(token: str) -> None:
    """Hold `token` in the session (a new CSRF token with it: a session never keeps the one from before login)."""
    fernet = _fernet()
    if fernet is None:
        raise RuntimeError("the web session is not configured")
    session.clear()
    session.permanent = True
    session[TOKEN] = fernet.encrypt(token.encode()).decode()
    session[CSRF] = secrets.token_urlsafe(32)


def log_out() -> None:
    session.clear()


def held_token() -> str | None:
    """The API token this session logged in with, or None (no session, or one this key cannot open)."""
    sealed = session.get(TOKEN)
    fernet = _fernet()
    if not isinstance(sealed, str) or fernet is None:
        return None
    try:
        return fernet.decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError):
        return None


def csrf_token() -> str:
    """The CSRF token the session's forms carry (made on first use)."""
    token = session.get(CSRF)
    if not isinstance(token, str):
        token = session[CSRF] = secrets.token_urlsafe(32)
    return token


def check_csrf(presented: str | None) -> None:
    """403 unless a form carries this session's CSRF token."""
    expected = session.get(CSRF)
    if not isinstance(expected, str) or not presented or not hmac.compare_digest(presented, expected):
        raise Forbidden("the form is stale or did not come from this site (CSRF check failed); reload the page")
