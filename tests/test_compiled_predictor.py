"""The compiled LightGBM predictor (cd4ml.registry.compiled) on real ACS boosters.

The reference is the booster itself (``Booster.predict``) on the rows of 2016 that the
model never saw; nothing is mocked. Skipped without the ACS file or without lleaves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cd4ml.errors import ModelError
from cd4ml.registry.compiled import (OBJECT_FILE, SAMPLE_FILE, TOLERANCE, build_compiled,
                                     check_rows, load_compiled)

lgb = pytest.importorskip("lightgbm")
pytest.importorskip("lleaves", reason="lleaves not installed: pip install 'cd4ml[fast]'")

ROOT = Path(__file__).resolve().parents[1]
ACS = Path(os.environ.get("CD4ML_SHARED_DATA") or ROOT.parent / "shared" / "data") \
    / "acs-employment-ma" / "employment.parquet"
INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
          "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
CATEGORICAL = ["MAR", "RELP", "ESP", "CIT", "MIG", "MIL", "ANC", "RAC1P"]

pytestmark = pytest.mark.skipif(not ACS.is_file(), reason=f"ACS data not found at {ACS} "
                                "(set CD4ML_SHARED_DATA; see ../shared/data/SOURCES.md)")


@pytest.fixture(scope="module")
def acs():
    import pandas as pd

    d = pd.read_parquet(ACS)
    tr, ho = d[d.year == 2015], d[d.year == 2016]
    return (np.ascontiguousarray(tr[INPUTS].to_numpy(np.float32)), tr.employed.to_numpy(),
            np.ascontiguousarray(ho[INPUTS].to_numpy(np.float32)))


def _classifier(X, y, **params):
    clf = lgb.LGBMClassifier(random_state=0, verbose=-1, n_jobs=1, **params)
    clf.fit(X, y, feature_name=INPUTS,
            categorical_feature=[INPUTS.index(c) for c in CATEGORICAL])
    return clf.booster_


@pytest.fixture(scope="module")
def booster(acs):
    """The issue's reference model: 200 trees of 63 leaves, trained on 2015."""
    X, y, _ = acs
    return _classifier(X, y, n_estimators=200, num_leaves=63)


@pytest.fixture(scope="module")
def built(booster, acs):
    return build_compiled(booster, acs[2][:256])


def test_compiled_equals_booster_on_all_2016_rows(booster, built, acs):
    files, meta = built
    fn, status = load_compiled(files, meta, booster)
    assert fn is not None, status
    assert status.startswith("verified: 256 sample rows and 512 edge rows within 1e-09")
    X = acs[2]
    want = booster.predict(X)
    got = fn(X)  # 69,126 rows: the two-thread path
    assert got.shape == want.shape == (len(X),) and got.dtype == np.float64
    assert np.max(np.abs(got - want)) <= TOLERANCE
    one = np.array([fn(X[i:i + 1])[0] for i in range(0, 5000, 50)])  # the one-thread path
    assert np.max(np.abs(one - want[0:5000:50])) <= TOLERANCE
    # the check covered categorical splits: the model has them
    splits = [n for t in booster.dump_model()["tree_info"] for n in _nodes(t["tree_structure"])]
    assert any(s["decision_type"] == "==" for s in splits)


def test_meta_records_what_a_loader_checks(booster, built):
    files, meta = built
    assert set(files) == {OBJECT_FILE, SAMPLE_FILE}
    assert meta["kind"] == "lleaves" and meta["tolerance"] == TOLERANCE
    assert set(meta["libraries"]) == {"lleaves", "llvmlite", "lightgbm"}
    assert meta["platform"]["machine"] and meta["platform"]["triple"]
    assert (meta["num_feature"], meta["num_class"], meta["num_trees"]) == (16, 1, 200)
    assert meta["sample_rows"] == 256 and meta["build_s"] > 0
    json.dumps(meta)  # goes into the manifest as it is


def test_a_tampered_object_file_is_refused_before_it_loads(booster, built):
    files, meta = built
    obj = bytearray(files[OBJECT_FILE])
    obj[len(obj) // 2] ^= 0xFF
    fn, status = load_compiled({**files, OBJECT_FILE: bytes(obj)}, meta, booster)
    assert fn is None
    assert status.startswith(f"not used: file {OBJECT_FILE} does not hash to the sha256 "
                             f"recorded at build")
    assert status.endswith("the plain predictor answers")
    fn, status = load_compiled({SAMPLE_FILE: files[SAMPLE_FILE]}, meta, booster)
    assert fn is None and f"file {OBJECT_FILE} is missing" in status


def test_a_compiled_model_of_another_booster_is_refused(acs, booster, built):
    """Same shape (200 trees, 16 inputs), other training rows: the sample check says so."""
    X, y, X16 = acs
    other = _classifier(X[::2], y[::2], n_estimators=200, num_leaves=63)
    files, meta = built
    fn, status = load_compiled(files, meta, other)
    assert fn is None
    assert status.startswith("not used: mismatch: ")
    assert "rows (256 sample rows and 512 edge rows) differ from the booster by more than " \
           "1e-09 (max |diff| " in status
    small = _classifier(X, y, n_estimators=20, num_leaves=15)
    fn, status = load_compiled(files, meta, small)
    assert fn is None and "compiled from another model" in status and "num_trees" in status


def test_another_platform_or_lleaves_version_is_refused(booster, built):
    files, meta = built
    plat = {**meta["platform"], "machine": "aarch64", "triple": "aarch64-unknown-linux-gnu"}
    fn, status = load_compiled(files, {**meta, "platform": plat}, booster)
    assert fn is None and status.startswith("not used: compiled for ") and "aarch64" in status
    libs = {**meta["libraries"], "lleaves": "0.1.0"}
    fn, status = load_compiled(files, {**meta, "libraries": libs}, booster)
    assert fn is None and "compiled with lleaves 0.1.0, this environment has" in status
    fn, status = load_compiled(files, {**meta, "kind": "treelite"}, booster)
    assert fn is None and "compiled kind 'treelite'" in status


def test_without_lleaves_the_plain_predictor_answers(booster, built, monkeypatch):
    files, meta = built
    monkeypatch.setitem(sys.modules, "lleaves", None)  # `import lleaves` raises ImportError
    fn, status = load_compiled(files, meta, booster)
    assert fn is None
    assert status == ("not used: lleaves is not installed (pip install 'cd4ml[fast]'); "
                      "the plain predictor answers")
    with pytest.raises(ImportError, match=r"pip install 'cd4ml\[fast\]'"):
        build_compiled(booster, np.zeros((4, 16), np.float32))


def test_caller_sample_and_bad_samples(booster, built, acs):
    files, meta = built
    fn, status = load_compiled(files, meta, booster, acs[2][-100:])
    assert fn is not None and status.startswith("verified: 100 sample rows and 512 edge")
    with pytest.raises(ModelError, match=r"sample_X must be a non-empty matrix of 16 "
                                         r"features, got shape \(3, 15\)"):
        build_compiled(booster, np.zeros((3, 15), np.float32))
    with pytest.raises(ModelError, match=r"expected a matrix of 16 features, got shape \(2,\)"):
        fn(np.zeros(2, np.float32))


def test_loads_in_another_process(booster, built, acs, tmp_path):
    """What serving does: the bytes from the bundle, in a fresh interpreter."""
    files, meta = built
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "model.txt").write_text(booster.model_to_string())
    np.save(tmp_path / "X.npy", acs[2][:2000])
    code = f"""
import json, pathlib, sys, numpy as np, lightgbm as lgb
from cd4ml.registry.compiled import load_compiled
d = pathlib.Path({str(tmp_path)!r})
meta = json.loads((d / "meta.json").read_text())
files = {{n: (d / n).read_bytes() for n in meta["files"]}}
b = lgb.Booster(model_str=(d / "model.txt").read_text())
fn, status = load_compiled(files, meta, b)
print(status)
np.save(d / "out.npy", fn(np.load(d / "X.npy")))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("verified: ")
    out = np.load(tmp_path / "out.npy")
    assert np.max(np.abs(out - booster.predict(acs[2][:2000]))) <= TOLERANCE


def test_regression_and_multiclass_use_the_same_code(acs):
    """Regression: age from the other 15 ACS inputs. Multiclass: scikit-learn's wine data."""
    from sklearn.datasets import load_wine

    X, _, X16 = acs
    reg = lgb.LGBMRegressor(n_estimators=50, num_leaves=31, random_state=0, verbose=-1,
                            n_jobs=1)
    reg.fit(X[:, 1:], X[:, 0])
    wine = load_wine()
    Xw = wine.data.astype(np.float32)
    mc = lgb.LGBMClassifier(n_estimators=30, num_leaves=7, min_child_samples=5,
                            random_state=0, verbose=-1, n_jobs=1).fit(Xw, wine.target)
    for b, sample, rows in [(reg.booster_, X16[:200, 1:], X16[:, 1:]), (mc.booster_, Xw, Xw)]:
        files, meta = build_compiled(b, sample)
        fn, status = load_compiled(files, meta, b)
        assert fn is not None, status
        want, got = b.predict(rows), fn(rows)
        assert got.shape == want.shape
        assert np.all(np.abs(got - want) <= TOLERANCE * np.maximum(1, np.abs(want)))
    assert got.shape == (len(Xw), 3)  # multiclass: (n, k) probabilities, as booster.predict


def test_check_rows_vary_each_input(acs):
    s = acs[2][:10]
    rows = check_rows(s)
    assert np.array_equal(rows[:10], s)
    edge = rows[10:].reshape(16, 4, 8, 16)  # input, value, row, column
    assert np.isnan(edge[3, 0, :, 3]).all() and (edge[3, 3, :, 3] == 1e9).all()
    assert np.array_equal(edge[3, 1, :, 4], s[:8, 4])  # the other inputs are kept


def _nodes(node):
    if "split_index" in node:
        yield node
        yield from _nodes(node["left_child"])
        yield from _nodes(node["right_child"])
