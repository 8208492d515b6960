"""API tokens: `ombre_<id>_<secret>`, each with a role. Only the SHA-256 of the secret
is stored (the secret is 32 random bytes, so a slow hash adds nothing); a token is shown
once, when it is created, and can be listed and revoked."""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import sys
import time
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

from shadow import tables as t

_TOKEN = re.compile(r"ombre_(\d{1,12})_([A-Za-z0-9_-]{20,100})")


class Role(enum.IntEnum):
    """What a token may do; each role may do what the ones below it may."""

    VIEWER = 1  # read
    OPERATOR = 2  # reason codes, jobs, alert acknowledgement
    ADMIN = 3  # orders import, configuration, tokens


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    name: str
    role: Role
    created_ns: int
    revoked_ns: int | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(engine: Engine, name: str, role: Role) -> str:
    """A new token; the returned text is the only time its secret exists in clear."""
    secret = secrets.token_urlsafe(32)
    with engine.begin() as c:
        token_id = c.execute(insert(t.api_token).values(
            name=name, role=role.name.lower(), secret_sha256=_digest(secret),
            created_ns=time.time_ns()).returning(t.api_token.c.id)).scalar_one()
    return f"ombre_{token_id}_{secret}"


def list_tokens(engine: Engine) -> list[Token]:
    with engine.connect() as c:
        rows = c.execute(select(t.api_token).order_by(t.api_token.c.id)).all()
    return [Token(r.id, r.name, Role[r.role.upper()], r.created_ns, r.revoked_ns) for r in rows]


def revoke_token(engine: Engine, token_id: int) -> bool:
    with engine.begin() as c:
        done = c.execute(update(t.api_token).where(t.api_token.c.id == token_id,
                                                   t.api_token.c.revoked_ns.is_(None))
                         .values(revoked_ns=time.time_ns()))
        return done.rowcount == 1


def check_token(engine: Engine, text: str) -> Token | None:
    """The token `text` stands for, if it exists, matches and is not revoked."""
    match = _TOKEN.fullmatch(text)
    if match is None:
        return None
    with engine.connect() as c:
        row = c.execute(select(t.api_token).where(t.api_token.c.id == int(match[1]))).first()
    if row is None or row.revoked_ns is not None:
        return None
    if not hmac.compare_digest(row.secret_sha256, _digest(match[2])):
        return None
    return Token(row.id, row.name, Role[row.role.upper()], row.created_ns, row.revoked_ns)


def first_admin_token(engine: Engine) -> None:
    """With no token in the database yet, creates an admin token and prints it once."""
    if not list_tokens(engine):
        token = create_token(engine, "first admin", Role.ADMIN)
        print(f"first start: admin token (shown only this once): {token}", file=sys.stderr)
