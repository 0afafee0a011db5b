"""cd4ml.evaluation.gates: each rule passing and failing, with its numbers."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from cd4ml.config import GateConfig
from cd4ml.evaluation import apply_gate, evaluate, holiday_weights, render_gate


def report(wmae: float, slices: dict[str, list[tuple]] | None = None, n: int = 100,
           weight_sum: float = 120.0) -> dict:
    """A report shaped like evaluate()'s; slices: column -> [(value, weight_share, wmae)]."""
    return {"overall": {"wmae": wmae, "mae": wmae, "n": n, "weight_sum": weight_sum},
            "slices": {col: [{"value": v, "n": 10, "weight_share": share, "wmae": m}
                             for v, share, m in rows]
                       for col, rows in (slices or {}).items()}}


def rule(gate: dict, name: str) -> dict:
    (found,) = [r for r in gate["rules"] if r["rule"] == name]
    return found


def test_pass_on_every_rule():
    cand = report(1549.1, {"Type": [("A", 0.5, 1800.0), ("B", 0.5, 1500.0)]})
    base = report(1800.0, {"Type": [("A", 0.5, 1700.0), ("B", 0.5, 1900.0)]})
    cfg = GateConfig(max_metric=1800.0, baseline="naive", min_improvement_pct=10.0,
                     max_slice_regression_pct=10.0)
    gate = apply_gate(cand, {"naive": base}, cfg, metric="wmae")
    assert gate["passed"] and gate["baseline"] == "naive" and gate["metric"] == "wmae"
    assert [r["rule"] for r in gate["rules"]] == ["max_metric", "beats_baseline",
                                                  "slice_regression"]
    assert all(r["passed"] for r in gate["rules"])
    assert rule(gate, "max_metric")["detail"] == "wmae 1549.1 <= 1800"
    beats = rule(gate, "beats_baseline")
    assert beats["improvement_pct"] == pytest.approx(13.938888, rel=1e-6)
    assert beats["detail"] == ("wmae 1549.1 vs baseline naive 1800 is 13.94% better "
                               "(needs >= 10% better)")
    sl = rule(gate, "slice_regression")
    assert sl["gated"] == 2 and sl["failed"] == 0 and sl["offenders"] == []
    assert sl["worst"]["value"] == "A"
    assert sl["worst"]["regression_pct"] == pytest.approx(100 / 17)
    assert "none of 2 slice(s)" in sl["detail"] and "Type=A +5.88%" in sl["detail"]
    text = render_gate(gate)
    assert text.splitlines()[0] == "GATE PASSED: wmae against baseline naive"
    assert "PASS max_metric: wmae 1549.1 <= 1800" in text
    assert json.loads(json.dumps(gate, allow_nan=False)) == gate


def test_fail_max_metric():
    gate = apply_gate(report(1900.5), {"naive": report(2500.0)},
                      GateConfig(max_metric=1800.0), metric="wmae")
    r = rule(gate, "max_metric")
    assert not gate["passed"] and not r["passed"]
    assert (r["value"], r["threshold"]) == (1900.5, 1800.0)
    assert r["detail"] == "wmae 1900.5 > 1800"
    assert rule(gate, "beats_baseline")["passed"]
    assert "FAIL max_metric: wmae 1900.5 > 1800" in render_gate(gate)
    assert render_gate(gate).startswith("GATE FAILED")


def test_fail_min_improvement():
    gate = apply_gate(report(97.0), {"naive": report(100.0)},
                      GateConfig(min_improvement_pct=5.0), metric="wmae")
    r = rule(gate, "beats_baseline")
    assert not gate["passed"] and not r["passed"]
    assert r["improvement_pct"] == pytest.approx(3.0) and r["min_improvement_pct"] == 5.0
    assert r["detail"] == "wmae 97 vs baseline naive 100 is 3.00% better (needs >= 5% better)"


@pytest.mark.parametrize("value, passed, words", [
    (100.0, False, "is 0.00% better (needs strictly better)"),
    (99.99, True, "is 0.01% better (needs strictly better)"),
    (120.0, False, "is 20.00% worse (needs strictly better)"),
])
def test_zero_min_improvement_needs_strictly_better(value, passed, words):
    gate = apply_gate(report(value), {"naive": report(100.0)}, GateConfig(), metric="wmae")
    assert gate["passed"] is passed
    assert rule(gate, "beats_baseline")["detail"].endswith(words)


def test_fail_slice_regression_lists_worst_offenders():
    depts = [(d, 0.05, 100.0 + d) for d in range(1, 21)]  # 20 slices, 5% share each
    cand = report(90.0, {"Dept": depts})
    base = report(100.0, {"Dept": [(d, 0.05, 100.0) for d in range(1, 21)]})
    cfg = GateConfig(max_slice_regression_pct=5.0)
    gate = apply_gate(cand, {"naive": base}, cfg, metric="wmae")
    r = rule(gate, "slice_regression")
    assert not gate["passed"] and not r["passed"]
    assert rule(gate, "beats_baseline")["passed"]
    assert r["gated"] == 20 and r["failed"] == 15  # depts 6..20 are > 5% worse
    assert len(r["offenders"]) == 10
    assert [o["value"] for o in r["offenders"]] == list(range(20, 10, -1))
    top = r["offenders"][0]
    assert (top["candidate"], top["baseline"]) == (120.0, 100.0)
    assert top["regression_pct"] == pytest.approx(20.0)
    assert r["detail"].startswith("15 of 20 slice(s) with weight share >= 0.01 vs baseline "
                                  "naive are more than 5% worse; worst: Dept=20 +20.00% "
                                  "(120 vs 100, weight share 0.05)")
    text = render_gate(gate)
    assert "FAIL slice_regression" in text and "  Dept=11 +11.00% (111 vs 100" in text


def test_small_slices_are_reported_not_gated():
    cand = report(90.0, {"Store": [(1, 0.995, 90.0), (2, 0.005, 500.0)]})
    base = report(100.0, {"Store": [(1, 0.995, 100.0), (2, 0.005, 100.0)]})
    cfg = GateConfig(max_slice_regression_pct=10.0, slice_min_weight_share=0.01)
    gate = apply_gate(cand, {"naive": base}, cfg, metric="wmae")
    assert gate["passed"]
    assert rule(gate, "slice_regression")["gated"] == 1
    (skipped,) = gate["slices_not_gated"]
    assert skipped["column"] == "Store" and skipped["value"] == 2
    assert skipped["regression_pct"] == pytest.approx(400.0)
    assert skipped["reason"] == "weight share 0.005 < 0.01"
    assert "not gated: 1 slice(s) — Store=2" in render_gate(gate)
    # the same small slice is gated once the threshold is lowered
    cfg0 = GateConfig(max_slice_regression_pct=10.0, slice_min_weight_share=0.0)
    gate0 = apply_gate(cand, {"naive": base}, cfg0, metric="wmae")
    assert not gate0["passed"] and gate0["slices_not_gated"] == []


def test_slice_missing_from_baseline_is_not_gated():
    cand = report(90.0, {"Store": [(1, 0.5, 90.0), (2, 0.5, 90.0)]})
    base = report(100.0, {"Store": [(1, 0.5, 100.0)]})
    cfg = GateConfig(max_slice_regression_pct=0.0)
    gate = apply_gate(cand, {"naive": base}, cfg, metric="wmae")
    assert gate["passed"]
    reasons = {(s["column"], s["value"]): s["reason"] for s in gate["slices_not_gated"]}
    assert reasons == {("Store", 2): "not in the baseline report"}
    cand["slices"]["Type"] = [{"value": "A", "n": 10, "weight_share": 1.0, "wmae": 90.0}]
    with pytest.raises(ValueError, match=r"baseline 'naive' report has no slices for \['Type'\]"):
        apply_gate(cand, {"naive": base}, cfg, metric="wmae")


def test_best_baseline_is_the_lowest():
    baselines = {"naive": report(120.0), "mean": report(100.0), "zero": report(300.0)}
    gate = apply_gate(report(99.0), baselines, GateConfig(), metric="wmae")
    assert gate["baseline"] == "mean" and gate["baseline_value"] == 100.0 and gate["passed"]
    named = apply_gate(report(99.0), baselines, GateConfig(baseline="zero",
                                                           min_improvement_pct=50.0),
                       metric="wmae")
    assert named["baseline"] == "zero" and named["passed"]
    assert rule(named, "beats_baseline")["improvement_pct"] == pytest.approx(67.0)


def test_gate_errors():
    base = {"naive": report(100.0)}
    with pytest.raises(ValueError, match="'mean' is not among the baseline reports"):
        apply_gate(report(90.0), base, GateConfig(baseline="mean"), metric="wmae")
    with pytest.raises(ValueError, match="metric == 'auc' cannot be gated"):
        apply_gate(report(90.0), base, GateConfig(), metric="auc")
    with pytest.raises(ValueError, match="no baseline reports"):
        apply_gate(report(90.0), {}, GateConfig(), metric="wmae")
    with pytest.raises(ValueError, match="candidate report has no overall 'nwrmsle'"):
        apply_gate(report(90.0), base, GateConfig(), metric="nwrmsle")
    with pytest.raises(ValueError, match=r"different rows \(n 99 vs 100\)"):
        apply_gate(report(90.0, n=99), base, GateConfig(), metric="wmae")


def test_zero_baseline_cannot_be_beaten():
    gate = apply_gate(report(1.0), {"naive": report(0.0)}, GateConfig(min_improvement_pct=1),
                      metric="wmae")
    r = rule(gate, "beats_baseline")
    assert not r["passed"] and r["improvement_pct"] is None
    assert "cannot be compared in percent (baseline is 0)" in r["detail"]


def test_gate_on_evaluated_reports_after_json_round_trip():
    frame = pd.DataFrame({
        "y": [100.0, 200.0, 300.0, 400.0, 50.0, 60.0],
        "naive": [110.0, 180.0, 330.0, 380.0, 55.0, 60.0],
        "model": [101.0, 199.0, 310.0, 395.0, 70.0, 61.0],
        "holiday": [False, True, False, False, False, True],
        "store": [1, 1, 2, 2, 3, 3],
    })
    frame["w"] = holiday_weights(frame["holiday"])
    reps = {m: json.loads(json.dumps(evaluate(frame, pred=m, target="y", weight="w",
                                              slices=["store"])))
            for m in ["naive", "model"]}
    cfg = GateConfig(max_slice_regression_pct=10.0, slice_min_weight_share=0.2)
    gate = apply_gate(reps["model"], {"naive": reps["naive"]}, cfg, metric="wmae")
    # store 3 (share 6/10 of the weight): naive (5 + 0) / 6, model (20 + 5) / 6: 400% worse
    r = rule(gate, "slice_regression")
    assert not gate["passed"] and r["failed"] == 1
    assert r["offenders"][0]["value"] == 3
    assert r["offenders"][0]["regression_pct"] == pytest.approx(400.0)
    assert rule(gate, "beats_baseline")["passed"]


# --- tabular reports: metrics where higher is better, protected-group gaps ---------------

@pytest.fixture(scope="module")
def acs_reports():
    """The ACS LightGBM's report and a prior baseline's (the 2015 base rate), 2016 rows."""
    import numpy as np

    from acs_data import acs_scored
    from cd4ml.evaluation import classification_report

    acs = acs_scored()
    kw = dict(classes=[0, 1], frame=acs.frame, slices=["SEX"], protected=["SEX", "RAC1P"],
              min_group_size=1000, bootstrap=200, seed=0)
    prior = np.full(len(acs.y), 0.49)
    return (classification_report(acs.y, acs.proba, **kw),
            classification_report(acs.y, np.c_[1 - prior, prior], **kw))


def test_higher_is_better_gate_passes_with_group_rules(acs_reports):
    from cd4ml.config import GroupGapRule

    cand, prior = acs_reports
    cfg = GateConfig(min_metric=0.85, max_slice_regression_pct=0.0, max_group_gap=[
        GroupGapRule(column="SEX", metric="tpr", points=3),
        GroupGapRule(column="RAC1P", metric="roc_auc", points=10)])
    gate = apply_gate(cand, {"prior": prior}, cfg, metric="roc_auc")
    assert gate["passed"] and gate["higher_is_better"] and gate["baseline_value"] == 0.5
    assert [r["rule"] for r in gate["rules"]] == [
        "min_metric", "beats_baseline", "slice_regression", "max_group_gap", "max_group_gap"]
    auc = cand["overall"]["roc_auc"]
    assert rule(gate, "min_metric")["detail"] == f"roc_auc {auc:.6g} >= 0.85"
    beats = rule(gate, "beats_baseline")
    assert beats["improvement_pct"] == pytest.approx((auc - 0.5) / 0.5 * 100)
    assert beats["detail"].endswith("% better (needs strictly better)")
    sl = rule(gate, "slice_regression")
    assert sl["gated"] == 2 and sl["worst"]["regression_pct"] < 0  # better on both sexes
    sex, rac = [r for r in gate["rules"] if r["rule"] == "max_group_gap"]
    gap = cand["groups"]["SEX"]["gaps"]["tpr"]
    assert sex["points"] == pytest.approx(gap["value"] * 100)
    assert sex["ci_points"] == pytest.approx([gap["ci"]["low"] * 100, gap["ci"]["high"] * 100])
    assert (sex["max_group"], sex["min_group"], sex["threshold"]) == (
        gap["max_group"], gap["min_group"], 0.5)
    assert re.fullmatch(r"SEX tpr gap \d\.\d points \(group [12] 0\.\d{3} vs group [12] "
                        r"0\.\d{3}; 95 % CI \d\.\d-\d\.\d\) <= 3", sex["detail"]), sex["detail"]
    assert [g["value"] for g in rac["groups"]] == [1, 2, 6, 8, 9]
    assert [(g["column"], g["value"]) for g in gate["groups_not_gated"]] == [
        ("RAC1P", 3), ("RAC1P", 4), ("RAC1P", 5), ("RAC1P", 7)]
    text = render_gate(gate)
    assert "PASS max_group_gap: SEX tpr gap" in text
    assert "not gated: 4 group(s) — RAC1P=3 (n 73 < min_group_size 1,000)" in text
    assert json.loads(json.dumps(gate, allow_nan=False)) == gate


def test_group_gap_rule_fails_and_says_which_groups(acs_reports):
    from cd4ml.config import GroupGapRule

    cand, prior = acs_reports
    cfg = GateConfig(max_group_gap=[GroupGapRule(column="RAC1P", metric="tpr", points=1)])
    gate = apply_gate(cand, {"prior": prior}, cfg, metric="roc_auc")
    r = rule(gate, "max_group_gap")
    assert not gate["passed"] and not r["passed"] and r["points"] > 1
    gap = cand["groups"]["RAC1P"]["gaps"]["tpr"]
    assert r["detail"] == (
        f"RAC1P tpr gap {gap['value'] * 100:.1f} points (group {gap['max_group']} "
        f"{gap['max_value']:.3f} vs group {gap['min_group']} {gap['min_value']:.3f}; "
        f"95 % CI {gap['ci']['low'] * 100:.1f}-{gap['ci']['high'] * 100:.1f}) > 1")
    text = render_gate(gate)
    assert "FAIL max_group_gap: RAC1P tpr gap" in text
    assert "  RAC1P tpr by gated group: 1 0." in text and "(n 56," in text


def test_group_rule_with_fewer_than_two_gated_groups_passes_with_a_note():
    from acs_data import acs_scored
    from cd4ml.config import GroupGapRule
    from cd4ml.evaluation import classification_report

    acs = acs_scored()
    rep = classification_report(acs.y, acs.proba, classes=[0, 1], frame=acs.frame,
                                protected=["SEX"], min_group_size=35_000, bootstrap=50)
    cfg = GateConfig(max_group_gap=[GroupGapRule(column="SEX", metric="tpr", points=0.1)])
    gate = apply_gate(rep, {"self": rep}, cfg, metric="log_loss")
    r = rule(gate, "max_group_gap")
    assert r["passed"] and r["points"] is None
    assert r["detail"] == "SEX tpr gap not gated: 1 gated group(s); a gap needs 2"
    assert gate["groups_not_gated"][0]["value"] == 1
    assert not rule(gate, "beats_baseline")["passed"]  # log_loss: equal is not better


def test_tabular_gate_errors(acs_reports):
    from acs_data import wine_scored
    from cd4ml.config import GroupGapRule
    from cd4ml.evaluation import classification_report

    cand, prior = acs_reports
    base = {"prior": prior}
    with pytest.raises(ValueError, match=r"gate.max_metric == 0.9, but for roc_auc higher is "
                                         r"better; set gate.min_metric"):
        apply_gate(cand, base, GateConfig(max_metric=0.9), metric="roc_auc")
    with pytest.raises(ValueError, match=r"gate.min_metric == 1.0, but for wmae lower is "
                                         r"better; set gate.max_metric"):
        apply_gate(report(90.0), {"naive": report(100.0)}, GateConfig(min_metric=1.0),
                   metric="wmae")
    gap = GroupGapRule(column="AGEP", metric="tpr", points=3)
    with pytest.raises(ValueError, match=r"gate.max_group_gap\[0\].column == 'AGEP': the "
                                         r"candidate report has no groups for it"):
        apply_gate(cand, base, GateConfig(max_group_gap=[gap]), metric="roc_auc")
    wine = wine_scored()
    frame = wine.frame.assign(s=wine.frame["alcohol"] > 13)
    multi = classification_report(wine.y, wine.proba, classes=[0, 1, 2], frame=frame,
                                  protected=["s"], min_group_size=10, bootstrap=0)
    gap = GroupGapRule(column="s", metric="tpr", points=3)
    with pytest.raises(ValueError, match=r"metric == 'tpr': no such gap for s \(multiclass: "
                                         r"TPR, FPR .*use one of \['roc_auc'\]"):
        apply_gate(multi, {"m": multi}, GateConfig(max_group_gap=[gap]), metric="roc_auc")


def test_best_baseline_and_leaderboard_when_higher_is_better(acs_reports):
    from cd4ml.evaluation import compare

    cand, prior = acs_reports
    weak = json.loads(json.dumps(cand))
    weak["overall"]["roc_auc"] = 0.7
    gate = apply_gate(cand, {"prior": prior, "weak": weak}, GateConfig(), metric="roc_auc")
    assert gate["baseline"] == "weak" and gate["passed"]
    board = compare({"gbm": cand, "prior": prior, "weak": weak}, "roc_auc",
                    baselines=["prior", "weak"])
    assert [r["model"] for r in board] == ["gbm", "weak", "prior"]
    assert board[0]["reference"] == "weak" and board[0]["improvement_pct"] > 0
    assert board[2]["improvement_pct"] == pytest.approx((0.5 - 0.7) / 0.7 * 100)
    losses = compare({"gbm": cand, "prior": prior}, "log_loss")
    assert [r["model"] for r in losses] == ["gbm", "prior"]  # lower is better
