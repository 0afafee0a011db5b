"""A small ACS project with two runs, a served version and four days of prediction log,
for the dashboard's tests (in process and in a browser).

:func:`logged_acs_project` trains ``acs_project`` twice (the second run with more trees:
two runs to compare, versions 1 and 2, production on 2), then writes a log for the
production version through the server's own path (its contract checks and encodes the
rows, the model predicts, ``log_record`` makes the record ``PredictionLog`` stores) at
chosen times: one day per UTC day, 1,000 rows each (2017, 2017, 2018, and 2018 aged ten
years), with every label sent back as feedback the day after.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from tabular_projects import acs_project

__all__ = ["logged_acs_project", "INPUTS", "DAY", "start_of_log"]

INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
          "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
DAY = 86400.0
ROWS_PER_DAY = 1000
BATCH = 100


def start_of_log(now: float | None = None) -> float:
    """Midnight UTC five days ago: the log's first day."""
    now = time.time() if now is None else now
    return float(np.floor(now / DAY) * DAY - 5 * DAY)


def logged_acs_project(dest: Path) -> tuple[Path, float]:
    """The project folder and the log's first midnight (epoch seconds)."""
    from cd4ml import load_model
    from cd4ml.config import load_config
    from cd4ml.pipeline.run import run_pipeline
    from cd4ml.predlog import PredictionLog
    from cd4ml.serving.contracts import contract_for

    proj = acs_project(dest)
    run_pipeline(proj, None)
    run_pipeline(proj, ["models.candidates.0.params.n_estimators=30"])
    cfg, _ = load_config(proj)
    model = load_model(f"{cfg.models.name}@production", project_dir=proj)
    c = contract_for(model, log=True)
    data = pd.read_parquet(proj / "data" / "employment.parquet")
    t0 = start_of_log()
    now = [t0]
    rng = np.random.default_rng(0)
    days = [data[data.year == 2017].iloc[:ROWS_PER_DAY],
            data[data.year == 2017].iloc[ROWS_PER_DAY:2 * ROWS_PER_DAY],
            data[data.year == 2018].iloc[:ROWS_PER_DAY],
            data[data.year == 2018].iloc[ROWS_PER_DAY:2 * ROWS_PER_DAY].assign(
                AGEP=lambda d: (d.AGEP + 10).clip(upper=99))]
    feedback: list[dict] = []
    with PredictionLog(cfg.serving.log.folder_in(proj), flush_interval_ms=60_000,
                       clock=lambda: now[0]) as plog:
        for day, part in enumerate(days):
            for k, start in enumerate(range(0, len(part), BATCH)):
                chunk = part.iloc[start:start + BATCH]
                enc = c.check(chunk[INPUTS].to_dict("records"))
                ts = t0 + day * DAY + 600 + k * 900  # from 00:10, every 15 minutes
                now[0] = ts
                rid = f"d{day}-{k}"
                plog.append(c.log_record(rid, ts, "/predict", float(rng.gamma(2.0, 2.0)),
                                         enc, c.predict(enc), "application/json", b"{}"))
                feedback += [{"request_id": rid, "row": j, "actual": float(y)}
                             for j, y in enumerate(chunk.employed)]
            assert plog.flush()
        now[0] = t0 + 4 * DAY + 3600 * 12
        plog.add_feedback(feedback)
    return proj, t0
