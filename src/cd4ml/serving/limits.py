"""Request size limits shared by every protocol."""

from __future__ import annotations

from fastapi import Request

from cd4ml.errors import RequestError

__all__ = ["read_body"]


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
