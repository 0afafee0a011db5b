"""The HTTP floor: what uvicorn alone answers on this machine, for the same requests.

A bare ASGI app on the stack cd4ml serves with (uvicorn, uvloop, httptools, one worker,
no access log) that reads each request's body and answers a fixed MLServer-shaped v2
answer, with no parsing, validation, model or log. No Python server on this stack can
answer faster; the ratio of this floor to MLServer bounds what "N× MLServer" can mean
here. Started as ``python -m uvicorn _servingbench.http_floor:app`` from ``benchmarks/``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["app", "start_floor"]

_ANSWER = (b'{"model_name":"acs-employment","model_version":"1","id":"x","parameters":{},'
           b'"outputs":[{"name":"predict","shape":[1,1],"datatype":"FP64",'
           b'"parameters":{"content_type":"np"},"data":[0.5]}]}')
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":  # nothing to set up or tear down
        while True:
            kind = (await receive())["type"]
            await send({"type": kind + ".complete"})
            if kind == "lifespan.shutdown":
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})


def start_floor(tmp: Path, *, cpus: str | None = None) -> Any:
    """The floor server, ready (a ``servers.Server``)."""
    from _servingbench import servers

    port = servers.free_port()
    cmd = [sys.executable, "-m", "uvicorn", "_servingbench.http_floor:app", "--host",
           "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
           "--no-access-log", "--log-level", "warning", "--app-dir",
           str(Path(__file__).resolve().parents[1])]
    srv = servers.start("http floor", cmd, f"http://127.0.0.1:{port}", tmp, cpus=cpus)
    servers.wait_ready(srv, ["/"])
    return srv
