"""A model bundle: predictor files, feature spec, history and signature, content-addressed.

The bundle's identity is the sha256 of its manifest (canonical JSON), which names every
other file by its own sha256; loading verifies each against the hash it is recorded
under, so what serves is exactly what the gate judged.
"""

from __future__ import annotations

import io
import platform
from importlib import metadata as importlib_metadata
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cd4ml.errors import ModelError
from cd4ml.features.compute import FeatureSpec
from cd4ml.features.tabular import TabularSpec, TabularTransform
from cd4ml.registry.predictors import Predictor, load_predictor

__all__ = ["save_bundle", "read_manifest", "load_parts", "load_forecasts", "environment",
           "BUNDLE_FORMAT", "request_fields", "forecast_table", "save_tabular_bundle",
           "load_tabular_parts", "SAMPLE_ROWS"]

BUNDLE_FORMAT = "cd4ml.bundle/1"
#: encoded training rows a tabular bundle keeps (with the model's answers) for checks at load
SAMPLE_ROWS = 256
_PACKAGES = ["cd4ml", "numpy", "pandas", "pyarrow", "lightgbm", "scikit-learn", "skops"]


class _Artifacts(Protocol):
    def put_bytes(self, data: bytes) -> str: ...
    def get_bytes(self, digest: str) -> bytes: ...
    def put_json(self, obj: Any) -> str: ...
    def get_json(self, digest: str) -> Any: ...


def environment() -> dict[str, Any]:
    """Python and library versions a bundle was built with."""
    pkgs = {}
    for name in _PACKAGES:
        try:
            pkgs[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pkgs[name] = None
    return {"python": platform.python_version(), "packages": pkgs}


def request_fields(spec: FeatureSpec) -> dict[str, str]:
    """Request field name -> panel column: the series keys and the time, in lower case."""
    return {c.lower(): c for c in [*spec.keys, spec.time]}


def _signature(spec: FeatureSpec, history: pd.DataFrame) -> dict[str, Any]:
    inputs = []
    for field, col in request_fields(spec).items():
        if col == spec.time:
            inputs.append({"name": field, "column": col, "type": "date"})
        else:
            kind = "integer" if pd.api.types.is_integer_dtype(history[col]) else (
                "number" if pd.api.types.is_numeric_dtype(history[col]) else "string")
            inputs.append({"name": field, "column": col, "type": kind})
    return {"inputs": inputs, "output": {"name": "prediction", "type": "number"},
            "features": spec.feature_names}


def forecast_table(predictor: Predictor, spec: FeatureSpec, history: pd.DataFrame,
                   ) -> np.ndarray:
    """The model's answer for every servable (series, date), in the servable's row order.

    The servable's features are computed by the same code as at load time, and the model
    predicts them all at once (every core). The answers depend on nothing but the
    bundle, so a server can look them up instead of running the model per request; it
    verifies a sample against the live model when it loads (``ServableModel``).
    """
    from cd4ml.registry.servable import ServableModel

    X = ServableModel(predictor, spec, history).X
    return np.ascontiguousarray(predictor.predict(X), dtype=np.float64)


def save_bundle(artifacts: _Artifacts, *, model_name: str, recipe: str, kind: str,
                predictor: Predictor, spec: FeatureSpec, history: pd.DataFrame,
                trained_on: dict[str, Any], extra: dict[str, Any] | None = None,
                forecasts: bool = True) -> str:
    """Write every part, then the manifest; returns the manifest digest (the bundle id).

    With ``forecasts``, the bundle also holds the forecast table (:func:`forecast_table`)
    as a ``.npy`` file of float64.
    """
    files = {name: artifacts.put_bytes(data) for name, data in predictor.to_files().items()}
    table = None
    if forecasts:
        values = forecast_table(predictor, spec, history)
        npy = io.BytesIO()
        np.save(npy, values, allow_pickle=False)
        table = {"digest": artifacts.put_bytes(npy.getvalue()), "rows": len(values),
                 "dtype": "float64"}
    buf = io.BytesIO()
    history.to_parquet(buf, index=False, compression="zstd")
    hist_digest = artifacts.put_bytes(buf.getvalue())
    times = history[spec.time]
    step = pd.Timedelta(days=spec.frequency_days)
    end = pd.Timestamp(history.attrs.get("history_end") or
                       times[history[spec.target].notna()].max())
    manifest = {
        "format": BUNDLE_FORMAT, "model_name": model_name, "recipe": recipe, "kind": kind,
        "model_type": predictor.model_type,
        "predictor": {"meta": predictor.meta(), "files": files},
        "feature_spec": spec.to_dict(),
        "history": {"digest": hist_digest, "rows": len(history),
                    "start": str(times.min().date()), "end": str(end.date())},
        "servable": {"first_date": str(times.min().date()),
                     "last_date": str((end + spec.horizon * step).date()),
                     "horizon": spec.horizon, "frequency_days": spec.frequency_days},
        "signature": _signature(spec, history),
        **({"forecasts": table} if table else {}),
        "trained_on": trained_on,
        "environment": environment(),
        **(extra or {}),
    }
    return artifacts.put_json(manifest)


def read_manifest(artifacts: _Artifacts, digest: str) -> dict[str, Any]:
    manifest = artifacts.get_json(digest)
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ModelError(f"artifact {digest[:12]} is not a {BUNDLE_FORMAT} manifest")
    return manifest


def load_parts(artifacts: _Artifacts, manifest: dict[str, Any],
               ) -> tuple[Predictor, FeatureSpec, pd.DataFrame]:
    """Predictor, feature spec and history of a bundle, each verified against its hash."""
    pred = manifest["predictor"]
    files = {name: artifacts.get_bytes(d) for name, d in pred["files"].items()}
    predictor = load_predictor(files, pred["meta"])
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    history = pd.read_parquet(io.BytesIO(artifacts.get_bytes(manifest["history"]["digest"])))
    history.attrs["history_end"] = manifest["history"]["end"]
    return predictor, spec, history


def load_forecasts(artifacts: _Artifacts, manifest: dict[str, Any]) -> np.ndarray | None:
    """The bundle's forecast table (hash verified), or None for a bundle without one."""
    meta = manifest.get("forecasts")
    if not meta:
        return None
    values = np.load(io.BytesIO(artifacts.get_bytes(meta["digest"])), allow_pickle=False)
    if values.dtype != np.float64 or values.shape != (meta["rows"],):
        raise ModelError(f"forecast table {meta['digest'][:12]}: expected {meta['rows']} "
                         f"float64 values, got {values.dtype} {values.shape}")
    return values


def _put_npy(artifacts: _Artifacts, values: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(values), allow_pickle=False)
    return artifacts.put_bytes(buf.getvalue())


def _get_npy(artifacts: _Artifacts, digest: str, dtype: str, shape: list[int]) -> np.ndarray:
    values = np.load(io.BytesIO(artifacts.get_bytes(digest)), allow_pickle=False)
    if values.dtype != np.dtype(dtype) or list(values.shape) != list(shape):
        raise ModelError(f"array {digest[:12]}: expected {dtype} {shape}, got {values.dtype} "
                         f"{list(values.shape)}")
    return values


def save_tabular_bundle(artifacts: _Artifacts, *, model_name: str, recipe: str, kind: str,
                        predictor: Predictor, spec: TabularSpec, transform: TabularTransform,
                        rows: np.ndarray, trained_on: dict[str, Any],
                        decision_threshold: float | None = None,
                        compiled: tuple[dict[str, bytes], dict[str, Any]] | None = None,
                        extra: dict[str, Any] | None = None) -> str:
    """Write a classification or regression bundle; returns the manifest digest.

    ``rows``: encoded training rows; :data:`SAMPLE_ROWS` of them, spread evenly, are
    stored with the model's answers on them, so a load can check the predictor (and a
    compiled one) answers as it did here. ``compiled``: the (files, meta) of
    ``registry.compiled.build_compiled``; its files are stored like every other and
    ``meta["files"]`` (name -> sha256) names them, so a load fetches them hash-verified.
    """
    from cd4ml.registry.tabular import signature

    files = {name: artifacts.put_bytes(data) for name, data in predictor.to_files().items()}
    if compiled is not None:
        c_files, c_meta = compiled
        stored = {name: artifacts.put_bytes(data) for name, data in c_files.items()}
        if stored != c_meta.get("files"):
            raise ModelError(f"compiled predictor: its files hash to {stored}, its meta "
                             f"records {c_meta.get('files')}")
        extra = {**(extra or {}), "compiled": c_meta}
    rows = np.asarray(rows, np.float32)
    idx = np.unique(np.linspace(0, len(rows) - 1, min(SAMPLE_ROWS, len(rows))).astype(np.int64))
    sample = np.ascontiguousarray(rows[idx])
    outputs = np.asarray(predictor.predict(sample), np.float64)
    manifest = {
        "format": BUNDLE_FORMAT, "model_name": model_name, "recipe": recipe, "kind": kind,
        "task": spec.task, "model_type": predictor.model_type,
        "predictor": {"meta": predictor.meta(), "files": files},
        "tabular": {"spec": spec.to_dict(), "transform": transform.to_dict()},
        "signature": signature(spec, transform),
        "decision_threshold": decision_threshold if spec.task == "classification" else None,
        "classes": spec.classes,
        "sample": {"X": _put_npy(artifacts, sample), "outputs": _put_npy(artifacts, outputs),
                   "shape": list(sample.shape), "outputs_shape": list(outputs.shape)},
        "trained_on": trained_on,
        "environment": environment(),
        **(extra or {}),
    }
    return artifacts.put_json(manifest)


def load_tabular_parts(artifacts: _Artifacts, manifest: dict[str, Any],
                       ) -> tuple[Predictor, TabularSpec, TabularTransform, np.ndarray | None,
                                  np.ndarray | None]:
    """Predictor, spec, transform, sample rows and the answers stored for them."""
    pred = manifest["predictor"]
    files = {name: artifacts.get_bytes(d) for name, d in pred["files"].items()}
    predictor = load_predictor(files, pred["meta"])
    spec = TabularSpec.from_dict(manifest["tabular"]["spec"])
    transform = TabularTransform.from_dict(manifest["tabular"]["transform"], spec)
    meta = manifest.get("sample")
    if not meta:
        return predictor, spec, transform, None, None
    sample = _get_npy(artifacts, meta["X"], "float32", meta["shape"])
    outputs = _get_npy(artifacts, meta["outputs"], "float64", meta["outputs_shape"])
    return predictor, spec, transform, sample, outputs
