"""API tokens: made random, shown once, kept only as a hash, each with a name, a project and a role.

A token reads `rw_<40 url-safe characters>`; 240 random bits, so a plain SHA-256 of it is as good as a slow
hash and lets a request find its token with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.errors import Conflict, NotFound
from orchestrator.policy import Principal, Role
from orchestrator.schema import now, tokens

PREFIX = "rw_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Token:
    """A stored token, as lists show it: never the token itself."""

    id: str
    name: str
    project: str
    role: Role
    created_by: str
    created_at: datetime
    last_used_at: datetime | None

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.role, self.project, self.id)


def new_secret() -> str:
    """A fresh random token."""
    return PREFIX + secrets.token_urlsafe(30)


def digest(token: str) -> str:
    """What is stored of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _token(row: Any) -> Token:
    return Token(row.id, row.name, row.project, Role(row.role), row.created_by, row.created_at, row.last_used_at)


class Tokens:
    """The tokens table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, token_id: str, name: str, project: str, role: Role, created_by: str) -> tuple[Token, str]:
        """Make and save a token; returns it with its secret, which is never readable again."""
        secret = new_secret()
        stamp = now()
        values = {
            "id": token_id,
            "name": name,
            "project": project,
            "role": role.value,
            "token_hash": digest(secret),
            "created_by": created_by,
            "created_at": stamp,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(tokens.insert().values(**values))
        except IntegrityError as error:  # a hash collision of 240 random bits: never, but not a 500 either
            raise Conflict("a token could not be made; try again") from error
        return Token(token_id, name, project, role, created_by, stamp, None), secret

    def find(self, secret: str) -> Token | None:
        """The token a request presented, or None; records when it was last used."""
        hashed = digest(secret)
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens).where(tokens.c.token_hash == hashed)).first()
            if row is None:
                return None
            stamp = now()
            # At most one write a minute per token: reading with a token should not cost a write each time.
            if row.last_used_at is None or stamp - row.last_used_at > LAST_USED_RESOLUTION:
                conn.execute(update(tokens).where(tokens.c.id == row.id).values(last_used_at=stamp))
                conn.commit()
        return _token(row)

    def list(self, project: str | None = None) -> list[Token]:
        query = select(tokens).order_by(tokens.c.project, tokens.c.name, tokens.c.created_at)
        if project is not None:
            query = query.where(tokens.c.project == project)
        with self.engine.connect() as conn:
            return [_token(row) for row in conn.execute(query)]

    def get(self, token_id: str) -> Token:
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens).where(tokens.c.id == token_id)).first()
        if row is None:
            raise NotFound(f"there is no token with id '{token_id}'")
        return _token(row)

    def revoke(self, token_id: str) -> None:
        """Delete a token: the next request that presents it is refused."""
        with self.engine.begin() as conn:
            if conn.execute(tokens.delete().where(tokens.c.id == token_id)).rowcount == 0:
                raise NotFound(f"there is no token with id '{token_id}'")
