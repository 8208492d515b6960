"""API tokens: `ombre_<id>_<secret>`, each with a role. Only the SHA-256 of the secret
is stored (the secret is 32 random bytes, so a slow hash adds nothing); a token is shown
once, when it is created, and can be listed and revoked. A kiosk token is a viewer
token for a wall display: it may only read, and `ombre demo` keeps it across runs. A
viewer's or operator's token may be scoped to one site: it sees that site's machines,
lines and data only (api/deps.py, Scope)."""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Row, insert, select, update

from shadow import audit
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
    kiosk: bool = False
    site: str | None = None  # the one site it sees; None: the whole plant


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(engine: Engine, name: str, role: Role, actor: str | None = None, *,
                 kiosk: bool = False, site: str | None = None) -> str:
    """A new token; the returned text is the only time its secret exists in clear. The
    audit log records who created it (`actor`, by default the console's user). A kiosk
    token must be a viewer's, and a token scoped to a `site` a viewer's or an
    operator's: an admin's work (tokens, orders, the audit log) is the whole plant's
    (ValueError otherwise). The caller checks that the site exists."""
    if kiosk and role is not Role.VIEWER:
        raise ValueError(f"a kiosk token is a viewer's, not an {role.name.lower()}'s")
    if site is not None and role is Role.ADMIN:
        raise ValueError("an admin token sees the whole plant; scope a viewer's or an "
                         "operator's token to a site")
    secret = secrets.token_urlsafe(32)
    with engine.begin() as c:
        token_id = c.execute(insert(t.api_token).values(
            name=name, role=role.name.lower(), secret_sha256=_digest(secret),
            created_ns=time.time_ns(), kiosk=kiosk, site=site)
            .returning(t.api_token.c.id)).scalar_one()
        details = {"name": name, "role": role.name.lower(), **({"kiosk": True} if kiosk else {}),
                   **({"site": site} if site is not None else {})}
        audit.record(c, actor or audit.cli_actor(), "token.create", f"token {token_id}", details)
    return f"ombre_{token_id}_{secret}"


def list_tokens(engine: Engine) -> list[Token]:
    with engine.connect() as c:
        rows = c.execute(select(t.api_token).order_by(t.api_token.c.id)).all()
    return [_token(r) for r in rows]


def revoke_token(engine: Engine, token_id: int, actor: str | None = None) -> bool:
    """Revokes an active token (False if there is none by that id), audited."""
    with engine.begin() as c:
        done = c.execute(update(t.api_token).where(t.api_token.c.id == token_id,
                                                   t.api_token.c.revoked_ns.is_(None))
                         .values(revoked_ns=time.time_ns()))
        if done.rowcount == 1:
            audit.record(c, actor or audit.cli_actor(), "token.revoke", f"token {token_id}")
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
    return _token(row)


def _token(row: Row[Any]) -> Token:
    return Token(row.id, row.name, Role[row.role.upper()], row.created_ns, row.revoked_ns,
                 row.kiosk, row.site)


FIRST_ADMIN_TOKEN = "first-admin-token"  # in the data directory


def first_admin_token(engine: Engine, data_dir: Path) -> Path | None:
    """With no token in the database yet, creates an admin token and writes it to
    <data_dir>/first-admin-token, readable by this process's user only (the service's,
    under systemd): never to stdout or a log, which a journal keeps and shows to others.
    Says on stderr where it is. Returns that path, or None when tokens existed."""
    if list_tokens(engine):
        return None
    path = data_dir / FIRST_ADMIN_TOKEN
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # an older file may have had another mode
        f.write(create_token(engine, "first admin", Role.ADMIN) + "\n")
    print(f"first start: an admin token was written to {path}, readable only by this "
          "user; copy it, then delete the file", file=sys.stderr)
    return path
