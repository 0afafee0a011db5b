"""The tabular side of ``benchmarks/tabular_vs_mlserver.py``: model, rows, bodies, cd4ml.

The rows: 1,000 of 2016 drawn once (seeded) from the ACS file, the 16 inputs in the
signature order of MLServer's 2-D tensor. The model: the project's registered LightGBM
version when there is one (its booster goes to MLServer as ``model.bst``, and MLServer
gets the matrix that booster takes: the version's encoded inputs); otherwise the issue's
reference model (200 trees, 63 leaves, trained on 2015, raw codes as inputs).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _servingbench import servers

__all__ = ["INPUTS", "CATEGORICAL", "Model", "load_rows", "project_model",
           "reference_model", "bodies", "start_cd4ml", "cd4ml_server"]

INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
          "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
#: the nominal ones, as categorical_feature of the reference model
CATEGORICAL = ["MAR", "RELP", "ESP", "CIT", "MIG", "MIL", "ANC", "RAC1P"]
N_ROWS = 1000


@dataclass
class Model:
    """What both servers serve: the booster, its input matrix, its answers."""

    name: str  #: the model name in /v2/models/NAME
    booster: Any
    encode: Any  #: DataFrame of raw inputs -> the matrix the booster takes
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    def proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(class 1) per row, in-process: what both servers must answer."""
        return np.asarray(self.booster.predict(self.encode(frame)), dtype=np.float64)


def load_rows(data: Path, n: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of 2016 (the 16 inputs, in order), drawn once with ``seed``."""
    d = pd.read_parquet(data)
    d = d[d.year == 2016]
    idx = np.sort(np.random.default_rng(seed).choice(len(d), size=n, replace=False))
    return d.iloc[idx][INPUTS].reset_index(drop=True)


def reference_model(data: Path) -> Model:
    """The issue's reference LightGBM, fitted here on the 2015 rows."""
    import lightgbm as lgb

    d = pd.read_parquet(data)
    tr = d[d.year == 2015]
    clf = lgb.LGBMClassifier(n_estimators=200, num_leaves=63, random_state=0, verbose=-1)
    clf.fit(tr[INPUTS].to_numpy(np.float32), tr.employed.to_numpy(), feature_name=INPUTS,
            categorical_feature=[INPUTS.index(c) for c in CATEGORICAL])
    return Model("acs-employment", clf.booster_,
                 lambda f: np.ascontiguousarray(f[INPUTS].to_numpy(np.float32)),
                 "reference: LGBMClassifier(n_estimators=200, num_leaves=63), 2015 rows, "
                 f"categorical {CATEGORICAL}")


def project_model(project: Path) -> Model | None:
    """The registered version the project serves, or None when it has none (yet)."""
    if not (project / "cd4ml.yaml").is_file():
        return None
    from cd4ml.config import load_config
    from cd4ml.errors import Cd4mlError
    from cd4ml.registry.loader import load_model

    cfg, _ = load_config(project)
    uri = f"{cfg.models.name}@{cfg.serving.alias}"
    try:
        servable = load_model(uri, project_dir=project)
    except Cd4mlError:
        return None
    booster = getattr(servable.predictor, "booster", None)
    if booster is None or not hasattr(servable, "transform"):
        raise SystemExit(f"{project}: {uri} is not a tabular LightGBM model "
                         f"({type(servable).__name__}, {servable.predictor.model_type})")
    fields = list(servable.fields)
    if fields != INPUTS:
        raise SystemExit(f"{project}: {uri} takes {fields}, not the 16 ACS inputs {INPUTS}")
    return Model(cfg.models.name, booster, servable.transform.matrix,
                 f"registered: {uri} = version {servable.version} ({servable.digest[:12]})",
                 {"predictor_status": getattr(servable, "predictor_status", None)})


def _v2(name: str, M: np.ndarray) -> str:
    """MLServer's LightGBM request: one 2-D FP32 tensor [n, 16], nested rows (its docs)."""
    return json.dumps({"inputs": [{"name": "input-0", "shape": list(M.shape),
                                   "datatype": "FP32", "data": M.tolist()}]})


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{c: (float(v) if c == "AGEP" else int(v)) for c, v in row.items()}
            for row in frame.to_dict("records")]


def bodies(model: Model, rows: pd.DataFrame, batch_sizes: list[int],
           ) -> dict[str, dict[int, list[str]]]:
    """kind -> rows per request -> bodies covering ``rows`` in order (cycled by wrk).

    ``mlserver``: the booster's own matrix; ``v2``: cd4ml's 2-D tensor of the raw inputs
    in signature order; ``native``: cd4ml's /predict records (one, or a list).
    """
    enc = model.encode(rows).astype(np.float32)
    raw = rows[INPUTS].to_numpy(np.float32)
    recs = _records(rows)
    out: dict[str, dict[int, list[str]]] = {"mlserver": {}, "v2": {}, "native": {}}
    for n in [1, *batch_sizes]:
        starts = range(0, len(rows) - n + 1, n)
        out["mlserver"][n] = [_v2(model.name, enc[i:i + n]) for i in starts]
        out["v2"][n] = [_v2(model.name, raw[i:i + n]) for i in starts]
        out["native"][n] = [json.dumps(recs[i] if n == 1 else recs[i:i + n]) for i in starts]
    return out


def _cd4ml_bin() -> str:
    here = Path(os.path.abspath(sys.executable)).with_name("cd4ml")
    return str(here) if here.exists() else "cd4ml"


_CD4ML: dict[str, servers.Server] = {}


def start_cd4ml(project_dir: Path, tmp: Path | None = None, *, cpus: str | None = None,
                ) -> str:
    """``cd4ml serve -p DIR`` (default settings; its prediction log written under
    ``tmp``), ready; returns its URL. ``cd4ml_server(url)`` gives the process."""
    import tempfile

    tmp = tmp or Path(tempfile.mkdtemp(prefix="cd4ml-bench-"))
    port = servers.free_port()
    log_dir = tmp / f"predictions-{port}"
    cmd = [_cd4ml_bin(), "serve", "-p", str(project_dir), "--host", "127.0.0.1",
           "--port", str(port), "--set", f"serving.log.dir={log_dir}"]
    srv = servers.start("cd4ml", cmd, f"http://127.0.0.1:{port}", tmp, cpus=cpus)
    try:
        servers.wait_ready(srv, ["/ready", "/health"])
    except BaseException:
        servers.stop(srv)
        raise
    _CD4ML[srv.url] = srv
    return srv.url


def cd4ml_server(url: str) -> servers.Server:
    return _CD4ML[url]
