"""Reading a request body: the checks of :mod:`cd4ml.serving.guard`, then the size limit."""

from __future__ import annotations

from fastapi import Request

from cd4ml.errors import RequestError
from cd4ml.serving.guard import Guard

__all__ = ["read_body", "read_checked"]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 naming the limit.

    A declared Content-Length over the limit is refused before reading (by the app's
    middleware); this check catches bodies sent without one (chunked).
    """
    raw = await request.body()
    if len(raw) > limit:
        raise RequestError(f"body of {len(raw)} bytes is larger than the limit of {limit} "
                           f"(serving.max_body_bytes)", status=413)
    return raw


async def read_checked(request: Request, guard: Guard, limit: int, accept: frozenset[str],
                       *, token: bool = False) -> tuple[bytes, str]:
    """The body of a POST that passed ``guard`` (origin, content type, token) and its
    media type; every POST route reads its body here."""
    ctype = guard.check_scope(request.scope, accept, token=token)
    return await read_body(request, limit), ctype
