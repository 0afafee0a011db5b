"""Hostile bodies on every POST route, cross-site writes and the feedback token.

Every body below was a 500 (a traceback in the log) or an unintended 200 before the
hardening of issue 11: each must now be a 4xx whose message names the problem, and
the worker stays healthy. The whole list runs in-process; a subset, the Origin and
token checks and an empty token at start also run against a real ``cd4ml serve``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import start_server, stop_server
from fastapi.testclient import TestClient

import cd4ml
from cd4ml.config import ServingConfig
from cd4ml.serving.app import ModelHolder, create_app
from cd4ml.predlog import PredictionLog, status

NAME = "walmart-weekly-sales"
JSON = {"content-type": "application/json"}
ROW = {"store": 1, "dept": 1, "date": "2012-11-02"}
BIG = "1" + "0" * 5000  # Python's int-string limit is 4,300 digits
DEEP = b"[" * 100_000 + b"]" * 100_000


def v2(**change: Any) -> dict[str, Any]:
    req: dict[str, Any] = {"inputs": [
        {"name": "store", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "dept", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "date", "shape": [1], "datatype": "BYTES", "data": ["2012-11-02"]}]}
    req.update(change)
    return req


def enc(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# (name, body, content type, text the answer must contain); the body goes to every
# JSON route (predict, feedback, both v2 infer paths, /invocations as JSON)
EVERY_ROUTE: list[tuple[str, bytes, str, str]] = [
    ("int of 5,000 digits", b'{"store": ' + BIG.encode() + b', "dept": 1, "date": "2012-11-02"}',
     "application/json", "too large for a 64-bit float"),
    ("nested 100,000 deep", DEEP, "application/json", "nested deeper than 1024"),
    ("nested 1,025 deep object", b'{"a":' * 1025 + b"1" + b"}" * 1025, "application/json",
     "nested deeper than 1024"),
    ("NaN literal", b'{"store": NaN, "dept": 1, "date": "2012-11-02"}', "application/json",
     "NaN and Infinity"),
    ("Infinity literal", b'{"store": Infinity, "dept": 1, "date": "2012-11-02"}',
     "application/json", "NaN and Infinity"),
    ("duplicate keys", b'{"store": 1, "store": 2, "dept": 1, "date": "2012-11-02"}',
     "application/json", "'store' appears twice"),
    ("invalid UTF-8", b'{"store": 1, "dept": 1, "date": "\xff\xfe"}', "application/json",
     "not valid UTF-8"),
    ("lone surrogate", b'{"store": 1, "dept": 1, "date": "\\ud800"}', "application/json",
     "surrogate"),
    ("byte order mark", b"\xef\xbb\xbf" + enc(ROW), "application/json", "byte order mark"),
    ("empty body", b"", "application/json", "empty"),
    ("raw NUL in a string", b'{"store": 1, "dept": 1, "date": "2012-11-02\x00"}',
     "application/json", "control character"),
    ("not JSON", b"{not json", "application/json", "not valid JSON"),
    ("text/plain JSON", enc(ROW), "text/plain", "content type 'text/plain' is not accepted"),
    ("form-encoded", b"store=1&dept=1&date=2012-11-02", "application/x-www-form-urlencoded",
     "is not accepted"),
    ("multipart", b"--x\r\n\r\n1\r\n--x--", "multipart/form-data; boundary=x",
     "is not accepted"),
    ("JSON in latin-1", enc(ROW), "application/json; charset=latin-1", "is not accepted"),
]

# route-specific bodies: (name, path, body, content type, status, text)
N = f"/v2/models/{NAME}"
ROUTE_CASES: list[tuple[str, str, bytes, str, int, str]] = [
    ("NUL escaped in the date", "/predict", enc({**ROW, "date": "2012-11-02\x00"}),
     "application/json", 422, "YYYY-MM-DD"),
    ("huge string in the date", "/predict", enc({**ROW, "date": "x" * 2_000_000}),
     "application/json", 422, "YYYY-MM-DD"),
    ("array where an object is expected", "/predict", enc([[1, 1, "2012-11-02"]]),
     "application/json", 422, "expected an object"),
    ("rows and something else", "/predict", enc({"rows": [ROW], "x": 1}), "application/json",
     422, "next to 'rows'"),
    ("a field in two cases", "/predict", enc({**ROW, "Store": 1}), "application/json", 422,
     "name the same field"),
    ("row of 4 values for a header of 3", "/invocations",
     b"store,dept,date\n1,1,2012-11-02,5\n", "text/csv", 422, "4 values but the header has 3"),
    ("row of 2 values", "/invocations", b"store,dept,date\n1,1\n", "text/csv", 422,
     "2 values but the header has 3"),
    ("csv not UTF-8", "/invocations", b"store,dept,date\n1,1,\xff\n", "text/csv", 422,
     "not valid UTF-8"),
    ("csv with a BOM", "/invocations", b"\xef\xbb\xbfstore,dept,date\n1,1,2012-11-02\n",
     "text/csv", 422, "byte order mark"),
    ("csv field of 200 KB", "/invocations", b"store,dept,date\n" + b"1" * 200_000 +
     b",1,2012-11-02\n", "text/csv", 422, "field larger than field limit"),
    ("csv 400-digit store", "/invocations", b"store,dept,date\n1" + b"0" * 400 +
     b",1,2012-11-02\n", "text/csv", 422, "finite"),
    ("csv header twice", "/invocations", b"store,store,date\n1,1,2012-11-02\n", "text/csv",
     422, "names a column twice"),
    ("csv empty", "/invocations", b"", "text/csv", 422, "empty"),
    ("columns not a list", "/invocations", enc({"dataframe_split": {"columns": 5,
                                                                    "data": [[1]]}}),
     "application/json", 422, "columns must be a list of column names"),
    ("columns of objects", "/invocations", enc({"dataframe_split": {"columns": [{"a": 1}],
                                                                    "data": [[1]]}}),
     "application/json", 422, "columns must be a list of column names"),
    ("instances: a column of an object", "/invocations",
     enc({"instances": {"store": {"a": 1}, "dept": [1], "date": ["2012-11-02"]}}),
     "application/json", 422, "a column is a list of values"),
    ("params not an object", "/invocations", enc({"instances": [ROW], "params": [1]}),
     "application/json", 422, "params must be an object"),
    ("v2 parameters not an object", f"{N}/infer", enc(v2(parameters=5)), "application/json",
     400, "parameters must be an object"),
    ("v2 input parameters a list", f"{N}/infer",
     enc({"inputs": [{**v2()["inputs"][0], "parameters": [1]}, *v2()["inputs"][1:]]}),
     "application/json", 400, "parameters must be an object"),
    ("v2 outputs not a list", f"{N}/infer", enc(v2(outputs=5)), "application/json", 400,
     "outputs must be a list"),
    ("v2 outputs null", f"{N}/infer", enc(v2(outputs=None)), "application/json", 400,
     "outputs is null"),
    ("v2 unknown output", f"{N}/infer", enc(v2(outputs=[{"name": "x"}])), "application/json",
     400, "not an output of the model"),
    ("v2 binary_data_size a string", f"{N}/infer",
     enc(v2(inputs=[{"name": "store", "shape": [1], "datatype": "INT64",
                     "parameters": {"binary_data_size": "x"}}])), "application/json", 400,
     "binary_data_size 'x' must be a non-negative whole number"),
    ("v2 binary_data_size negative", f"{N}/infer",
     enc(v2(inputs=[{"name": "store", "shape": [1], "datatype": "INT64",
                     "parameters": {"binary_data_size": -5}}])), "application/json", 400,
     "must be a non-negative whole number"),
    ("v2 binary_data_size 10**30", f"{N}/infer",
     enc(v2(inputs=[{"name": "store", "shape": [1], "datatype": "INT64",
                     "parameters": {"binary_data_size": 10**30}}])), "application/json", 400,
     "must be a non-negative whole number"),
    ("v2 shape of 10**30 values", f"{N}/infer",
     enc(v2(inputs=[{"name": "store", "shape": [10**10] * 3, "datatype": "INT64",
                     "data": [1]}])), "application/json", 400,
     "holds 1000000000000000000000000000000 values but 1 were sent"),
    ("v2 name a list", f"{N}/infer", enc(v2(inputs=[{"name": ["x"], "shape": [1],
                                                     "datatype": "INT64", "data": [1]}])),
     "application/json", 400, "name must be a string"),
    ("v2 data nested 900 deep", f"{N}/infer",
     b'{"inputs":[{"name":"store","shape":[1],"datatype":"INT64","data":' + b"[" * 900 +
     b"1" + b"]" * 900 + b"}]}", "application/json", 400, "missing: ['dept', 'date']"),
    ("v2 BYTES for a number", f"{N}/infer",
     enc(v2(inputs=[{**v2()["inputs"][0], "datatype": "BYTES"}, *v2()["inputs"][1:]])),
     "application/json", 400, "does not fit the field"),
    ("v2 unknown key", f"{N}/infer", enc(v2(foo=1)), "application/json", 400,
     "unknown key 'foo'"),
    ("v2 version not a number", f"{N}/versions/abc/infer", enc(v2()), "application/json",
     400, "is not a version number"),
    ("v2 text/plain", f"{N}/infer", enc(v2()), "text/plain", 415, "is not accepted"),
    ("feedback actual of 400 digits", "/feedback",
     b'{"store": 1, "dept": 1, "date": "2012-11-02", "actual": 1' + b"0" * 399 + b"}",
     "application/json", 422, "too large for a 64-bit float"),
    ("feedback actual of 300 digits", "/feedback",
     b'{"store": 1, "dept": 1, "date": "2012-11-02", "actual": 1' + b"0" * 299 + b"}",
     "application/json", 422, "within ±2**53"),
    ("feedback actual 10**20", "/feedback", enc({**ROW, "actual": 10**20}),
     "application/json", 422, "within ±2**53"),
    ("feedback actual null next to a reward", "/feedback",
     enc({**ROW, "actual": None, "reward": 1.0}), "application/json", 422,
     "expected a finite number"),
    ("feedback reward null next to an actual", "/feedback",
     enc({**ROW, "actual": 1.0, "reward": None}), "application/json", 422,
     "expected a finite number"),
    ("feedback actuals with keys", "/feedback", enc({**ROW, "actuals": [1.0]}),
     "application/json", 422, "unknown field"),
    ("feedback wrapper and more", "/feedback", enc({"feedback": [{**ROW, "actual": 1}],
                                                    "x": 1}),
     "application/json", 422, "give 'feedback' alone"),
]

JSON_ROUTES = ["/predict", "/feedback", f"{N}/infer", f"{N}/versions/1/infer", "/invocations"]


@pytest.fixture(scope="module")
def model(trained_project: Path):
    return cd4ml.load_model(f"{NAME}@production", project_dir=trained_project)


@pytest.fixture(scope="module")
def logged(model, tmp_path_factory: pytest.TempPathFactory):
    plog = PredictionLog(tmp_path_factory.mktemp("hostile-log"))
    client = TestClient(create_app(ModelHolder(model), plog=plog,
                                   settings=ServingConfig(allowed_origins=[
                                       "https://dash.example:8443"])),
                        raise_server_exceptions=False)
    yield client, plog
    plog.close()


def _message(res: httpx.Response) -> str:
    body = res.json()
    return str(body.get("detail") or body.get("error") or body.get("message"))


def _feedback_rows(plog: PredictionLog) -> int:
    return sum(s["feedback"] for s in status(plog.dir)["segments"])


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("name, body, ctype, text", EVERY_ROUTE, ids=[c[0] for c in EVERY_ROUTE])
def test_hostile_bodies_get_a_4xx_naming_the_problem(logged, path, name, body, ctype,
                                                     text) -> None:
    client, _ = logged
    res = client.post(path, content=body, headers={"content-type": ctype})
    assert 400 <= res.status_code < 500, (name, path, res.status_code, res.text[:300])
    assert text in _message(res), (name, path, res.text[:300])
    assert client.get("/live").status_code == 200


@pytest.mark.parametrize("name, path, body, ctype, status_code, text", ROUTE_CASES,
                         ids=[c[0] for c in ROUTE_CASES])
def test_route_specific_hostile_bodies(logged, name, path, body, ctype, status_code,
                                       text) -> None:
    client, _ = logged
    res = client.post(path, content=body, headers={"content-type": ctype})
    assert res.status_code == status_code, (name, res.status_code, res.text[:300])
    assert text in _message(res), (name, res.text[:300])
    assert client.get("/live").status_code == 200


def test_the_form_answers_hostile_queries_with_a_4xx_or_the_page(logged) -> None:
    client, _ = logged
    for q in ["store=1&dept=1&date=2012-11-02%00", f"store={BIG}&dept=1&date=2012-11-02",
              "store=nan&dept=1&date=2012-11-02", "store=inf&dept=-inf&date=x",
              "store=1e400&dept=1&date=2012-11-02", "store=%ff&dept=1&date=x",
              "store=1&dept=1&date=%ud800", "store=1&dept=1&date=" + "9" * 60_000,
              "date=", "store=&dept=&date=", "store=1&dept=1&date=2012-11-2",
              "store=1&dept=1&date=%EF%BC%92012-11-02"]:
        res = client.get("/?" + q)
        assert res.status_code in (200, 422), (q, res.status_code)
        assert res.status_code == 422 and 'id="error"' in res.text, q
    # a field left out takes the form's default: the page shows a forecast
    res = client.get("/", params={"store": 1, "dept": 1})
    assert res.status_code == 200 and 'id="forecast"' in res.text


def test_cross_site_posts_are_refused_and_store_nothing(logged) -> None:
    client, plog = logged
    before = _feedback_rows(plog)
    item = enc({**ROW, "actual": 100.0})
    for path in JSON_ROUTES:
        body = enc(v2()) if "/v2/" in path else enc({"instances": [ROW]}) \
            if path == "/invocations" else item
        for origin in ("http://evil.example", "null", "http://127.0.0.1:5005",
                       "https://dash.example"):  # the allowed one has another port
            res = client.post(path, content=body, headers={**JSON, "origin": origin})
            assert res.status_code == 403, (path, origin, res.text)
            assert "serving.allowed_origins" in _message(res)
        # the simple request a web page can send without a preflight
        res = client.post(path, content=body, headers={"content-type": "text/plain",
                                                       "origin": "http://evil.example"})
        assert res.status_code == 403, path
    plog.flush()
    assert _feedback_rows(plog) == before
    # the server's own origin, and one listed in serving.allowed_origins, may POST
    own = client.post("/feedback", content=item,
                      headers={**JSON, "origin": "http://testserver", "host": "testserver"})
    assert own.status_code == 200, own.text
    listed = client.post("/predict", content=enc(ROW),
                         headers={**JSON, "origin": "https://DASH.example:8443"})
    assert listed.status_code == 200, listed.text
    no_origin = client.post("/predict", content=enc(ROW), headers=JSON)
    assert no_origin.status_code == 200


def test_json_media_types(logged) -> None:
    client, _ = logged
    for ctype in ("application/json; charset=utf-8", "application/json;charset=UTF-8",
                  "application/vnd.cd4ml+json", "APPLICATION/JSON"):
        assert client.post("/predict", content=enc(ROW),
                           headers={"content-type": ctype}).status_code == 200, ctype
    for ctype in (None, "application/octet-stream"):  # what tritonclient sends
        headers = {"content-type": ctype} if ctype else {}
        res = client.post(f"{N}/infer", content=enc(v2()), headers=headers)
        assert res.status_code == 200, (ctype, res.text)
    res = client.post("/predict", content=enc(ROW), headers={})
    assert res.status_code == 415 and "no content type" not in _message(res)
    assert client.post("/invocations", content=b"store,dept,date\n1,1,2012-11-02\n",
                       headers={"content-type": "text/csv; charset=utf-8"}).status_code == 200


def test_feedback_token(model, tmp_path: Path) -> None:
    plog = PredictionLog(tmp_path / "log")
    client = TestClient(create_app(ModelHolder(model), plog=plog, feedback_token="s3cret"))
    item = {**ROW, "actual": 100.0}
    try:
        for auth in (None, "Bearer wrong", "Basic czNjcmV0", "Bearer", "Bearer s3cret2"):
            headers = {"authorization": auth} if auth else {}
            res = client.post("/feedback", json=item, headers=headers)
            assert res.status_code == 401, auth
            assert res.headers["www-authenticate"] == "Bearer"
            assert "CD4ML_FEEDBACK_TOKEN" in res.json()["detail"]
        plog.flush()
        assert _feedback_rows(plog) == 0  # nothing stored
        ok = client.post("/feedback", json=item, headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json() == {"accepted": 1}
        # predictions need no token
        assert client.post("/predict", json=ROW).status_code == 200
    finally:
        plog.close()


def test_an_allowed_origin_must_be_an_origin() -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        ServingConfig(allowed_origins=["https://dash.example/path"])


# -- on a real `cd4ml serve` process ---------------------------------------------------

REAL_SUBSET = [c for c in EVERY_ROUTE if c[0] in (
    "int of 5,000 digits", "nested 100,000 deep", "duplicate keys", "invalid UTF-8",
    "NaN literal", "byte order mark", "text/plain JSON")]


def test_hostile_bodies_on_a_real_server(trained_project: Path) -> None:
    env_before = os.environ.get("CD4ML_FEEDBACK_TOKEN")
    os.environ["CD4ML_FEEDBACK_TOKEN"] = "t0ken"
    try:
        proc, url = start_server(trained_project)
    finally:
        if env_before is None:
            del os.environ["CD4ML_FEEDBACK_TOKEN"]
        else:
            os.environ["CD4ML_FEEDBACK_TOKEN"] = env_before
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            for name, body, ctype, text in REAL_SUBSET:
                for path in ("/predict", f"{N}/infer", "/invocations"):
                    res = http.post(path, content=body, headers={"content-type": ctype})
                    assert 400 <= res.status_code < 500, (name, path, res.status_code)
                    assert text in _message(res), (name, path, res.text[:200])
            for name, path, body, ctype, code, text in ROUTE_CASES:
                if name in ("row of 4 values for a header of 3", "v2 parameters not an object",
                            "columns not a list", "v2 version not a number"):
                    res = http.post(path, content=body, headers={"content-type": ctype})
                    assert res.status_code == code and text in _message(res), name
            feedback = {"content-type": "application/json"}
            big = b'{"store": 1, "dept": 1, "date": "2012-11-02", "actual": 1' + \
                b"0" * 399 + b"}"
            res = http.post("/feedback", content=big,
                            headers={**feedback, "authorization": "Bearer t0ken"})
            assert res.status_code == 422 and "too large for a 64-bit" in _message(res)
            # cross-site: refused before the token is even looked at
            res = http.post("/feedback", content=enc({**ROW, "actual": 1.0}),
                            headers={"content-type": "text/plain",
                                     "origin": "http://evil.example"})
            assert res.status_code == 403
            res = http.post("/feedback", content=enc({**ROW, "actual": 1.0}), headers=feedback)
            assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"
            res = http.post("/feedback", content=enc({**ROW, "actual": 1.0}),
                            headers={**feedback, "authorization": "Bearer t0ken",
                                     "origin": url})  # a page of the server itself
            assert res.status_code == 200, res.text
            assert http.get("/live").status_code == 200
            assert http.get("/ready").status_code == 200
        log = Path(proc.log_path).read_text()  # type: ignore[attr-defined]
        assert "unhandled error" not in log and "Traceback" not in log
    finally:
        stop_server(proc)


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_feedback_token_is_refused_at_start(trained_project: Path, value) -> None:
    env = {**os.environ, "CD4ML_FEEDBACK_TOKEN": value}
    res = subprocess.run([sys.executable, "-m", "cd4ml.cli", "serve", "-p", str(trained_project),
                          "--port", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    lines = [x for x in res.stderr.strip().splitlines() if x]
    assert len(lines) == 1 and "CD4ML_FEEDBACK_TOKEN" in lines[0] and "empty" in lines[0], \
        res.stderr
