"""What a kind of servable means to the protocols, one class per kind.

Every protocol (native JSON, OIP v2, MLflow, the web form, batch scoring, feedback)
asks the same few questions of the model it serves: check these rows, predict them,
log them, answer them in my shape. A :class:`ForecastContract` answers them for a
forecast servable (series keys and a date, looked up in the version's precomputed
features), a :class:`TabularContract` for a tabular one (the request carries the
inputs; the bundle's transform encodes them). :func:`contract_for` picks the class by
the servable's class (:data:`CONTRACTS`), so no protocol asks which task it serves.

A contract is made once per loaded version (the app keeps it beside the model), so
whatever does not depend on the request (names, output layouts, the log's feature
table) is computed once, not per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from cd4ml.config import ServingConfig
from cd4ml.errors import ModelError, RequestError
from cd4ml.features.tabular_kernels import REASONS as KERNEL_REASONS
from cd4ml.registry.servable import ServableModel
from cd4ml.registry.tabular import TabularServable
from cd4ml.serving.answers import ANSWERS
from cd4ml.serving.form import Score, forecast_form
from cd4ml.serving.form_tabular import tabular_form
from cd4ml.serving.openapi import api_spec
from cd4ml.serving.openapi_tabular import tabular_api_spec
from cd4ml.predlog import FeatureTable, LogRecord
from cd4ml.serving.v2_tensors import MATRIX_OUTPUT

__all__ = ["ForecastContract", "TabularContract", "CONTRACTS", "contract_for",
           "contract_class", "THREAD_ROWS", "REASONS"]

#: from this many rows on, the model runs in a thread (LightGBM releases the GIL), so
#: one worker uses both cores and keeps answering small requests meanwhile
THREAD_ROWS = 64

#: why a field was refused (``RequestError.errors[*].reason``): the refusal metric's
#: labels, as the tabular kernels name them
REASONS = tuple(r for r in KERNEL_REASONS if r)


class ForecastContract:
    """A forecast servable (:class:`~cd4ml.registry.servable.ServableModel`)."""

    #: takes a single 2-D tensor of all inputs (OIP v2)? A forecast takes keys and a date
    matrix: ClassVar[bool] = False
    #: request field names are matched in any case (``Store`` is ``store``)
    case_sensitive: ClassVar[bool] = False
    #: the v2 metadata of the output tensors
    v2_outputs_meta: ClassVar[list[dict[str, Any]]] = [
        {"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    #: the outputs a v2 request may name
    v2_output_names: ClassVar[tuple[str, ...]] = ("prediction",)

    def __init__(self, model: ServableModel, *, log: bool = False) -> None:
        self.model = model
        self.fields: list[str] = list(model.fields)
        self.field_set = frozenset(self.fields)
        self.numeric: dict[str, bool] = model.numeric
        #: the log's view of the version: made before its first request
        self.table = FeatureTable.of(model) if log else None
        self.feature_names = model.predictor.feature_names

    # -- the request path ----------------------------------------------------------
    def check(self, records: list[Any]) -> np.ndarray:
        """Rows of the precomputed features; RequestError lists every bad field."""
        return self.model.rows_for(records)

    @staticmethod
    def check_matrix(M: np.ndarray) -> np.ndarray:
        """A forecast takes no matrix of inputs (``matrix`` is False: never called)."""
        raise RequestError("a forecast takes its fields by name (series keys and a date), "
                           "not a matrix of inputs")

    def threaded(self, rows: np.ndarray) -> bool:
        return self.model.table is None and len(rows) >= THREAD_ROWS

    def predict(self, rows: np.ndarray) -> np.ndarray:
        m = self.model
        return m.table[rows] if m.table is not None else m.predict_rows(rows)

    def predict_many(self, preps: list[np.ndarray]) -> list[np.ndarray]:
        """Several requests' checked rows predicted in one call, split back per request
        (the shadow process's batches)."""
        return _split(self.predict(np.concatenate(preps)), preps)

    def log_record(self, request_id: str, ts: float, endpoint: str, latency_ms: float,
                   rows: np.ndarray, outputs: np.ndarray, content_type: str,
                   raw: bytes, event_ts: float | None = None,
                   arm: str = "stable") -> LogRecord:
        m = self.model
        return LogRecord(
            request_id=request_id, ts=ts, model=m.name, version=m.version,
            endpoint=endpoint, latency_ms=latency_ms, records=(), features=None,
            feature_names=self.feature_names, outputs=outputs, content_type=content_type,
            request=raw, arm=arm, table=self.table, rows=rows, event_ts=event_ts)

    # -- answers -------------------------------------------------------------------
    @staticmethod
    def answer_rows(outputs: np.ndarray) -> list[Any]:
        """``predictions`` of ``/predict``: a number per row."""
        return outputs.tolist()  # type: ignore[no-any-return]

    mlflow_predictions = answer_rows

    @staticmethod
    def v2_outputs(outputs: np.ndarray) -> list[tuple[str, str, list[int], np.ndarray]]:
        """(name, datatype, shape, values) of each v2 output tensor."""
        return [("prediction", "FP64", [len(outputs)], outputs)]

    def health(self) -> dict[str, Any]:
        return {"forecast_table": self.model.table_status}

    async def form(self, query: Mapping[str, str], score: Score) -> tuple[str, int]:
        """The web form's page and status (with the forecast the query asks for)."""
        return await forecast_form(self.model, query, score)

    def api_spec(self, base: dict[str, Any], s: ServingConfig, *, feedback_token: bool,
                 log: bool) -> dict[str, Any]:
        """The app's OpenAPI document for this model."""
        return api_spec(base, self.model, s, feedback_token=feedback_token, log=log)

    # -- feedback ------------------------------------------------------------------
    def feedback_keys(self, keys: dict[str, Any], loc: str) -> list[dict[str, Any]]:
        """The errors of feedback given by series keys and date (none: it names a row)."""
        try:
            self.model.rows_for([keys])
        except RequestError as exc:
            return [{**e, "loc": e["loc"].replace("rows[0]", loc)} for e in exc.errors]
        return []

    def feedback_actual(self, value: float, loc: str) -> list[dict[str, Any]]:
        """The errors of an actual for this model (any finite number is one)."""
        return []

    @staticmethod
    def warm_up(model: ServableModel, rows: int = 64) -> None:
        """Predict real rows once (first calls allocate); refuse a model that answers NaN."""
        n = min(rows, len(model.X))
        idx = np.linspace(0, len(model.X) - 1, n).astype(np.int64)
        out = np.asarray(model.predictor.predict(model.X[idx]), dtype=float)
        if out.shape != (n,) or not np.isfinite(out).all():
            raise ModelError(f"model {model.name!r} version {model.version} failed its "
                             f"warm-up: {int((~np.isfinite(out)).sum())} of {n} "
                             f"predictions not finite")


class TabularContract:
    """A tabular servable (:class:`~cd4ml.registry.tabular.TabularServable`): what its
    answers are comes from its task's entry of :data:`~cd4ml.serving.answers.ANSWERS`
    (a classifier's label and probabilities, a regressor's number)."""

    matrix: ClassVar[bool] = True
    case_sensitive: ClassVar[bool] = True

    def __init__(self, model: TabularServable, *, log: bool = False) -> None:
        self.model = model
        self.fields = list(model.fields)
        self.field_set = frozenset(self.fields)
        self.numeric = dict(model.numeric)
        self.feature_names = tuple(model.transform.feature_names)
        #: the signature's inputs by name (types, categories, bounds, policies)
        self.inputs: dict[str, dict[str, Any]] = {
            i["name"]: i for i in model.signature.get("inputs", [])}
        self.answers = a = ANSWERS[model.task](model)
        self.classes, self.output_names = a.classes, a.output_names
        self.v2_outputs_meta = a.v2_outputs_meta
        #: the outputs a v2 request may name: the answer's, or MLServer's for a matrix
        self.v2_output_names = (*(o["name"] for o in a.v2_outputs_meta), MATRIX_OUTPUT)
        #: the answer in each protocol's shape (the task's, bound once)
        self.log_outputs, self.mlflow_predictions = a.log_outputs, a.mlflow
        self.v2_outputs, self.mlserver_output = a.v2, a.mlserver

    # -- the request path ----------------------------------------------------------
    def check(self, records: list[Any]) -> Any:
        """The records encoded as the model sees them; RequestError names each bad field."""
        return self.model.encode_records(records)

    def check_matrix(self, M: np.ndarray) -> Any:
        """A matrix of every input in signature order, encoded."""
        return self.model.encode_matrix(M)

    @staticmethod
    def threaded(enc: Any) -> bool:
        return len(enc.X) >= THREAD_ROWS

    def predict(self, enc: Any) -> np.ndarray:
        return self.model.predict_encoded(enc.X)

    def predict_many(self, encs: list[Any]) -> list[np.ndarray]:
        """Several requests' encoded rows predicted in one call, split back per request
        (the shadow process's batches)."""
        Xs = [e.X for e in encs]
        return _split(self.model.predict_encoded(np.concatenate(Xs)), Xs)

    def log_record(self, request_id: str, ts: float, endpoint: str, latency_ms: float,
                   enc: Any, outputs: np.ndarray, content_type: str,
                   raw: bytes, event_ts: float | None = None,
                   arm: str = "stable") -> LogRecord:
        m = self.model
        return LogRecord(
            request_id=request_id, ts=ts, model=m.name, version=m.version,
            endpoint=endpoint, latency_ms=latency_ms, records=enc.raw, features=enc.X,
            feature_names=self.feature_names, outputs=self.log_outputs(outputs),
            content_type=content_type, request=raw, arm=arm,
            output_names=self.output_names, event_ts=event_ts)

    # -- answers -------------------------------------------------------------------
    def answer_rows(self, outputs: np.ndarray) -> list[Any]:
        """``predictions`` of ``/predict``: label and probabilities, or the value."""
        return self.model.answer_rows(outputs)  # type: ignore[no-any-return]

    def health(self) -> dict[str, Any]:
        return {"task": self.model.task, "predictor": self.model.predictor_status}

    async def form(self, query: Mapping[str, str], score: Score) -> tuple[str, int]:
        """The web form's page and status (with the answer the query asks for)."""
        return await tabular_form(self, query, score)

    def api_spec(self, base: dict[str, Any], s: ServingConfig, *, feedback_token: bool,
                 log: bool) -> dict[str, Any]:
        """The app's OpenAPI document for this model."""
        return tabular_api_spec(base, self, s, feedback_token=feedback_token, log=log)

    # -- feedback ------------------------------------------------------------------
    @staticmethod
    def feedback_keys(keys: dict[str, Any], loc: str) -> list[dict[str, Any]]:
        return [{"loc": loc, "field": "request_id", "value": None,
                 "problem": "feedback for a tabular model names its request: give "
                            "request_id (keys and a date are for forecasts)"}]

    def feedback_actual(self, value: float, loc: str) -> list[dict[str, Any]]:
        """A classifier's actual must be one of its classes; a regressor's any number."""
        return self.answers.actual_errors(value, loc)

    @staticmethod
    def warm_up(model: TabularServable, rows: int = 64) -> None:
        """Predict once on the bundle's sample of training rows (rows of code 0 without
        one), as requests will (first calls allocate); refuse a model whose answers are
        not finite or not of its shape."""
        X = model.sample[:rows] if model.sample is not None and len(model.sample) else \
            np.zeros((rows, len(model.transform.feature_names)), dtype=np.float32)
        rows = len(X)
        out = np.asarray(model.predict_encoded(X), dtype=float)
        want = ANSWERS[model.task](model).shape(rows)
        if out.shape != want or not np.isfinite(out).all():
            raise ModelError(f"model {model.name!r} version {model.version} failed its "
                             f"warm-up: answers of shape {out.shape} (expected {want}), "
                             f"{int((~np.isfinite(out)).sum())} not finite")


Contract = ForecastContract | TabularContract

#: servable class -> its contract (the most specific class of a servable's MRO wins)
CONTRACTS: dict[type, type[ForecastContract] | type[TabularContract]] = {
    ServableModel: ForecastContract, TabularServable: TabularContract}


def contract_class(model: Any) -> type[ForecastContract] | type[TabularContract]:
    for cls in type(model).__mro__:
        found = CONTRACTS.get(cls)
        if found is not None:
            return found
    raise ModelError(f"no serving contract for a {type(model).__name__}; known: "
                     f"{sorted(c.__name__ for c in CONTRACTS)}")


def contract_for(model: Any, *, log: bool = False) -> Contract:
    """The contract of a loaded version (``log``: with what the prediction log needs)."""
    return contract_class(model)(model, log=log)


def _split(outputs: np.ndarray, parts: list[Any]) -> list[np.ndarray]:
    """``outputs`` of the concatenated ``parts``, cut back into one array per part."""
    return np.split(outputs, np.cumsum([len(p) for p in parts])[:-1])
