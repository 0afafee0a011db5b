"""The admin HTTP API over loopback: two real `cd4ml serve` processes on a trained wine
project, one without CD4ML_ADMIN_TOKEN (every admin call refused, nothing changed) and
one with it (wrong tokens refused; a canary deployed, offered a candidate, promoted,
paused, aborted and rolled back, each change audited with its actor, reason and states;
every bad input a 4xx naming the field, nothing changed); prediction routes open
without a token on both. Two admins at once with the same expected revision, on a real
uvicorn over SQLite and PostgreSQL: one 200, one 409."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import start_server, stop_server
from tabular_projects import wine_rollout_project

import store_fixtures as fx  # noqa: E402  (tests/ is on pythonpath)

db_url, make_store, store = fx.fixtures()

NAME = "wine"
TOKEN = "s3cret-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ADMIN = "/admin/deployments"


@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """os.environ with ``values`` set (None: unset) for what starts inside, then back."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1: the baseline served because nothing passed; v2: a candidate that passed
    (production); v3: a version whose gate failed."""
    return wine_rollout_project(tmp_path_factory.mktemp("admin"))


@pytest.fixture(scope="module")
def servers(project: Path) -> Iterator[dict[str, str]]:
    """``closed``: no admin token, --no-ui; ``admin``: with the token and the dashboard."""
    procs = []
    try:
        with environ(CD4ML_ADMIN_TOKEN=None):
            procs.append(start_server(project, "--no-ui"))
        with environ(CD4ML_ADMIN_TOKEN=TOKEN):
            procs.append(start_server(project))
        yield {"closed": procs[0][1], "admin": procs[1][1]}
    finally:
        for proc, _ in procs:
            stop_server(proc)


def snapshot(project: Path) -> tuple[Any, ...]:
    """The deployments and their histories, read from the store directly."""
    from cd4ml.config import load_config
    from cd4ml.store import open_stores

    cfg, _ = load_config(project)
    with open_stores(cfg.store, project) as stores:
        md = stores.metadata
        rows = md.list_deployments()
        return rows, {r["name"]: len(md.deployment_history(r["name"])) for r in rows}


def wine_row() -> dict[str, float]:
    from sklearn.datasets import load_wine

    df = load_wine(as_frame=True).frame
    df.columns = [str(c).replace("/", "_") for c in df.columns]
    return {k: float(v) for k, v in df.drop(columns="target").iloc[0].items()}


#: one call of each admin route: (method, path, JSON body)
EVERY_CALL = [("GET", ADMIN, None), ("GET", f"{ADMIN}/{NAME}", None),
              ("PUT", f"{ADMIN}/{NAME}", {"strategy": "canary"}),
              ("POST", f"{ADMIN}/{NAME}/candidate", {"version": 1}),
              ("POST", f"{ADMIN}/{NAME}/promote", {}), ("POST", f"{ADMIN}/{NAME}/pause", {}),
              ("POST", f"{ADMIN}/{NAME}/abort", {}), ("POST", f"{ADMIN}/{NAME}/rollback", {}),
              ("GET", "/admin/elsewhere", None), ("DELETE", f"{ADMIN}/{NAME}", None)]


def test_without_the_token_the_admin_api_is_disabled(servers: dict[str, str],
                                                     project: Path) -> None:
    url, before = servers["closed"], snapshot(project)
    for method, path, body in EVERY_CALL:
        for headers in ({}, AUTH, {"x-cd4ml-actor": "mallory"}):
            r = httpx.request(method, url + path, json=body, headers=headers, timeout=10)
            assert r.status_code == 403, (method, path, r.text)
            doc = r.json()
            assert doc["errors"] == [] and "admin API is disabled" in doc["detail"]
            assert "CD4ML_ADMIN_TOKEN" in doc["detail"]
    assert snapshot(project) == before
    r = httpx.post(f"{url}/predict", json=[wine_row()], timeout=10)
    assert r.status_code == 200 and r.json()["model"] == NAME, r.text


def test_a_missing_or_wrong_token_is_refused(servers: dict[str, str], project: Path) -> None:
    url, before = servers["admin"], snapshot(project)
    for method, path, body in EVERY_CALL:
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": TOKEN},
                        {"authorization": f"Basic {TOKEN}"},
                        {"authorization": f"Bearer {TOKEN}x"}):
            r = httpx.request(method, url + path, json=body, headers=headers, timeout=10)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "CD4ML_ADMIN_TOKEN" in r.json()["detail"]
    assert snapshot(project) == before
    # the model server's routes take no admin token; the dashboard is still at /ui
    r = httpx.post(f"{url}/predict", json=[wine_row()], timeout=10)
    assert r.status_code == 200 and r.json()["model"] == NAME, r.text
    assert httpx.get(f"{url}/ready", timeout=10).status_code == 200
    assert httpx.get(f"{url}/ui/", timeout=30).status_code == 200


def admin(url: str, method: str, path: str, body: Any = None, *, actor: str | None = "ann",
          **headers: str) -> httpx.Response:
    h = {**AUTH, **({"x-cd4ml-actor": actor} if actor else {}),
         **{k.replace("_", "-"): v for k, v in headers.items()}}
    return httpx.request(method, f"{url}{ADMIN}{path}", json=body, headers=h, timeout=30)


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    doc = r.json()
    assert r.headers["etag"] == f'"{doc["revision"]}"'
    return doc


def test_a_canary_over_http(servers: dict[str, str], project: Path) -> None:
    url = servers["admin"]
    doc = ok(admin(url, "GET", f"/{NAME}"))  # nothing stored: serving.alias
    assert (doc["stored"], doc["strategy"], doc["revision"], doc["history"]) == \
        (False, "single", 0, [])
    r = admin(url, "POST", f"/{NAME}/rollback", {})
    assert r.status_code == 404 and "has no history to roll back" in r.json()["detail"]
    assert r.json()["errors"][0]["field"] == "name"

    doc = ok(admin(url, "PUT", f"/{NAME}", {
        "alias": "production", "strategy": "canary", "steps": [0.1, 0.5, 1],
        "automation": "assisted", "reason": "try canaries", "expected_revision": 0}))
    assert (doc["revision"], doc["strategy"], doc["automation"]) == (1, "canary", "assisted")
    assert doc["event"]["action"] == "configure" and doc["event"]["actor"] == "ann"
    assert doc["event"]["from_state"]["extra"] == {"default": True}
    doc = ok(admin(url, "POST", f"/{NAME}/candidate", {"version": 1}, if_match='"1"'))
    assert doc["shares"] == {"v2": 0.9, "v1": 0.1} and doc["status"] == "progressing"
    doc = ok(admin(url, "POST", f"/{NAME}/promote", None, actor=None))
    assert doc["shares"] == {"v2": 0.5, "v1": 0.5} and doc["event"]["actor"] == "admin-api"

    # a write computed from an older revision: 409 with the current one, nothing written
    r = admin(url, "POST", f"/{NAME}/pause", {"reason": "late"}, if_match='"2"', actor="bob")
    assert r.status_code == 409 and r.json()["revision"] == 3, r.text
    assert "expected it at revision 2, found 3" in r.json()["detail"]
    assert r.json()["errors"][0]["field"] == "expected_revision"

    doc = ok(admin(url, "POST", f"/{NAME}/pause", {"reason": "looking at latency",
                                                    "expected_revision": 3}))
    assert doc["status"] == "paused" and doc["event"]["reason"] == "looking at latency"
    doc = ok(admin(url, "POST", f"/{NAME}/abort", {"reason": "latency"}))
    assert doc["status"] == "aborted" and doc["shares"] == {"v2": 1.0}
    doc = ok(admin(url, "POST", f"/{NAME}/rollback", {"to": 3, "reason": "undo the abort"}))
    assert doc["revision"] == 6 and doc["shares"] == {"v2": 0.5, "v1": 0.5}
    doc = ok(admin(url, "POST", f"/{NAME}/rollback", {}, if_match='W/"6"'))
    assert doc["revision"] == 7 and doc["status"] == "aborted"

    doc = ok(admin(url, "GET", f"/{NAME}"))
    hist = doc["history"]
    assert [(h["revision"], h["action"], h["actor"]) for h in hist] == [
        (1, "configure", "ann"), (2, "candidate", "ann"), (3, "promote", "admin-api"),
        (4, "pause", "ann"), (5, "abort", "ann"), (6, "rollback", "ann"),
        (7, "rollback", "ann")]
    assert hist[0]["reason"] == "try canaries" and hist[5]["reason"] == "undo the abort"
    assert hist[4]["from_state"]["status"] == "paused"
    assert hist[4]["to_state"]["status"] == "aborted"
    listed = admin(url, "GET", "").json()["deployments"]
    assert (NAME, 7, True) in [(d["name"], d["revision"], d["stored"]) for d in listed]

    from cd4ml.config import load_config
    from cd4ml.store import open_stores

    cfg, _ = load_config(project)
    with open_stores(cfg.store, project) as stores:
        audit = stores.metadata.list_audit(object=f"deployment:{NAME}")
    done = [a for a in audit if a["action"] != "deployment_refused"]
    assert len(done) == 7 and {a["actor"] for a in done} == {"ann", "admin-api"}
    abort = next(a for a in done if a["action"] == "deployment_abort")
    assert abort["reason"] == "latency" and abort["detail"]["from"]["status"] == "paused"
    assert abort["detail"]["to"]["status"] == "aborted"
    refused = [a for a in audit if a["action"] == "deployment_refused"]
    assert [(a["actor"], a["detail"]) for a in refused] == [
        ("bob", {"action": "pause", "expected": 2, "found": 3})]


@pytest.fixture(scope="module")
def bad(servers: dict[str, str]) -> str:
    """Deployment ``bad``: a canary stored once (revision 1), nothing in progress."""
    doc = ok(admin(servers["admin"], "PUT", "/bad", {"strategy": "canary"}))
    assert doc["revision"] == 1
    return "/bad"


BAD_INPUT = [
    # (method, path under /admin/deployments, body (bytes: as sent), headers,
    #  status, field, in the detail)
    ("PUT", "/bad", {"strategy": "ab", "split": 1.5}, {}, 400, "split",
     "expected the candidate's share, in (0, 1)"),
    ("PUT", "/bad", {"strategy": "ab", "split": 0}, {}, 400, "split", "split = 0"),
    ("PUT", "/bad", {"strategy": "canary", "steps": [0.1, 0.5]}, {}, 400, "steps",
     "the schedule must reach 1 (100 %) to finish"),
    ("PUT", "/bad", {"strategy": "canary", "steps": [5, 25, 100]}, {}, 400, "steps",
     "each step is a share in (0, 1]"),
    ("PUT", "/bad", {"strategy": "canary", "steps": ["a"]}, {}, 422, "steps.0",
     "expected a number"),
    ("PUT", "/bad", {"strategy": "canary", "steps": "0.1,1"}, {}, 422, "steps",
     "expected a list of candidate shares"),
    ("PUT", "/bad", {"strategy": "rainbow"}, {}, 400, "strategy", "expected one of single"),
    ("PUT", "/bad", {"steps": [1]}, {}, 422, "strategy", "required"),
    ("PUT", "/bad", {"stratgy": "canary"}, {}, 422, "stratgy", "unknown field"),
    ("PUT", "/bad", {"strategy": "canary", "alias": "staging"}, {}, 400, "alias",
     "tracks alias 'production'"),
    ("PUT", "/bad", {"strategy": "canary", "fallback": "nowhere"}, {}, 400, "fallback",
     "expected request_id, refuse or arm:ROLE"),
    ("POST", "/bad/candidate", {"version": 9}, {}, 422, "version",
     "model 'wine' has no version 9"),
    ("POST", "/bad/candidate", {"version": 3}, {}, 400, "version",
     "v3's gate is failed: it may only be a shadow"),
    ("POST", "/bad/candidate", {"version": "3"}, {}, 422, "version", "expected a version"),
    ("POST", "/bad/candidate", {}, {}, 422, "version", "required"),
    ("POST", "/bad/promote", {}, {}, 400, "status", "no rollout of deployment 'bad' is in"),
    ("POST", "/bad/abort", {"reason": 3}, {}, 422, "reason", "expected a string or null"),
    ("POST", "/bad/rollback", {}, {}, 422, "to", "revision 1 is its first"),
    ("POST", "/bad/rollback", {"to": 1}, {}, 400, "to", "current revision"),
    ("POST", "/bad/rollback", {"to": -1}, {}, 422, "to", "expected the revision to restore"),
    ("GET", "/nope", None, {}, 404, "name", "no deployment 'nope'; deployments: bad, wine"),
    ("POST", "/nope/promote", {}, {}, 404, "name", "no deployment 'nope'"),
    ("POST", "/nope/rollback", {}, {}, 404, "name", "no deployment 'nope'"),
    ("PUT", "/bad", b'{"strategy": ', {}, 400, "body", "body is not JSON"),
    ("PUT", "/bad", b'["canary"]', {}, 400, "body", "expected a JSON object, got list"),
    ("PUT", "/bad", b'{"strategy": "ab", "strategy": "canary"}', {}, 400, "body",
     "key 'strategy' given twice"),
    ("PUT", "/bad", b'{"strategy": "ab", "split": NaN}', {}, 400, "body",
     "NaN is not a JSON number"),
    ("PUT", "/bad", b'\xff{}', {}, 400, "body", "body is not UTF-8"),
    ("PUT", "/bad", b'{"strategy": "canary"}', {"content-type": "text/plain"}, 415,
     "content-type", "send application/json"),
    ("PUT", "/bad", b"x" * 70_000, {}, 413, None, "body over 65536 bytes"),
    ("PUT", "/bad", {"strategy": "canary", "expected_revision": -1}, {}, 422,
     "expected_revision", "expected the revision read"),
    ("PUT", "/bad", {"strategy": "canary"}, {"if-match": "latest"}, 400, "if-match",
     "expected the revision read, as an ETag"),
    ("PUT", "/bad", {"strategy": "canary", "expected_revision": 1}, {"if-match": '"2"'},
     400, "expected_revision", "If-Match says revision 2"),
    ("PUT", "/bad", {"strategy": "canary", "expected_revision": 0}, {}, 409,
     "expected_revision", "expected it at revision 0, found 1"),
    ("PUT", "/bad", {"strategy": "canary"}, {"x-cd4ml-actor": "a" * 300}, 400,
     "x-cd4ml-actor", "expected a printable name"),
    ("PUT", "/bad", {"strategy": "canary"}, {"origin": "http://evil.example"}, 403,
     "origin", "Origin 'http://evil.example' may not POST here"),
    ("DELETE", "/bad", None, {}, 405, None, "DELETE is not allowed; it takes GET, HEAD, PUT"),
]


@pytest.mark.parametrize("method, path, body, headers, status, field, message", BAD_INPUT,
                         ids=[f"{i}-{b[1]}-{b[5]}" for i, b in enumerate(BAD_INPUT)])
def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(
        servers: dict[str, str], project: Path, bad: str, method: str, path: str,
        body: Any, headers: dict[str, str], status: int, field: str | None,
        message: str) -> None:
    url, before = servers["admin"], snapshot(project)
    h = {**AUTH, "content-type": "application/json", **headers}
    if isinstance(body, bytes):
        r = httpx.request(method, f"{url}{ADMIN}{path}", content=body, headers=h, timeout=30)
    else:
        r = httpx.request(method, f"{url}{ADMIN}{path}", json=body, headers=h, timeout=30)
    assert r.status_code == status, r.text
    doc = r.json()
    assert message in doc["detail"], doc
    if field is not None:
        assert doc["errors"][0]["field"] == field, doc
        assert doc["errors"][0]["loc"].endswith(field)
    assert snapshot(project) == before


def test_an_empty_token_stops_cd4ml_serve_in_one_line(project: Path) -> None:
    env = {**os.environ, "CD4ML_ADMIN_TOKEN": "  "}
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "serve", "-p", str(project),
                          "--port", "9"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("error: CD4ML_ADMIN_TOKEN = ' ': is set but empty")


# -- two admins at once, on a real uvicorn over SQLite and PostgreSQL ------------------

@contextlib.contextmanager
def uvicorn_thread(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a loopback port in a thread; yields its URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise AssertionError("uvicorn did not start")
            threading.Event().wait(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_two_admins_at_once_one_wins_one_gets_409(project: Path, db_url: str,
                                                  tmp_path: Path) -> None:
    from cd4ml.config import load_config
    from cd4ml.rollout.admin_api import create_admin
    from cd4ml.store import ArtifactStore, MetadataStore, Stores

    md = MetadataStore(db_url, root=tmp_path)  # v1 in production: what the admin API reads
    md.register_version(NAME, digest="0" * 64, kind="candidate", model_type="lightgbm",
                        gate={"passed": True}, set_aliases={"production": None}, actor="test")
    stores = Stores(metadata=md, artifacts=ArtifactStore(str(tmp_path / "a"), root=tmp_path),
                    root=tmp_path)
    cfg, _ = load_config(project)
    app = create_admin(cfg, tmp_path, token=TOKEN, stores=lambda: stores)
    try:
        with uvicorn_thread(app) as url, httpx.Client(base_url=url + ADMIN, headers=AUTH,
                                                      timeout=30) as client:
            assert client.put(f"/{NAME}", json={"strategy": "ab"}).status_code == 200
            for rnd in range(6):
                revision = 1 + rnd
                go = threading.Barrier(2)
                got: dict[str, httpx.Response] = {}

                def write(who: str, automation: str, revision: int = revision,
                          go: threading.Barrier = go, got: dict[str, Any] = got) -> None:
                    with httpx.Client(base_url=url + ADMIN, headers=AUTH, timeout=30) as c:
                        go.wait(10)
                        got[who] = c.put(f"/{NAME}", json={
                            "strategy": "ab", "automation": automation,
                            "expected_revision": revision}, headers={"x-cd4ml-actor": who})

                threads = [threading.Thread(target=write, args=(w, a))
                           for w, a in (("ann", "manual"), ("bob", "assisted"))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                codes = {w: r.status_code for w, r in got.items()}
                assert sorted(codes.values()) == [200, 409], {w: r.text for w, r in got.items()}
                winner = next(w for w, c in codes.items() if c == 200)
                loser = got["bob" if winner == "ann" else "ann"].json()
                assert loser["revision"] == revision + 1 and "found" in loser["detail"]
                doc = client.get(f"/{NAME}").json()
                assert doc["revision"] == revision + 1
                assert doc["automation"] == {"ann": "manual", "bob": "assisted"}[winner]
                assert doc["history"][-1]["actor"] == winner
            assert len(client.get(f"/{NAME}").json()["history"]) == 7
        refused = [a for a in md.list_audit(object=f"deployment:{NAME}")
                   if a["action"] == "deployment_refused"]
        assert len(refused) == 6
    finally:
        md.close()
