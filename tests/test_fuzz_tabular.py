"""schemathesis over a tabular model's OpenAPI document (as tests/test_fuzz.py does for a
forecast): valid data is answered, invalid data refused with a 4xx, every answer
matches its schema, nothing is a 5xx. Fewer examples per operation than the forecast's
run; a classifier on wine (13 bounded numeric inputs, 3 classes) and, when the data is
there, the ACS classifier (15 coded inputs).
"""

from __future__ import annotations

from collections import Counter
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
from tabular_servables import ACS_NAME, acs_parts, servable, wine_parts  # noqa: E402

from cd4ml.serving.app import ModelHolder, create_app  # noqa: E402
from cd4ml.predlog import PredictionLog  # noqa: E402

EXAMPLES = 60
CHECKS = [not_a_server_error, response_schema_conformance, positive_data_acceptance,
          negative_data_rejection]
#: operations whose valid data must (nearly) always be answered 2xx
ANSWERED = ("POST /predict", "POST /invocations", "POST /v2/models/{name}/infer",
            "POST /v2/models/{name}/versions/{version}/infer", "GET /")


def _servable(kind: str) -> Any:
    if kind == "wine":
        return servable(wine_parts()[0], "wine")
    return servable(acs_parts(n_train=5_000, trees=20)[0], ACS_NAME)


@pytest.fixture(scope="module", params=["wine", "acs"])
def api_schema(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    plog = PredictionLog(tmp_path_factory.mktemp("fuzz-tabular-log"))
    app = create_app(ModelHolder(_servable(request.param)), plog=plog, max_batch_rows=50)

    async def without_lifespan(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the log stays open for the whole module
            while True:
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        await app(scope, receive, send)

    schema = schemathesis.openapi.from_asgi("/openapi.json", without_lifespan)
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    yield schema
    plog.close()


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_operation_holds_its_contract(api_schema: Any, mode: str) -> None:
    failures: list[str] = []
    tally: dict[str, Counter[int]] = {}
    for result in api_schema.get_all_operations():
        op = result.ok()
        seen = tally.setdefault(op.label, Counter())

        @given(op.as_strategy(generation_mode=GenerationMode(mode)))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def run(case: Any) -> None:
            response = case.call()
            seen[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:
            assert mode == "negative", op.label
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{op.label}: {type(exc).__name__}: {exc}"[:3000])
    assert not failures, "\n\n".join(failures)
    if mode == "positive":
        for label in ANSWERED:
            n, ok = sum(tally[label].values()), sum(c for s, c in tally[label].items()
                                                    if s < 300)
            assert n >= EXAMPLES and ok >= 0.9 * n, (label, dict(tally[label]))
