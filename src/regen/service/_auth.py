"""The token check: ``Authorization: Bearer TOKEN``, or the cookie ``POST /login`` sets (a
browser's EventSource sends cookies but no headers)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Cookie, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

#: The cookie that carries the token for browsers.
COOKIE = "regen_token"
_bearer = HTTPBearer(auto_error=False, description="The server's token (--token / REGEN_TOKEN).")


def matches(given: str | None, token: str) -> bool:
    """Whether ``given`` is the token (in constant time)."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def require(token: str | None) -> list[Any]:
    """The dependencies of a route that needs the token: one refusing (401) a request
    without it; none when ``token`` is ``None`` (a server bound to loopback without one)."""
    if token is None:
        return []

    async def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        regen_token: Annotated[str | None, Cookie(include_in_schema=False)] = None,
    ) -> None:
        given = credentials.credentials if credentials is not None else regen_token
        if not matches(given, token):
            raise HTTPException(
                401,
                "this server needs its token: send `Authorization: Bearer TOKEN`, "
                'or POST /login with {"token": …} for a cookie',
                headers={"WWW-Authenticate": "Bearer"},
            )

    return [Depends(check)]


def require_page(token: str | None) -> list[Any]:
    """:func:`require` for pages a person opens: without the token, a browser is sent to
    the sign-in page (and back here after it) instead of getting a 401."""
    if token is None:
        return []

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        regen_token: Annotated[str | None, Cookie(include_in_schema=False)] = None,
    ) -> None:
        given = credentials.credentials if credentials is not None else regen_token
        if not matches(given, token):
            target = quote(request.url.path, safe="/")
            raise HTTPException(303, "sign in first", headers={"Location": f"/login?next={target}"})

    return [Depends(check)]
