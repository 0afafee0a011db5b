"""The admin HTTP API: a project's deployments read and changed over HTTP under
``/admin``, as ``cd4ml deploy``, ``cd4ml rollout …`` and ``cd4ml rollback`` change them
from a shell (through :mod:`cd4ml.rollout.manage`, each change an audited event).

``cd4ml serve`` puts it beside the model server (the CLI composes the two apps; serving
never imports this module). JSON in and out:

- ``GET /admin/deployments`` — every deployment (and the default one read from
  ``serving.alias`` while none is stored);
- ``GET /admin/deployments/{name}`` — its state and ``history``: each change with its
  revision, time, actor, action, reason, ``from_state`` and ``to_state``;
- ``PUT /admin/deployments/{name}`` — create or configure it: ``strategy`` (required),
  ``automation``, ``steps``, ``split``, ``key``, ``fallback``, ``alias``, ``reason``;
- ``POST /admin/deployments/{name}/candidate`` — ``{"version": 3}``: start its strategy
  with that version;
- ``POST /admin/deployments/{name}/promote`` (``pause``, ``abort``) — ``{"reason": …}``,
  the body optional;
- ``POST /admin/deployments/{name}/rollback`` — ``{"to": 4}`` (default: the previous
  revision), restored as a new revision.

A write answers the new state with the ``event`` it recorded. Reads and writes carry
``ETag: "<revision>"``. A write may say which revision it was computed from, as
``expected_revision`` in its body or ``If-Match: "<revision>"``: when the deployment is
at another one it is refused with 409, the current ``revision`` in the body. Either
way the store writes by compare-and-set, so of two admins at once one succeeds and the
other gets 409; nothing changes on a refusal. The audit's actor is the
``X-Cd4ml-Actor`` header, else ``admin-api``.

**Security.** The token is read from ``CD4ML_ADMIN_TOKEN`` only (never ``cd4ml.yaml``,
which every run stores). Unset: the admin API is disabled, every ``/admin`` request
answers 403 saying so (it is never open). Set: every request needs
``Authorization: Bearer <token>`` (compared in constant time), else 401 with
``WWW-Authenticate: Bearer``. A write whose ``Origin`` is neither the server's own nor
in ``serving.allowed_origins`` gets 403, a body not ``application/json`` 415 — the
model server's checks (:mod:`cd4ml.serving.guard`).

**Errors** have the model server's shape, ``{"detail": "...", "errors": [{"loc",
"field", "value", "problem"}]}``: 400 for a malformed body or a value the deployment
refuses (shares, steps, a failed gate, nothing in progress), 401/403 as above, 404 for
an unknown deployment, 409 for a conflict, 413 for a body over 64 KiB, 415, and 422 for
a field of the wrong type, an unknown field or a version the registry does not have.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cd4ml.errors import (Cd4mlError, ConfigError, NotFoundError, RequestError,
                          RevisionConflictError, http_status)
from cd4ml.rollout import admin_body as ab
from cd4ml.rollout import manage
from cd4ml.serving.guard import JSON, Guard, bearer_problem, media_type, token_from_env

if TYPE_CHECKING:
    from cd4ml.config import ProjectConfig
    from cd4ml.serving.deployment import DeploymentState
    from cd4ml.store import Stores

__all__ = ["create_admin", "admin_from_project", "admin_token_from_env", "TOKEN_ENV",
           "PREFIX"]

#: the environment variable holding the admin token (unset: the admin API is disabled)
TOKEN_ENV = "CD4ML_ADMIN_TOKEN"
#: where ``cd4ml serve`` puts the admin API
PREFIX = "/admin"


def admin_token_from_env(environ: dict[str, str] | None = None) -> str | None:
    """The admin token from ``CD4ML_ADMIN_TOKEN``; None when unset (the API disabled); a
    ConfigError in one line when set but empty.

    >>> admin_token_from_env({}) is None, admin_token_from_env({TOKEN_ENV: "s3"})
    (True, 's3')
    """
    return token_from_env(TOKEN_ENV, "the admin API unusable", environ)


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    def default(v: Any) -> Any:
        return v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else str(v)

    return Response(json.dumps(doc, default=default, ensure_ascii=False).encode(),
                    status_code=status, headers=headers, media_type="application/json")


def _error(status: int, detail: str, errors: list[dict[str, Any]] | None = None, *,
           headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return _json({"detail": detail, "errors": errors or [], **extra}, status, headers)


def _answer(exc: Cd4mlError, fields: frozenset[str]) -> Response:
    """A refusal in the model server's error shape; a ConfigError names its key as a
    body field when the request had one of that name, else as the deployment's."""
    if isinstance(exc, RevisionConflictError):
        return _error(409, str(exc), [{"loc": "body.expected_revision",
                                       "field": "expected_revision", "value": exc.expected,
                                       "problem": f"the deployment is at revision "
                                                  f"{exc.found}"}], revision=exc.found)
    errors = list(getattr(exc, "errors", None) or [])
    if isinstance(exc, ConfigError) and exc.key is not None:
        root = exc.key.split(".")[0]
        loc = f"body.{exc.key}" if root in fields else f"deployment.{exc.key}"
        value = exc.value if isinstance(exc.value, (str, int, float, bool, list,
                                                    type(None))) else repr(exc.value)
        errors = [{"loc": loc, "field": exc.key, "value": value, "problem": exc.problem}]
    headers = getattr(exc, "headers", None) if isinstance(exc, RequestError) else None
    return _error(http_status(exc), str(exc), errors, headers=headers)


class _Admin:
    """One server's admin API: its project, stores (opened on first use), token, guard."""

    def __init__(self, cfg: ProjectConfig, root: Path, token: str | None,
                 stores: Callable[[], Stores] | None) -> None:
        self.cfg, self.root, self.token = cfg, root, token
        self.guard = Guard.of(cfg.serving.allowed_origins, None)
        self._open, self._stores, self._lock = stores, None, threading.Lock()

    def stores(self) -> Stores:
        with self._lock:
            if self._stores is None:
                if self._open is not None:
                    self._stores = self._open()
                else:
                    from cd4ml.store import open_stores

                    self._stores = open_stores(self.cfg.store, self.root)
            return self._stores

    def close(self) -> None:
        with self._lock:
            if self._stores is not None and self._open is None:
                self._stores.close()
            self._stores = None

    # -- the checks every request passes -------------------------------------------

    def refusal(self, request: Request) -> Response | None:
        """403 while disabled, 401 without the token, 403 for a write from another
        origin; None when the request may go on."""
        if self.token is None:
            return _error(403, f"the admin API is disabled: this server was started "
                               f"without {TOKEN_ENV}; start it with a token in that "
                               f"variable to use {PREFIX}")
        problem = bearer_problem(request.headers.get("authorization"), self.token)
        if problem is not None:
            detail = (f"{request.method} {request.url.path} needs 'Authorization: Bearer "
                      f"<token>' ({TOKEN_ENV})" if problem == "missing" else
                      f"{request.method} {request.url.path}: the bearer token is not the "
                      f"one this server was started with ({TOKEN_ENV}); nothing changed")
            return _error(401, detail, headers={"www-authenticate": "Bearer"})
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD") and origin is not None:
            why = self.guard.origin_problem(origin, request.url.scheme,
                                            request.headers.get("host"))
            if why is not None:
                return _error(403, why, [{"loc": "header.origin", "field": "origin",
                                          "value": origin[:200], "problem": why}])
        return None

    async def body(self, request: Request, spec: ab.Spec) -> dict[str, Any]:
        """The write's fields, checked (415, 413, 400, 422 before anything is read)."""
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > ab.MAX_BODY_BYTES:
                raise RequestError(f"body over {ab.MAX_BODY_BYTES} bytes; an admin body is "
                                   f"a few fields", status=413)
        ctype = request.headers.get("content-type")
        if raw.strip() and media_type(ctype, JSON) is None:
            msg = (f"content type {ctype!r} is not accepted by {request.method} "
                   f"{request.url.path}; send application/json (UTF-8)")
            raise RequestError(msg, status=415, errors=[{
                "loc": "header.content-type", "field": "content-type",
                "value": (ctype or "")[:200], "problem": msg}])
        return ab.fields(ab.parse_json(raw), spec)

    # -- what each route does, in a worker thread ----------------------------------

    def doc(self, state: DeploymentState, history: bool = False) -> dict[str, Any]:
        out = {**state.to_dict(), "stored": not state.extra.get("default"),
               "shares": state.shares()}
        if history:
            out["history"] = self.stores().metadata.deployment_history(state.name)
        return out

    def state(self, name: str) -> DeploymentState:
        try:
            return manage.effective_deployment(self.stores(), self.cfg, name)
        except NotFoundError as exc:
            raise RequestError(str(exc), status=404, errors=[{
                "loc": "path.name", "field": "name", "value": name,
                "problem": str(exc)}]) from None

    def written(self, state: DeploymentState) -> dict[str, Any]:
        events = self.stores().metadata.deployment_history(state.name)
        return {**self.doc(state), "event": events[-1] if events else None}

    def deploy(self, name: str, f: dict[str, Any], expected: int | None,
               who: str) -> dict[str, Any]:
        return self.written(manage.deploy(
            self.stores(), self.cfg, name, alias=f.get("alias"), strategy=f["strategy"],
            automation=f.get("automation"), steps=f.get("steps"), split=f.get("split"),
            key=f.get("key"), fallback=f.get("fallback"), reason=f.get("reason"), who=who,
            expected_revision=expected))

    def candidate(self, name: str, f: dict[str, Any], expected: int | None,
                  who: str) -> dict[str, Any]:
        state = self.state(name)
        try:
            manage.candidate(self.stores(), state.model, f["version"])
        except NotFoundError as exc:
            raise ab.refusal("version", f["version"], str(exc)) from None
        return self.written(manage.offer_candidate(
            self.stores(), self.cfg, name, f["version"], reason=f.get("reason"), who=who,
            expected_revision=expected))

    def step(self, action: str) -> Callable[..., dict[str, Any]]:
        def run(name: str, f: dict[str, Any], expected: int | None,
                who: str) -> dict[str, Any]:
            self.state(name)
            return self.written(manage.step(self.stores(), self.cfg, name, action,
                                            reason=f.get("reason"), who=who,
                                            expected_revision=expected))
        return run

    def rollback(self, name: str, f: dict[str, Any], expected: int | None,
                 who: str) -> dict[str, Any]:
        self.state(name)
        stored = self.stores().metadata.get_deployment(name) is not None
        try:
            return self.written(manage.rollback(self.stores(), name, f.get("to"),
                                                reason=f.get("reason"), who=who,
                                                expected_revision=expected))
        except NotFoundError as exc:
            if not stored:  # never changed: nothing of it to roll back
                raise RequestError(str(exc), status=404, errors=[{
                    "loc": "path.name", "field": "name", "value": name,
                    "problem": str(exc)}]) from None
            raise ab.refusal("to", f.get("to"), str(exc)) from None


Handler = Callable[[Request], Awaitable[Response]]


def _route(admin: _Admin, work: Callable[..., Any], spec: ab.Spec | None) -> Handler:
    """An endpoint: the checks, then ``work`` in the threadpool (the store blocks)."""
    async def endpoint(request: Request) -> Response:
        refused = admin.refusal(request)
        if refused is not None:
            return refused
        named = frozenset(spec.checks) if spec is not None else frozenset()
        try:
            name = request.path_params.get("name")
            if spec is None:  # a read
                doc = await run_in_threadpool(work, name)
            else:
                f = await admin.body(request, spec)
                expected = ab.expected_revision(f, request.headers.get("if-match"))
                who = ab.actor_of(request.headers.get(ab.ACTOR_HEADER))
                doc = await run_in_threadpool(work, name, f, expected, who)
        except Cd4mlError as exc:
            return _answer(exc, named)
        etag = {"etag": f'"{doc["revision"]}"'} if "revision" in doc else None
        return _json(doc, headers=etag)
    return endpoint


def create_admin(cfg: ProjectConfig, root: str | Path, *, token: str | None,
                 stores: Callable[[], Stores] | None = None) -> Starlette:
    """The admin API of the project at ``root`` (config ``cfg``), its routes under
    ``/admin``; ``token`` None disables it. ``stores`` opens the stores it uses (default:
    the project's, opened on first use and closed with the app's lifespan)."""
    admin = _Admin(cfg, Path(root), token, stores)

    def listing(_: None) -> dict[str, Any]:
        return {"deployments": [admin.doc(d) for d in
                                manage.deployments(admin.stores(), admin.cfg)]}

    def one(name: str) -> dict[str, Any]:
        return admin.doc(admin.state(name), history=True)

    read, write = _route(admin, one, None), _route(admin, admin.deploy, ab.DEPLOY)

    async def deployment(request: Request) -> Response:
        return await (write if request.method == "PUT" else read)(request)

    base = f"{PREFIX}/deployments"
    routes = [Route(base, _route(admin, listing, None), methods=["GET"]),
              Route(base + "/{name}", deployment, methods=["GET", "PUT"]),
              Route(base + "/{name}/candidate", _route(admin, admin.candidate, ab.CANDIDATE),
                    methods=["POST"]),
              Route(base + "/{name}/rollback", _route(admin, admin.rollback, ab.ROLLBACK),
                    methods=["POST"])]
    routes += [Route(f"{base}/{{name}}/{action}", _route(admin, admin.step(action), ab.STEP),
                     methods=["POST"]) for action in manage.ACTIONS]

    async def not_found(request: Request, exc: Exception) -> Response:
        refused = admin.refusal(request)  # an unknown /admin path says no more than a known
        if refused is not None:
            return refused
        where = f"{request.method} {request.url.path}"
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            allow = ", ".join(sorted((exc.headers or {}).get("Allow", "").split(", ")))
            return _error(405, f"{where}: {request.method} is not allowed; it takes {allow}",
                          headers=exc.headers)
        return _error(404, f"{where}: no such admin route; see GET {base}")

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        admin.close()

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found},
                     lifespan=lifespan)


def admin_from_project(project_dir: str | Path, overrides: list[str] | None = None,
                       ) -> Starlette:
    """The admin API of a project folder, its token from ``CD4ML_ADMIN_TOKEN`` (what
    each ``cd4ml serve`` worker mounts at ``/admin``)."""
    from cd4ml.config import load_config

    root = Path(project_dir)
    cfg, _ = load_config(root, overrides or [])
    return create_admin(cfg, root, token=admin_token_from_env())

