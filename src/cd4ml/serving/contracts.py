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
from cd4ml.registry.servable import ServableModel
from cd4ml.registry.tabular import TabularServable
from cd4ml.serving.form import Score, forecast_form
from cd4ml.serving.form_tabular import tabular_form
from cd4ml.serving.openapi import api_spec
from cd4ml.serving.openapi_tabular import tabular_api_spec
from cd4ml.serving.predlog import FeatureTable, LogRecord

__all__ = ["ForecastContract", "TabularContract", "CONTRACTS", "contract_for",
           "contract_class", "THREAD_ROWS", "REASONS"]

#: from this many rows on, the model runs in a thread (LightGBM releases the GIL), so
#: one worker uses both cores and keeps answering small requests meanwhile
THREAD_ROWS = 64

#: why a field was refused (``RequestError.errors[*].reason``): the metric's labels
REASONS = ("missing_field", "unknown_field", "wrong_type", "not_finite", "below_min",
           "above_max", "unknown_category", "missing_value")


def _v2_datatype(values: list[Any]) -> str:
    """The v2 datatype of a list of class values (all of one kind)."""
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return "BOOL"
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, (int, float, np.number)) for v in values):
        return "FP64"
    return "BYTES"


class ForecastContract:
    """A forecast servable (:class:`~cd4ml.registry.servable.ServableModel`)."""

    #: takes a single 2-D tensor of all inputs (OIP v2)? A forecast takes keys and a date
    matrix: ClassVar[bool] = False
    #: request field names are matched in any case (``Store`` is ``store``)
    case_sensitive: ClassVar[bool] = False
    #: the v2 metadata of the output tensors
    v2_outputs_meta: ClassVar[list[dict[str, Any]]] = [
        {"name": "prediction", "datatype": "FP64", "shape": [-1]}]

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

    def log_record(self, request_id: str, ts: float, endpoint: str, latency_ms: float,
                   rows: np.ndarray, outputs: np.ndarray, content_type: str,
                   raw: bytes) -> LogRecord:
        m = self.model
        return LogRecord(
            request_id=request_id, ts=ts, model=m.name, version=m.version,
            endpoint=endpoint, latency_ms=latency_ms, records=(), features=None,
            feature_names=self.feature_names, outputs=outputs, content_type=content_type,
            request=raw, arm="main", table=self.table, rows=rows)

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
    """A tabular servable (:class:`~cd4ml.registry.tabular.TabularServable`):
    classification (label and probabilities) or regression (a number)."""

    matrix: ClassVar[bool] = True
    case_sensitive: ClassVar[bool] = True

    def __init__(self, model: TabularServable, *, log: bool = False) -> None:
        self.model = model
        self.fields = list(model.fields)
        self.field_set = frozenset(self.fields)
        self.numeric = dict(model.numeric)
        self.feature_names = list(model.transform.feature_names)
        #: the signature's inputs by name (types, categories, bounds, policies)
        self.inputs: dict[str, dict[str, Any]] = {
            i["name"]: i for i in model.signature.get("inputs", [])}
        classes = model.classes
        self.classes: list[Any] | None = None if classes is None else [
            v.item() if isinstance(v, np.generic) else v for v in classes]
        if self.classes is None:  # regression: one number per row
            self.output_names: tuple[str, ...] = ()
            self.v2_outputs_meta = [{"name": "prediction", "datatype": "FP64",
                                     "shape": [-1]}]
            return
        k = len(self.classes)
        booster = getattr(model.predictor, "booster", None)
        #: a binary LightGBM booster answers the positive class's probability alone
        #: (a multiclass one, with two classes, both)
        self._mlserver_column = k == 2 and (
            booster is None or booster.num_model_per_iteration() == 1)
        self.numeric_classes = _v2_datatype(self.classes) != "BYTES"
        #: the log holds numbers: a label is its class where classes are numbers, else
        #: the class's index (``label_index``)
        self.output_names = ("label" if self.numeric_classes else "label_index",
                             *(f"probability_{c}" for c in self.classes))
        self._index = {c: i for i, c in enumerate(self.classes)}
        self.label_datatype = _v2_datatype(self.classes)
        self.v2_outputs_meta = [
            {"name": "label", "datatype": self.label_datatype, "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, k]}]

    @property
    def classifier(self) -> bool:
        return self.classes is not None

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

    def labels(self, outputs: np.ndarray) -> np.ndarray:
        return self.model.labels(outputs)

    def log_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """What the log stores: regression values, or per row the label (a number, see
        ``output_names``) and the probabilities."""
        if self.classes is None:
            return outputs
        labels = self.labels(outputs)
        out = np.empty((len(outputs), len(self.output_names)), np.float64)
        out[:, 1:] = outputs
        if self.numeric_classes:
            out[:, 0] = labels
        else:
            out[:, 0] = [self._index[v] for v in labels.tolist()]
        return out

    def log_record(self, request_id: str, ts: float, endpoint: str, latency_ms: float,
                   enc: Any, outputs: np.ndarray, content_type: str,
                   raw: bytes) -> LogRecord:
        m = self.model
        return LogRecord(
            request_id=request_id, ts=ts, model=m.name, version=m.version,
            endpoint=endpoint, latency_ms=latency_ms, records=enc.raw, features=enc.X,
            feature_names=self.feature_names, outputs=self.log_outputs(outputs),
            content_type=content_type, request=raw, arm="main",
            output_names=self.output_names)

    # -- answers -------------------------------------------------------------------
    def answer_rows(self, outputs: np.ndarray) -> list[Any]:
        """``predictions`` of ``/predict``: label and probabilities, or the value."""
        return self.model.answer_rows(outputs)  # type: ignore[no-any-return]

    def mlflow_predictions(self, outputs: np.ndarray) -> list[Any]:
        """What MLflow's sklearn flavour answers: a classifier's labels, else values."""
        if self.classes is None:
            return outputs.tolist()  # type: ignore[no-any-return]
        return self.labels(outputs).tolist()  # type: ignore[no-any-return]

    def v2_outputs(self, outputs: np.ndarray) -> list[tuple[str, str, list[int], Any]]:
        """(name, datatype, shape, values) of each v2 output tensor."""
        n = len(outputs)
        if self.classes is None:
            return [("prediction", "FP64", [n], np.asarray(outputs, np.float64))]
        labels = np.asarray(self.labels(outputs))
        return [("label", self.label_datatype, [n], labels),
                ("probabilities", "FP64", [n, len(self.classes)],
                 np.asarray(outputs, np.float64))]

    def mlserver_output(self, outputs: np.ndarray) -> np.ndarray:
        """What MLServer's LightGBM runtime answers (``Booster.predict``): the positive
        class's probability for a binary classifier, every class's for a multiclass one,
        the value for a regressor."""
        if self.classes is not None and self._mlserver_column:
            return np.asarray(outputs[:, 1], np.float64)
        return np.asarray(outputs, np.float64)

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
    def feedback_keys(self, keys: dict[str, Any], loc: str) -> list[dict[str, Any]]:
        return [{"loc": loc, "field": "request_id", "value": None,
                 "problem": "feedback for a tabular model names its request: give "
                            "request_id (keys and a date are for forecasts)"}]

    def feedback_actual(self, value: float, loc: str) -> list[dict[str, Any]]:
        """A classifier's actual must be one of its classes (a number: the class, or its
        index where classes are not numbers)."""
        if self.classes is None:
            return []
        known = self.classes if self.numeric_classes else list(range(len(self.classes)))
        if any(value == c for c in known):
            return []
        what = f"one of the classes {self.classes}" if self.numeric_classes else \
            f"a class index 0..{len(self.classes) - 1} (classes {self.classes})"
        return [{"loc": f"{loc}.actual", "field": "actual", "value": value,
                 "problem": f"expected {what}"}]

    @staticmethod
    def warm_up(model: TabularServable, rows: int = 64) -> None:
        """Predict once on the bundle's sample of training rows (rows of code 0 without
        one), as requests will (first calls allocate); refuse a model whose answers are
        not finite or not of its shape."""
        X = model.sample[:rows] if model.sample is not None and len(model.sample) else \
            np.zeros((rows, len(model.transform.feature_names)), dtype=np.float32)
        rows = len(X)
        out = np.asarray(model.predict_encoded(X), dtype=float)
        k = None if model.classes is None else len(model.classes)
        want = (rows,) if k is None else (rows, k)
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

