"""Bearer-token authentication: every endpoint but /healthz names the least role it
needs; no token or a bad one is 401, too small a role 403."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from api.tokens import Role, Token, check_token

BEARER = {"WWW-Authenticate": "Bearer"}


def bearer_credentials(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; the scheme is
    case-insensitive (RFC 7235), so `bearer` and `BEARER` do too."""
    if authorization is None:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


def authenticated(request: Request,
                  authorization: Annotated[str | None, Header()] = None) -> Token:
    """The request's token, checked once per request however many dependencies ask."""
    credentials = bearer_credentials(authorization)
    if credentials is None:
        raise HTTPException(401, "send a token: Authorization: Bearer ombre_...",
                            headers=BEARER)
    token = check_token(request.app.state.store.engine, credentials)
    if token is None:
        raise HTTPException(401, "unknown or revoked token", headers=BEARER)
    return token


Authenticated = Annotated[Token, Depends(authenticated)]


def require(role: Role) -> Callable[..., Awaitable[Token]]:
    """A dependency that returns the request's token if its role is at least `role`."""

    async def dependency(token: Authenticated) -> Token:
        if token.role < role:
            raise HTTPException(403, f"this needs the {role.name.lower()} role; token "
                                     f"{token.name!r} is {token.role.name.lower()}")
        return token

    return dependency
