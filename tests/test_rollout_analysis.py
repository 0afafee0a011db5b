"""A canary step's analysis, pure: the latency quantile as Prometheus computes it (its own
test data; real latencies against NumPy's percentile within a bucket), deltas since a
step began across a restart, and each check's result on real ACS data (monitoring's
drift statistics, scikit-learn's ROC AUC), Inconclusive below min_samples."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from cd4ml.rollout.analysis import (FAILED, INCONCLUSIVE, SUCCESSFUL, Analysis, MetricResult,
                                    drift, error_rate, latency, overall, quality)
from cd4ml.rollout.routed import Counts, Routed, histogram_quantile

INF = math.inf
INPUTS = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
          "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]


# -- the quantile -----------------------------------------------------------------------

@pytest.mark.parametrize("q, positive, negative", [
    (0.2, 0.048, -0.2), (0.5, 0.15, -0.15), (0.8, 0.72, 0.3), (1.0, 1.0, 0.3)])
def test_histogram_quantile_equals_prometheus_on_its_own_test_data(q, positive,
                                                                   negative) -> None:
    # prometheus/promql/testdata/histograms.test, testhistogram_bucket at 50m
    assert histogram_quantile(q, (0.1, 0.2, 1.0, INF), (50, 70, 110, 120)) \
        == pytest.approx(positive)
    assert histogram_quantile(q, (-0.2, -0.1, 0.3, INF), (10, 20, 20, 30)) \
        == pytest.approx(negative)


def test_histogram_quantile_edges() -> None:
    assert math.isnan(histogram_quantile(0.5, (0.1, 1.0), (1, 2)))  # no +Inf bucket
    assert math.isnan(histogram_quantile(0.5, (0.1, INF), (0, 0)))  # nothing observed
    assert histogram_quantile(-0.1, (0.1, INF), (1, 1)) == -INF
    assert histogram_quantile(1.1, (0.1, INF), (1, 1)) == INF


def _real_latencies(n: int, seed: int) -> np.ndarray:
    """Seconds that real work took: sorting arrays of sizes spread over 3.7 decades."""
    rng = np.random.default_rng(seed)
    base = rng.random(50_000)
    out = np.empty(n)
    for i, size in enumerate(np.exp(rng.uniform(np.log(10), np.log(50_000), n))):
        t0 = time.perf_counter()
        np.sort(base[:int(size)])
        out[i] = time.perf_counter() - t0
    return out


def _exposition(groups: dict[tuple[str, str], np.ndarray],
                errors: dict[tuple[str, str], int] | None = None) -> str:
    """What a server's /metrics says after observing ``groups`` (prometheus_client's own
    counter and histogram, the router's names and buckets)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram as PHistogram
    from prometheus_client import generate_latest

    from cd4ml.serving.ops import _LATENCY_BUCKETS

    reg = CollectorRegistry()
    req = Counter("cd4ml_routed_requests", "r", ["deployment", "version", "role", "outcome"],
                  registry=reg)
    lat = PHistogram("cd4ml_routed_latency_seconds", "l", ["deployment", "version", "role"],
                     buckets=_LATENCY_BUCKETS, registry=reg)
    for (version, role), values in groups.items():
        for v in values:
            lat.labels("sales", version, role).observe(float(v))
        req.labels("sales", version, role, "ok").inc(len(values))
        req.labels("other", version, role, "ok").inc(7)  # another deployment: not ours
    for (version, role), k in (errors or {}).items():
        req.labels("sales", version, role, "error").inc(k)
    return generate_latest(reg).decode()


def test_p99_of_real_latencies_is_within_the_bucket_of_numpys() -> None:
    from cd4ml.serving.ops import _LATENCY_BUCKETS

    lat = _real_latencies(2_000, seed=0)
    routed = Routed.parse(_exposition({("3", "canary"): lat}), "sales")
    h = routed.latency_of(3, "canary")
    assert h is not None and h.count == len(lat)
    assert routed.counts_of(3, "canary") == Counts(ok=2000.0)
    edges = np.array([0.0, *_LATENCY_BUCKETS])
    for q in (0.5, 0.9, 0.99):
        true = float(np.percentile(lat, q * 100))
        got = h.quantile(q)
        i = int(np.searchsorted(edges, true, side="left"))  # true is in (edges[i-1], edges[i]]
        assert edges[i - 1] <= got <= edges[i], (q, true, got, edges[i - 1], edges[i])
        assert abs(got - true) <= edges[i] - edges[i - 1]


def test_deltas_since_a_step_began_and_across_a_restart() -> None:
    first, second = _real_latencies(400, seed=1), _real_latencies(600, seed=2) * 3
    before = Routed.parse(_exposition({("3", "canary"): first},
                                      {("3", "canary"): 4}), "sales")
    after = Routed.parse(_exposition({("3", "canary"): np.concatenate([first, second])},
                                     {("3", "canary"): 10}), "sales")
    step = after.since(before)
    assert step.counts_of(3, "canary") == Counts(ok=600.0, error=6.0)
    only = Routed.parse(_exposition({("3", "canary"): second}), "sales").latency_of(3, "canary")
    assert step.latency_of(3, "canary") == only
    # the server restarted: what it counts now is lower than before, counted from zero
    restarted = Routed.parse(_exposition({("3", "canary"): second[:50]},
                                         {("3", "canary"): 1}), "sales")
    again = restarted.since(after)
    assert again.counts_of(3, "canary") == Counts(ok=50.0, error=1.0)
    assert again.latency_of(3, "canary").count == 50
    assert Routed.parse("", "sales").empty


# -- the checks -------------------------------------------------------------------------

def test_error_rate_fails_a_canary_that_raises_and_passes_one_that_does_not() -> None:
    bad = error_rate(Counts(ok=430, error=70), Counts(ok=9_980, error=20), max_increase=0.01,
                     min_samples=100)
    assert bad.result == FAILED and bad.canary == pytest.approx(0.14)
    assert bad.reason == ("14 % (70 of 500) vs stable 0.2 % (20 of 10,000): more than 1 "
                          "point above")
    ok = error_rate(Counts(ok=497, error=3), Counts(ok=9_980, error=20), max_increase=0.01,
                    min_samples=100)
    assert ok.result == SUCCESSFUL and "within 1 point" in ok.reason
    few = error_rate(Counts(ok=40), Counts(ok=5_000), max_increase=0.01, min_samples=100)
    assert few.result == INCONCLUSIVE
    assert few.reason == "40 requests to the canary, fewer than min_samples 100"


def test_latency_fails_a_slow_canary_on_real_latencies() -> None:
    fast = _real_latencies(1_000, seed=3)
    slow = fast + 0.05  # 50 ms more for every request
    r = Routed.parse(_exposition({("1", "stable"): fast, ("2", "canary"): slow}), "sales")
    args = dict(quantile=0.99, max_ratio=1.5, min_increase_ms=5, min_samples=100)
    res = latency(r.latency_of(2, "canary"), r.latency_of(1, "stable"), **args)
    assert res.result == FAILED and res.metric == "latency_p99"
    assert res.canary > 50 and "ms vs stable" in res.reason and "above 1.5 x" in res.reason
    same = latency(r.latency_of(1, "stable"), r.latency_of(1, "stable"), **args)
    assert same.result == SUCCESSFUL
    assert latency(None, r.latency_of(1, "stable"), **args).result == INCONCLUSIVE


@pytest.fixture(scope="module")
def acs(acs_years: pd.DataFrame) -> dict[str, pd.DataFrame]:
    df = acs_years
    return {"train": df[df.year == 2015].sample(6_000, random_state=0),
            "now": df[df.year == 2016].sample(6_000, random_state=1)}


def test_drift_of_the_canarys_inputs_on_real_data(acs) -> None:
    from cd4ml.monitoring import DriftSettings, Reference, compare

    ref = Reference.from_frame(acs["train"][INPUTS])
    settings = DriftSettings()
    now = acs["now"][INPUTS]
    stable = compare(ref, now.iloc[:3000], settings=settings)
    aged = now.iloc[3000:].assign(AGEP=lambda d: (d.AGEP + 10).clip(upper=99),
                                  SCHL=lambda d: (d.SCHL + 3).clip(upper=24))
    canary = compare(ref, aged, settings=settings)
    assert set(canary.drifted_columns) >= {"AGEP", "SCHL"} and not stable.drifted_columns
    res = drift(canary.share_drifted, 3000, max_share=0.1, min_samples=200,
                stable_share=stable.share_drifted, drifted=canary.drifted_columns)
    assert res.result == FAILED and "AGEP" in res.reason and "vs stable 0 %" in res.reason
    # the same traffic drifting for both: it is the traffic, not the canary
    both = drift(canary.share_drifted, 3000, max_share=0.1, min_samples=200,
                 stable_share=canary.share_drifted)
    assert both.result == SUCCESSFUL and "traffic moved" in both.reason
    plain = compare(ref, now.iloc[3000:], settings=settings)
    assert drift(plain.share_drifted, 3000, max_share=0.1, min_samples=200,
                 stable_share=stable.share_drifted).result == SUCCESSFUL
    assert drift(plain.share_drifted, 150, max_share=0.1, min_samples=200).result \
        == INCONCLUSIVE


def test_quality_on_real_labels_fails_a_worse_model(acs) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, now = acs["train"], acs["now"]
    good = make_pipeline(StandardScaler(), LogisticRegression()).fit(train[INPUTS],
                                                                     train.employed)
    half = now.iloc[:3000], now.iloc[3000:]
    stable_auc = roc_auc_score(half[0].employed, good.predict_proba(half[0][INPUTS])[:, 1])
    good_auc = roc_auc_score(half[1].employed, good.predict_proba(half[1][INPUTS])[:, 1])
    poor = LogisticRegression().fit(train[["SEX", "RAC1P"]], train.employed)
    poor_auc = roc_auc_score(half[1].employed, poor.predict_proba(half[1][["SEX", "RAC1P"]])[:, 1])
    args = dict(higher_is_better=True, max_degradation=0.05, min_samples=200)
    assert quality("roc_auc", good_auc, stable_auc, 3000, 3000, **args).result == SUCCESSFUL
    res = quality("roc_auc", poor_auc, stable_auc, 3000, 3000, **args)
    assert res.result == FAILED and res.reason.startswith(f"roc_auc {poor_auc:.4g} vs stable")
    # lower is better (log loss); the estimate without labels is judged the same way
    assert quality("log_loss", 0.40, 0.30, 500, 500, higher_is_better=False,
                   max_degradation=0.05, min_samples=200).result == FAILED
    est = quality("roc_auc", good_auc, stable_auc, 3000, 3000, name="estimated", rows="rows",
                  **args)
    assert est.metric == "estimated" and est.reason.startswith("estimated roc_auc")
    few = quality("roc_auc", good_auc, stable_auc, 120, 3000, **args)
    assert few.result == INCONCLUSIVE
    assert "120 labelled rows of the canary, fewer than min_samples 200" in few.reason
    assert quality("roc_auc", None, stable_auc, 500, 500, **args).result == INCONCLUSIVE


def test_the_analysis_is_failed_inconclusive_or_successful() -> None:
    s = MetricResult("a", SUCCESSFUL, "fine")
    i = MetricResult("b", INCONCLUSIVE, "few")
    f = MetricResult("c", FAILED, "bad")
    assert overall([s, i, f]) == FAILED and overall([s, i]) == INCONCLUSIVE
    assert overall([s, s]) == SUCCESSFUL and overall([]) == INCONCLUSIVE
    a = Analysis((s, i), {"latency": "no server metrics"})
    assert a.reason == "Inconclusive: b Inconclusive: few"
    assert Analysis.from_dict(a.to_dict()) == a
    assert Analysis((), {"drift": "disabled"}).reason == \
        "Inconclusive: no check ran (drift: disabled)"
    assert Analysis((s,)).reason == "Successful: a: fine"
