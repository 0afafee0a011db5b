"""Reference profiles stored at registration, and ``cd4ml monitor --data`` end to end.

An ACS subset project (3,000 rows a year) is trained and registered; its version's
lineage names a reference profile that must hold exactly the training rows' inputs and
the holdout's outputs. Then the data file changes under it, as a user's would: new people
arrive (2018 rows with new ids, once as they are, once aged ten years), a column goes
missing; and a version registered without a reference says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tabular_projects import acs_path, acs_project

from cd4ml.monitoring import ColumnSummary, Reference, reference_of
from cd4ml.pipeline.monitor import monitor
from cd4ml.pipeline.run import open_project, run_pipeline


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    proj = acs_project(tmp_path_factory.mktemp("acs") / "acs",
                       changes={"evaluation": {"bootstrap": 0}})
    out = run_pipeline(proj)
    assert out.registered, out.message
    return proj


def _version(proj: Path) -> tuple[dict, Reference]:
    cfg, _, stores, _ = open_project(proj)
    with stores:
        v = stores.metadata.resolve(cfg.models.name, "production")
        found = reference_of(v, stores.artifacts)
        assert found.state == "ok", found.message
        return v, found.reference


def test_registration_stores_the_training_inputs_and_holdout_outputs(project) -> None:
    v, ref = _version(project)
    df = pd.read_parquet(project / "data" / "employment.parquet")
    train = df[df.year == 2015]
    assert ref.rows == len(train) == 3000
    assert "year" not in ref.features and "id" not in ref.features  # not inputs
    assert ref.kinds["AGEP"] == "numeric" and ref.kinds["SEX"] == "categorical"
    for col, kind in ref.kinds.items():
        want = ColumnSummary.of(train[col], kind)
        assert ref.features[col].to_dict() == want.to_dict(), col
    # the holdout (2016) scored by the model fitted on 2015 only
    assert list(ref.outputs) == ["score"]
    assert ref.outputs["score"].n == (df.year == 2016).sum()
    assert ((ref.outputs["score"].values >= 0) & (ref.outputs["score"].values <= 1)).all()
    assert ref.meta["recipe"] == v["lineage"]["recipe"]
    assert ref.meta["reconstruction"]["columns"] == list(ref.features)  # multivariate drift
    assert "calibrator" in ref.meta and 0 < ref.meta["decision_threshold"] < 1


def _cli(proj: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cd4ml.cli", "monitor", "-p", str(proj), *args],
                          capture_output=True, text=True, timeout=300)


def test_monitor_data_finds_new_rows_and_their_drift(project, tmp_path) -> None:
    data = project / "data" / "employment.parquet"
    original = data.read_bytes()
    df = pd.read_parquet(data)
    try:
        same = _cli(project, "--data", "--json")
        assert same.returncode == 0, same.stderr
        doc = json.loads(same.stdout)
        assert doc["data"]["state"] == "insufficient" and doc["data"]["rows"] == 0
        assert "no new rows" in doc["data"]["message"]

        full = pd.read_parquet(acs_path())
        arrivals = full[full.year == 2018].sample(4000, random_state=5)
        arrivals = arrivals[~arrivals.id.isin(df.id)]
        pd.concat([df, arrivals]).to_parquet(data, index=False)
        plain = monitor(project, data=True)["data"]
        assert plain["rows"] == len(arrivals) and plain["state"] == "ok", plain
        assert plain["drift"]["drifted"] == []
        assert plain["snapshots"]["acs"] != plain["training_snapshots"]["acs"]

        older = arrivals.assign(AGEP=arrivals.AGEP + 10)
        pd.concat([df, older]).to_parquet(data, index=False)
        res = _cli(project, "--data", "--json")
        assert res.returncode == 0, res.stderr
        aged = json.loads(res.stdout)["data"]
        assert aged["drift"]["drifted"] == ["AGEP"], aged["drift"]["drifted"]
        table = _cli(project, "--data")
        assert table.returncode == 0 and "AGEP" in table.stdout and "drifted" in table.stdout

        pd.concat([df, arrivals]).drop(columns=["MIL"]).to_parquet(data, index=False)
        gone = monitor(project, data=True)["data"]
        assert gone["drift"]["columns"]["MIL"]["state"] == "missing column"
        assert "not in the current data" in gone["drift"]["columns"]["MIL"]["message"]
    finally:
        data.write_bytes(original)


def test_a_version_without_a_reference_says_so(project) -> None:
    cfg, _, stores, _ = open_project(project)
    with stores:
        v = stores.metadata.resolve(cfg.models.name, "production")
        lineage = {k: x for k, x in v["lineage"].items() if k != "reference"}
        done = stores.metadata.register_version(
            cfg.models.name, run_id=v["run_id"], digest=v["digest"], kind=v["kind"],
            model_type=v["model_type"], metrics=v["metrics"], gate=v["gate"],
            lineage=lineage, actor="test", reason="a version from before references")
    doc = monitor(project, version=str(done.version), data=True)
    assert doc["reference"]["state"] == "no reference"
    assert "registered before" in doc["reference"]["message"] and "data" not in doc
    res = _cli(project, "--data", "--version", str(done.version))
    assert res.returncode == 0 and "no reference" in res.stdout
    bad = _cli(project, "--data", "--version", "99")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no version 99" in bad.stderr
    quiet = _cli(project)  # the log side, and nothing was served yet
    assert quiet.returncode == 0 and "no logged prediction" in quiet.stdout, quiet.stderr
    assert np.isfinite(doc["version"])


def test_a_reference_gone_from_the_artifact_store_says_so(project, tmp_path) -> None:
    import shutil

    cfg, _, stores, root = open_project(project)
    with stores:
        v = stores.metadata.resolve(cfg.models.name, "production")
        digest = v["lineage"]["reference"]
        path = stores.artifacts.local_path(digest)
    keep = tmp_path / "ref.parquet"
    shutil.copyfile(path, keep)
    path.unlink()
    try:
        doc = monitor(project, data=True)
        assert doc["reference"]["state"] == "no reference"
        assert digest[:12] in doc["reference"]["message"]
        assert "not in the artifact store" in doc["reference"]["message"]
    finally:
        shutil.copyfile(keep, path)
    assert monitor(project)["reference"]["state"] == "ok"
