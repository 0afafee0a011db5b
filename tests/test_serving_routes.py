"""The server's route table is derived from the app, its request context is typed, and
building or running it changes no process-wide setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

import cd4ml
from cd4ml.serving.app import ModelHolder, create_app
from cd4ml.serving.routes import UNKNOWN, RequestContext, RouteTable, context_of

NAME = "walmart-weekly-sales"
ROW = {"store": 1, "dept": 1, "date": "2012-11-02"}


def _scope(method: str, path: str) -> dict:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


def _toy_table() -> RouteTable:
    app = FastAPI()
    v2, mlflow = APIRouter(tags=["v2"]), APIRouter(tags=["mlflow"])

    @app.post("/score")
    async def score(request: Request) -> JSONResponse:
        return JSONResponse({"ok": context_of(request).request_id})

    @app.post("/with-dependency")
    async def with_dependency(request: Request, user: str = Depends(lambda: "u")) -> dict:
        return {"user": user}

    @app.get("/score")
    async def score_page() -> dict:
        return {}

    @v2.post("/v2/models/{name}/infer")
    async def infer(request: Request, name: str) -> dict:
        return {"name": name}

    @v2.get("/v2/models/{name}")
    async def meta(name: str) -> dict:
        return {"name": name}

    @mlflow.post("/invocations")
    async def invocations(request: Request) -> dict:
        return {}

    for r in (v2, mlflow):
        app.include_router(r)
    return RouteTable.of([*app.router.routes, *v2.routes, *mlflow.routes])


def test_the_route_table_comes_from_the_routes_themselves() -> None:
    """Labels are path templates, the error shape comes from the router's tag, and only
    POST endpoints taking the request and path parameters are called directly."""
    t = _toy_table()
    entry, params = t.find(_scope("POST", "/v2/models/anything-at-all/infer"))
    assert (entry.label, entry.protocol, params) == (
        "/v2/models/{name}/infer", "v2", {"name": "anything-at-all"})
    assert entry.direct is not None and entry.direct.__name__ == "infer"
    get, _ = t.find(_scope("GET", "/v2/models/m"))
    assert (get.label, get.protocol, get.direct) == ("/v2/models/{name}", "v2", None)
    # the path matches, the method does not: still the route's label (the app says 405)
    wrong, _ = t.find(_scope("GET", "/v2/models/m/infer"))
    assert (wrong.label, wrong.direct) == ("/v2/models/{name}/infer", None)
    assert t.find(_scope("POST", "/invocations"))[0].protocol == "mlflow"
    score, _ = t.find(_scope("POST", "/score"))
    assert score.protocol == "native" and score.direct is not None
    assert t.find(_scope("GET", "/score"))[0].direct is None
    # FastAPI's dependency injection is skipped by a direct call: such a route is routed
    dep, _ = t.find(_scope("POST", "/with-dependency"))
    assert dep.label == "/with-dependency" and dep.direct is None
    assert t.find(_scope("GET", "/nowhere"))[0] is UNKNOWN
    assert "/openapi.json" in t.labels() and "/v2/models/{name}/infer" in t.labels()


def test_templated_matches_are_remembered_per_method_and_path_and_bounded() -> None:
    """A templated route's regular expressions run once per (method, path); the memo is
    per method (GET of an infer path is still the 405 case) and holds at most
    MEMO_PATHS paths, so clients naming endless models cannot grow it."""
    from cd4ml.serving.routes import MEMO_PATHS

    t = _toy_table()
    first = t.find(_scope("POST", "/v2/models/a/infer"))
    assert t.find(_scope("POST", "/v2/models/a/infer")) == first
    assert ("POST", "/v2/models/a/infer") in t.matched
    assert t.find(_scope("GET", "/v2/models/a/infer"))[0].direct is None
    assert t.find(_scope("POST", "/v2/models/b/infer"))[1] == {"name": "b"}
    for k in range(MEMO_PATHS + 10):
        entry, params = t.find(_scope("POST", f"/v2/models/m{k}/infer"))
        assert params == {"name": f"m{k}"} and entry.label == "/v2/models/{name}/infer"
    assert len(t.matched) <= MEMO_PATHS


@pytest.fixture(scope="module")
def model(trained_project: Path):
    return cd4ml.load_model(f"{NAME}@production", project_dir=trained_project)


def test_every_route_of_the_served_app_is_in_its_table(model) -> None:
    """The table the server uses holds every path of its OpenAPI document, with no list
    of routes written anywhere else."""
    app = create_app(ModelHolder(model))
    with TestClient(app) as client:
        paths = set(client.get("/openapi.json").json()["paths"])
    assert paths and paths <= set(app.routes.labels())
    for path in ("/predict", "/feedback", "/invocations", "/v2/models/{name}/infer",
                 "/v2/models/{name}/versions/{version}/infer"):
        concrete = path.replace("{name}", NAME).replace("{version}", str(model.version))
        assert app.routes.find(_scope("POST", concrete))[0].direct is not None, path


def test_errors_take_the_shape_of_their_protocol_and_metrics_the_template(model) -> None:
    client = TestClient(create_app(ModelHolder(model)))
    assert "detail" in client.post("/predict", json={"store": 1}).json()
    v2 = client.post(f"/v2/models/{NAME}/versions/999/infer", json={"inputs": []})
    assert v2.status_code == 404 and "not loaded" in v2.json()["error"]
    ml = client.post("/invocations", json={"nope": 1})
    assert ml.status_code == 422 and ml.json()["error_code"] == "BAD_REQUEST"
    client.post("/v2/models/some-other-name/infer", json={"inputs": []})
    text = client.get("/metrics").text
    assert 'endpoint="/v2/models/{name}/infer"' in text
    assert "some-other-name" not in text  # one label per template, not per path


def test_the_request_context_is_one_typed_record(model) -> None:
    """The middleware binds a RequestContext; the route fills in the version, the error
    handler the error type, and the access log reads them from it."""
    seen: list[RequestContext] = []
    app = create_app(ModelHolder(model))
    inner = app.app  # the FastAPI app inside the middleware

    @inner.get("/peek")
    async def peek(request: Request) -> dict:
        seen.append(context_of(request))
        return {}

    client = TestClient(app)
    res = client.post("/predict", json=ROW, headers={"x-request-id": "ctx-1"})
    assert res.status_code == 200 and res.json()["request_id"] == "ctx-1"
    client.get("/peek", headers={"x-request-id": "ctx-2"})
    assert isinstance(seen[0], RequestContext) and seen[0].request_id == "ctx-2"
    assert not hasattr(seen[0], "__dict__")  # slots: no ad-hoc keys can be added


_PROBE = r"""
import json, logging, os, sys
before = sys.getswitchinterval()
from cd4ml.serving.server import app_from_env
app = app_from_env()
class Keep(logging.Handler):
    def emit(self, record):
        self.record = record
probe, keep = logging.getLogger("probe"), Keep()
probe.addHandler(keep)
probe.warning("where was I logged from?")
print(json.dumps({"before": before, "after": sys.getswitchinterval(),
                  "caller_file": keep.record.pathname}))
"""


def test_building_the_server_changes_no_process_wide_setting(trained_project: Path) -> None:
    """No switch interval and no logging internals are changed for whoever embeds us."""
    env = {**os.environ, "CD4ML_SERVE": json.dumps({"project_dir": str(trained_project),
                                                    "workers": 1})}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["after"] == got["before"]
    # logging still finds where a record was logged from (setting logging._srcfile to
    # None would make it "(unknown file)" for every logger of the process)
    assert got["caller_file"] not in ("(unknown file)", None)
