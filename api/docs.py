"""The API's documentation: the OpenAPI schema at /openapi.json, Swagger UI at /docs
and ReDoc at /redoc, both served from api/static/vendor (no CDN).

`api.docs` says who may read it: `auth` (the default) asks for a token, as every
endpoint does; `public` does not; `off` serves none of it. The two pages are static
shells without any content of the API: they take the token as the dashboard does
(from #token=..., the browser's storage, or a form) and fetch the schema with it, and
Swagger UI sends it with the requests one tries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from api.auth import require
from api.config import DocsMode
from api.tokens import Role


def router(mode: DocsMode, static: Path) -> APIRouter:
    """The documentation's routes for `mode` (none when off); `static` is the directory
    of the pages."""
    docs = APIRouter(include_in_schema=False)
    if mode == "off":
        return docs

    guard = [Depends(require(Role.VIEWER))] if mode == "auth" else []

    @docs.get("/openapi.json", dependencies=guard)
    def schema(request: Request) -> dict[str, Any]:
        found: dict[str, Any] = request.app.openapi()
        return found

    @docs.get("/docs")
    @docs.get("/redoc")
    def pages() -> FileResponse:
        """Swagger UI or ReDoc: one page, which picks by its address."""
        return FileResponse(static / "docs.html")

    return docs
