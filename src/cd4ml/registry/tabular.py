"""A loaded classification or regression model: the request carries its inputs.

The transform fitted at training time (code tables, fills) encodes every request with
the same kernels as the training rows (:mod:`cd4ml.features.tabular`); the predictor
answers. What differs between classification and regression (labels, the answer's
shape, batch columns) lives in one head object per task (:data:`HEADS`).

A faster predictor may answer instead of the plain one: ``fast`` (a callable with the
plain predictor's contract, or None) is set only after it matched the plain predictor on
the bundle's stored sample; ``predictor_status`` says which one answers and why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.errors import ModelError
from cd4ml.features.tabular import TabularSpec, TabularTransform
from cd4ml.registry.predictors import Predictor

__all__ = ["TabularServable", "Encoded", "HEADS", "SAMPLE_TOLERANCE", "signature"]

_log = logging.getLogger("cd4ml.registry")


class RawLayout:
    """How a model's inputs are logged as given: the field names and, when they are all
    numbers, which go through an int64 matrix (exact: a bounded numeric column, or a
    coded one that refuses unseen codes) and which through a float64 one. Built once per
    model; :class:`Encoded` reads it."""

    __slots__ = ("fields", "numeric", "ints", "floats")

    def __init__(self, inputs: Sequence[Any], codes: Mapping[str, Sequence[Any]]) -> None:
        self.fields = [c.name for c in inputs]
        self.numeric = all(c.type in ("int", "float") for c in inputs)
        self.ints = [c.name for c in inputs if c.type == "int" and _exact(c, codes)]
        ints = set(self.ints)
        self.floats = [f for f in self.fields if f not in ints]


def _exact(c: Any, codes: Mapping[str, Sequence[Any]]) -> bool:
    if c.categorical:
        cats = codes.get(c.name, ())
        return c.unknown == "refuse" and all(
            isinstance(v, (int, np.integer)) and abs(int(v)) < _EXACT for v in cats)
    return c.min is not None and c.max is not None and max(abs(c.min), abs(c.max)) < _EXACT


#: floats are exact integers below this
_EXACT = 2 ** 53


class Encoded:
    """Encoded request rows: ``X`` float32 (n, k) and ``raw`` {input: values as given}."""

    __slots__ = ("X", "_layout", "_source", "_raw")

    def __init__(self, X: np.ndarray, layout: RawLayout, source: Any) -> None:
        self.X, self._layout, self._source = X, layout, source
        self._raw: dict[str, Any] | None = None

    @property
    def raw(self) -> dict[str, Any]:
        """The inputs as the request gave them, per field (built when first read): an
        array where the values are numbers (what orjson writes as a list), else a list.

        The prediction log holds it until its next flush. Numbers come from one matrix,
        a contiguous row per field (a view, no copy each), so a record costs the request
        path one array build, and the log holds arrays, which the garbage collector never
        scans (lists of values it would: with thousands of records queued, that brought
        full collections of ~100 ms every second or so)."""
        if self._raw is None:
            src, fields = self._source, self._layout.fields
            if isinstance(src, np.ndarray):  # a 2-D tensor: FP32 as sent
                self._raw = dict(zip(fields, np.ascontiguousarray(src.T), strict=True))
            elif isinstance(src, pd.DataFrame):
                self._raw = {f: _column(src[f].tolist()) for f in fields}
            else:
                self._raw = _record_columns(src, self._layout)
        return self._raw

    def __len__(self) -> int:
        return len(self.X)


def _record_columns(records: Sequence[Any], layout: RawLayout) -> dict[str, Any]:
    """Request records as columns: numbers through two matrices, an int64 and a float64
    one (a row per field, each a view), else a column at a time. Read only after the
    records were encoded, so every value is one the signature accepts."""
    fields = layout.fields
    if layout.numeric:
        try:
            ints = np.array([[r[f] for f in layout.ints] for r in records], np.int64)
            floats = np.array([[r[f] for f in layout.floats] for r in records], np.float64)
        except (TypeError, ValueError, KeyError, OverflowError):  # a None, a gap: below
            pass
        else:
            cols = dict.fromkeys(fields)  # the signature's order
            cols.update(zip(layout.ints, ints.T.copy()))
            cols.update(zip(layout.floats, floats.T.copy()))
            return cols
    return {f: _column([r.get(f) for r in records]) for f in fields}


def _column(values: list[Any]) -> Any:
    """``values`` as an int, float or bool array when they all are such, else the list."""
    try:
        arr = np.asarray(values)
    except (OverflowError, ValueError):
        return values
    return arr if arr.dtype.kind in "biuf" and arr.ndim == 1 else values


class _ClassificationHead:
    """Labels by the stored threshold (binary: p1 >= t -> classes[1]) or argmax."""

    def __init__(self, classes: list[Any], threshold: float | None) -> None:
        if not classes or len(classes) < 2:
            raise ModelError(f"a classification bundle needs its classes, got {classes!r}")
        self.classes = list(classes)
        self.keys = [str(c) for c in self.classes]
        self._values = np.empty(len(self.classes), dtype=object)
        self._values[:] = self.classes
        self.threshold = (0.5 if threshold is None else float(threshold)) \
            if len(self.classes) == 2 else None

    def label_index(self, proba: np.ndarray) -> np.ndarray:
        P = np.asarray(proba, np.float64)
        if P.ndim != 2 or P.shape[1] != len(self.classes):
            raise ModelError(f"expected probabilities of shape (n, {len(self.classes)}), "
                             f"got {P.shape}")
        if self.threshold is not None:
            return (P[:, 1] >= self.threshold).astype(np.intp)
        return P.argmax(axis=1)

    def labels(self, proba: np.ndarray) -> np.ndarray:
        return self._values[self.label_index(proba)]

    def answer_rows(self, proba: np.ndarray) -> list[Any]:
        keys = self.keys
        return [{"label": label, "probabilities": dict(zip(keys, row, strict=True))}
                for label, row in zip(self.labels(proba).tolist(),
                                      np.asarray(proba, np.float64).tolist(), strict=True)]

    def columns(self, proba: np.ndarray) -> dict[str, Any]:
        P = np.asarray(proba, np.float64)
        return {"label": self.labels(P).tolist(),
                **{f"probability_{k}": P[:, i] for i, k in enumerate(self.keys)}}

    def outputs(self) -> list[dict[str, Any]]:
        return [{"name": "label", "type": _json_type(self.classes), "categories": self.classes},
                {"name": "probabilities", "type": "number", "shape": [len(self.classes)],
                 "names": self.keys}]


class _RegressionHead:
    def __init__(self, classes: list[Any] | None, threshold: float | None) -> None:
        self.classes, self.threshold = None, None

    def labels(self, outputs: np.ndarray) -> np.ndarray:
        raise ModelError("a regression model answers numbers, not labels")

    def answer_rows(self, outputs: np.ndarray) -> list[Any]:
        return np.asarray(outputs, np.float64).tolist()  # type: ignore[no-any-return]

    def columns(self, outputs: np.ndarray) -> dict[str, Any]:
        return {"prediction": np.asarray(outputs, np.float64)}

    def outputs(self) -> list[dict[str, Any]]:
        return [{"name": "prediction", "type": "number"}]


#: what a servable does per task, looked up once when it is built
HEADS: dict[str, Callable[[list[Any] | None, float | None], Any]] = {
    "classification": _ClassificationHead, "regression": _RegressionHead}


def _json_type(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    return "number" if all(isinstance(v, (int, float)) for v in values) else "string"


def signature(spec: TabularSpec, transform: TabularTransform) -> dict[str, Any]:
    """The bundle's signature: inputs (type, categories, range, policies) and outputs."""
    return {"task": spec.task, "inputs": transform.signature_inputs(),
            "outputs": HEADS[spec.task](spec.classes, None).outputs()}


class TabularServable:
    """Encode request inputs with the training transform and answer with the model."""

    table = None  #: a tabular model has no answer table: its inputs are not a finite grid
    table_status = "none: a tabular model answers every request"

    def __init__(self, predictor: Predictor, spec: TabularSpec, transform: TabularTransform,
                 *, name: str = "", version: int | None = None, digest: str = "",
                 manifest: dict[str, Any] | None = None, threshold: float | None = None,
                 sample: np.ndarray | None = None,
                 fast: Callable[[np.ndarray], np.ndarray] | None = None,
                 predictor_status: str = "plain predictor") -> None:
        if list(predictor.feature_names) != spec.names:
            raise ModelError(f"the predictor's features {predictor.feature_names} are not the "
                             f"inputs {spec.names}")
        self.task, self.spec, self.transform, self.predictor = spec.task, spec, transform, \
            predictor
        self.name, self.version, self.digest = name, version, digest
        self.manifest = manifest or {}
        self._head = HEADS[spec.task](spec.classes, threshold)
        self.classes, self.threshold = self._head.classes, self._head.threshold
        self.fields: list[str] = spec.names
        self._layout = RawLayout(spec.inputs, transform.codes)
        self.numeric: dict[str, bool] = {c.name: c.type != "string" for c in spec.inputs}
        #: encoded training rows stored in the bundle (checks at load, warm-up)
        self.sample = sample
        self.fast, self.predictor_status = fast, predictor_status
        self.signature = self.manifest.get("signature") or signature(spec, transform)

    @classmethod
    def from_bundle(cls, artifacts: Any, manifest: dict[str, Any], *, name: str = "",
                    version: int | None = None, digest: str = "", compiled: bool = True,
                    **_options: Any) -> TabularServable:
        """Build from a bundle (every file hash-verified); ``compiled=False`` keeps the
        plain predictor even when the bundle carries a faster one."""
        from cd4ml.registry.bundle import load_tabular_parts

        predictor, spec, transform, sample, outputs = load_tabular_parts(artifacts, manifest)
        same, status = _check_plain(predictor, sample, outputs)
        fast = None
        if manifest.get("compiled") and compiled:
            fast, status = _load_compiled(artifacts, manifest, predictor, sample, status)
        elif manifest.get("compiled"):
            status = f"{status}; the bundle's compiled predictor is switched off (compiled=False)"
        model = cls(predictor, spec, transform, name=name, version=version, digest=digest,
                    manifest=manifest, threshold=manifest.get("decision_threshold"),
                    sample=sample, fast=fast, predictor_status=status)
        if not same:
            _log.warning("%s version %s: %s", name, version, status)
        return model

    # -- encoding: the transform's kernels, nothing else -----------------------------------
    def encode_records(self, records: Sequence[Any]) -> Encoded:
        return Encoded(self.transform.encode_records(records), self._layout, records)

    def encode_matrix(self, M: np.ndarray) -> Encoded:
        """Raw inputs as an (n, k) matrix in signature order (a v2 2-D tensor)."""
        return Encoded(self.transform.encode_matrix(M), self._layout, np.asarray(M))

    def encode_frame(self, frame: pd.DataFrame, *, extra: str = "ignore") -> Encoded:
        return Encoded(self.transform.encode_frame(frame, extra=extra), self._layout, frame)

    # -- answers --------------------------------------------------------------------------
    def predict_encoded(self, X: np.ndarray) -> np.ndarray:
        """(n,) for regression, (n, k) class probabilities for classification."""
        if self.fast is not None:
            return self.fast(X)
        return self.predictor.predict(X)

    def labels(self, proba: np.ndarray) -> np.ndarray:
        """Class values (as the data spells them): threshold if binary, else argmax."""
        return self._head.labels(proba)

    def answer_rows(self, outputs: np.ndarray) -> list[Any]:
        """Per row: {"label", "probabilities": {class: p}} (classification) or a float."""
        return self._head.answer_rows(outputs)

    def predict_records(self, records: Sequence[Any]) -> list[Any]:
        return self.answer_rows(self.predict_encoded(self.encode_records(records).X))

    def predict(self, frame: pd.DataFrame | list[Any]) -> pd.DataFrame:
        """Batch scoring: the rows with ``label`` and ``probability_<class>``
        (classification) or ``prediction`` (regression) added; same checks as serving."""
        df = frame.copy() if isinstance(frame, pd.DataFrame) else pd.DataFrame(list(frame))
        enc = self.encode_frame(df)
        for col, values in self._head.columns(self.predict_encoded(enc.X)).items():
            df[col] = values
        return df


#: largest |answer at load - answer at registration| on the stored sample that still
#: counts as the same model (a forest summing its trees on 2 threads may differ in the
#: last bits)
SAMPLE_TOLERANCE = 1e-9


def _check_plain(predictor: Predictor, sample: np.ndarray | None,
                 outputs: np.ndarray | None) -> tuple[bool, str]:
    """Whether the loaded predictor answers the stored sample as it did at registration."""
    if sample is None or outputs is None or not len(sample):
        return True, "plain predictor: the bundle has no sample to check it on"
    live = np.asarray(predictor.predict(sample), np.float64)
    n = len(sample)
    if live.shape != outputs.shape:
        return False, (f"plain predictor: it answers shape {live.shape} on the {n} sampled "
                       f"rows, {outputs.shape} at registration")
    if np.array_equal(live, outputs):
        return True, f"plain predictor: {n} sampled rows equal the registered answers"
    diff = float(np.max(np.abs(live - outputs)))
    if diff <= SAMPLE_TOLERANCE:
        return True, (f"plain predictor: {n} sampled rows within {SAMPLE_TOLERANCE:g} of the "
                      f"registered answers (max |diff| {diff:.2g})")
    return False, (f"plain predictor: its answers on the {n} sampled rows differ from "
                   f"registration (max |diff| {diff:.3g}; another library build?)")


def _load_compiled(artifacts: Any, manifest: dict[str, Any], predictor: Predictor,
                   sample: np.ndarray | None, plain: str,
                   ) -> tuple[Callable[[np.ndarray], np.ndarray] | None, str]:
    """The compiled predictor (cd4ml.registry.compiled), if it matches on the sample."""
    try:
        from cd4ml.registry.compiled import load_compiled  # type: ignore[import-not-found]
    except ImportError:
        return None, f"{plain}; this cd4ml cannot load the bundle's compiled predictor"
    meta = manifest["compiled"]
    files = {n: artifacts.get_bytes(d) for n, d in meta.get("files", {}).items()}
    booster = getattr(predictor, "booster", None)
    fast, status = load_compiled(files, meta, booster, sample)
    if fast is None:
        return None, f"{plain}; {status}"
    return _plain_shaped(fast, predictor, sample, status, plain)


def _plain_shaped(fast: Callable[[np.ndarray], np.ndarray], predictor: Predictor,
                  sample: np.ndarray | None, status: str, plain: str,
                  ) -> tuple[Callable[[np.ndarray], np.ndarray] | None, str]:
    """``fast`` answering as the plain predictor does: a binary booster's (n,) positive
    probabilities become (n, 2) columns [1 - p, p], if the plain predictor's are those."""
    if sample is None or not len(sample):
        return None, f"{plain}; no stored sample to check the compiled predictor's shape"
    got, want = np.asarray(fast(sample)), np.asarray(predictor.predict(sample))
    if got.shape == want.shape:
        return fast, status
    if got.ndim == 1 and want.shape == (len(got), 2):
        def two(X: np.ndarray) -> np.ndarray:
            p = np.asarray(fast(X), np.float64)
            return np.column_stack([1.0 - p, p])
        if np.allclose(two(sample), want, rtol=0, atol=1e-6):
            return two, status
    return None, (f"{plain}; compiled predictor not used: it answers shape {got.shape}, the "
                  f"plain predictor {want.shape}")
