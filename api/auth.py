"""Bearer-token authentication: every endpoint but /healthz names the least role it
needs; no token or a bad one is 401, too small a role 403."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Header, HTTPException, Request

from api.tokens import Role, Token, check_token

BEARER = {"WWW-Authenticate": "Bearer"}


def require(role: Role) -> Callable[..., Token]:
    """A dependency that returns the request's token if its role is at least `role`."""

    def dependency(request: Request,
                   authorization: Annotated[str | None, Header()] = None) -> Token:
        if authorization is None or not authorization.startswith("Bearer "):
            raise HTTPException(401, "send a token: Authorization: Bearer ombre_...",
                                headers=BEARER)
        token = check_token(request.app.state.store.engine, authorization.removeprefix("Bearer "))
        if token is None:
            raise HTTPException(401, "unknown or revoked token", headers=BEARER)
        if token.role < role:
            raise HTTPException(403, f"this needs the {role.name.lower()} role; token "
                                     f"{token.name!r} is {token.role.name.lower()}")
        return token

    return dependency

