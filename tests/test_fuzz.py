"""schemathesis over the app's own OpenAPI document: every operation, 200+ examples each.

The document is exact for the served model (:mod:`cd4ml.serving.openapi`): the model's
name and version are the only values of the v2 path parameters, the request fields are
enums of the series keys and dates it serves, and every protocol's body is declared.
So valid data (``positive``) must be answered (2xx, or a declared domain refusal:
an unknown request id is 404), invalid data (``negative``) must be refused with a 4xx,
every answer must match its declared schema, and nothing may be a 5xx.

At the end the share of 2xx answers to valid data is printed per operation, with the
run's duration.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
)

import cd4ml  # noqa: E402
from cd4ml.serving.app import ModelHolder, create_app  # noqa: E402
from cd4ml.predlog import PredictionLog  # noqa: E402

NAME = "walmart-weekly-sales"
EXAMPLES = 200
CHECKS = [not_a_server_error, response_schema_conformance, positive_data_acceptance,
          negative_data_rejection]

#: (operation, mode) -> Counter of statuses; the run's first and last call
TALLY: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
#: (operation, mode) -> Counter of the request bodies' media types
MEDIA: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
CLOCK: dict[str, float] = {}


@pytest.fixture(scope="module")
def fuzz_app(trained_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    model = cd4ml.load_model(f"{NAME}@production", project_dir=trained_project)
    plog = PredictionLog(tmp_path_factory.mktemp("fuzz-log"))
    app = create_app(ModelHolder(model), plog=plog, max_batch_rows=50)

    async def without_lifespan(scope: Any, receive: Any, send: Any) -> None:
        """The app, its startup and shutdown kept for this fixture: the test clients
        schemathesis opens would each close the prediction log on leaving."""
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        await app(scope, receive, send)

    yield without_lifespan
    plog.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_app: Any) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    # 413 (a batch over serving.max_batch_rows) refuses invalid data too
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    return schema


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Any:
    yield
    if not TALLY:
        return
    lines = [f"fuzz: {EXAMPLES}+ examples per operation, "
             f"{CLOCK['last'] - CLOCK['first']:.1f} s; share of 2xx among valid requests:"]
    ops = sorted({op for op, _ in TALLY})
    for op in ops:
        pos, neg = TALLY.get((op, "positive"), Counter()), TALLY.get((op, "negative"), Counter())
        n = sum(pos.values())
        ok = sum(c for s, c in pos.items() if 200 <= s < 300)
        share = f"{100 * ok / n:5.1f} % of {n:4d}" if n else "  (no valid cases)"
        media = dict(MEDIA.get((op, "positive"), {}))
        lines.append(f"  {op:52s} {share}   valid: {dict(sorted(pos.items()))}   "
                     f"invalid: {dict(sorted(neg.items()))}" + (f"   bodies: {media}"
                                                                  if media else ""))
    text = "\n".join(lines)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)
    out = Path(request.config.rootpath) / ".pytest_cache" / "fuzz-report.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "\n".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"[:3000]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_operation_holds_its_contract(api_schema: Any, mode: str) -> None:
    """Each operation of the document, ``EXAMPLES`` cases of valid (or invalid) data."""
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        op = result.ok()
        strategy = op.as_strategy(generation_mode=GenerationMode(mode))

        @given(strategy)
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def run(case: Any) -> None:
            CLOCK.setdefault("first", time.perf_counter())
            response = case.call()
            CLOCK["last"] = time.perf_counter()
            TALLY[(op.label, mode)][response.status_code] += 1
            if case.media_type:
                MEDIA[(op.label, mode)][case.media_type] += 1
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:  # no parameters and no body: nothing invalid to send
            assert mode == "negative", op.label
        except (Exception, BaseExceptionGroup) as exc:  # every operation runs; all
            failures.append(f"{op.label}: {_describe(exc)}")  # failures are reported
    assert not failures, "\n\n".join(failures)
    if mode == "positive":  # the document is exact: valid data is (nearly) always answered
        for op in ("POST /predict", "POST /invocations", "POST /v2/models/{name}/infer",
                   "POST /v2/models/{name}/versions/{version}/infer", "POST /feedback",
                   "GET /"):
            statuses = TALLY[(op, mode)]
            n, ok = sum(statuses.values()), sum(c for st, c in statuses.items() if st < 300)
            assert n >= EXAMPLES, (op, n)
            # feedback: an id drawn at random is unknown (a declared 404)
            assert ok >= (0.05 if op == "POST /feedback" else 0.9) * n, (op, statuses)


def test_the_document_is_the_served_models_and_built_once_per_version(
        trained_project: Path) -> None:
    from fastapi.testclient import TestClient

    model = cd4ml.load_model(f"{NAME}@production", project_dir=trained_project)
    holder = ModelHolder(model)
    app = create_app(holder, max_batch_rows=50)
    client = TestClient(app)
    spec = client.get("/openapi.json").json()
    fields, series, dates = model.row_keys()
    row = spec["components"]["schemas"]["ForecastRow"]
    assert row["required"] == fields and row["additionalProperties"] is False
    assert row["properties"]["store"]["enum"] == sorted({s[0] for s in series})
    assert row["properties"]["dept"]["enum"] == sorted({s[1] for s in series})
    assert row["properties"]["date"]["enum"] == dates
    assert dates[0] == str(model.start.date()) and dates[-1] == str(model.last.date())
    infer = spec["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]
    params = {p["name"]: p["schema"]["enum"] for p in infer["parameters"]}
    assert params == {"name": [NAME], "version": [str(model.version)]}
    assert {"200", "400", "403", "404", "413", "415", "422"} <= set(infer["responses"])
    assert "404" in spec["paths"]["/feedback"]["post"]["responses"]
    assert set(spec["paths"]["/invocations"]["post"]["requestBody"]["content"]) == {
        "application/json", "text/csv"}
    # built once per version: the same document until the model swaps
    assert app.app.openapi() is app.app.openapi()
    first = app.app.openapi()
    again = cd4ml.load_model(f"{NAME}@production", project_dir=trained_project)
    holder.swap(again)
    assert app.app.openapi() is not first
