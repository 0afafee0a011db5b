"""A bandit's adapting split and an A/B test's looks, as the rollout controller takes
them (:mod:`cd4ml.rollout.controller` says what each does and when)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from cd4ml.rollout.analysis import finite
from cd4ml.rollout.events import latest, record

if TYPE_CHECKING:
    from cd4ml.rollout.controller import Controller
    from cd4ml.serving.deployment import DeploymentState

__all__ = ["bandit_look", "ab_look"]


def bandit_look(ctl: Controller, state: DeploymentState) -> dict[str, Any]:
    """A bandit's shares from its arms' rewards (the controller's module text)."""
    from cd4ml.rollout import bandit as bd
    from cd4ml.serving import deployment as dep
    from cd4ml.rollout.signals import outcomes

    b = ctl.cfg.rollout.bandit
    left = ctl.due(state, "bandit", b.update_s)
    if left is not None:
        return {"action": "wait", "reason": f"shares computed again in {left:.0f} s"}
    arms = ctl.arms(state)
    got = outcomes(ctl.cfg, ctl.root, state.model, arms,
                   since=ctl.began_at(state, "candidate"), source=b.outcome,
                   binary=b.reward == "binary")
    sign = 1.0 if got.higher_is_better else -1.0  # an error is a negative reward
    values = {a: sign * v for a, v in got.values.items()}
    ignored = dict(got.ignored)
    if b.reward == "binary" and not got.higher_is_better:
        ignored["an absolute error is no binary reward (rollout.bandit.reward: "
                "continuous)"] = sum(len(v) for v in values.values())
        values = {a: v[:0] for a, v in values.items()}
    names = list(arms)
    st = bd.BanditState(tuple(names), tuple(len(values[a]) for a in names),
                        tuple(float(values[a].sum()) for a in names),
                        tuple(float((values[a] ** 2).sum()) for a in names))
    policy = (bd.ThompsonSampling(reward=b.reward) if b.policy == "thompson"
              else bd.EpsilonGreedy(epsilon=b.epsilon, reward=b.reward))
    shares = _floored(policy.shares(st, seed=b.seed), b.min_share)
    current = state.shares()
    moved = max(abs(shares[a] - current.get(a, 0.0)) for a in names)
    doc = {"state": st.to_dict(), "shares": shares, "current": current,
           "policy": repr(policy), "outcomes": got.to_dict(), "ignored": ignored}
    pulls = ", ".join(f"{a} {n:,} rewards, mean {s / n:.4g}" if n else f"{a} none"
                      for a, n, s in zip(st.arms, st.pulls, st.total))
    line = (f"bandit {b.policy}: {pulls}; shares "
            + ", ".join(f"{a} {shares[a] * 100:.3g} %" for a in names)
            + (f"; ignored {sum(ignored.values())} ({'; '.join(ignored)})" if ignored
               else ""))
    if moved <= b.min_change:
        return {"action": "none", "reason": f"{line}: moved {moved * 100:.2g} points, "
                                            f"not more than {b.min_change * 100:g}",
                "bandit": doc}
    if state.automation != "automatic":
        record(ctl.stores, state, "bandit", {**doc, "proposal": "reweight"},
               f"{line}; proposes these shares", ctl.who)
        return {"action": "propose", "proposal": "reweight", "reason": line, "bandit": doc}
    new, change = dep.reweight(state, shares, reason=line)
    ctl.stores.metadata.write_deployment(new, change, expected_revision=state.revision,
                                          actor=ctl.who)
    return {"action": "reweight", "reason": line, "to": new.describe(),
            "to_revision": new.revision, "bandit": doc}

def ab_look(ctl: Controller, state: DeploymentState) -> dict[str, Any]:
    """An A/B test's look: its arms compared, recorded, decided (the module text)."""
    from cd4ml.rollout import abtest
    from cd4ml.rollout.signals import outcomes

    ab = ctl.cfg.rollout.ab
    left = ctl.due(state, "ab", ab.look_s)
    if left is not None:
        return {"action": "wait", "reason": f"next look in {left:.0f} s"}
    inc, cand = state.incumbent, state.candidate
    assert inc is not None and cand is not None
    since = ctl.began_at(state, "candidate")
    got = outcomes(ctl.cfg, ctl.root, state.model, ctl.arms(state), since=since,
                   source=ab.outcome)
    a, b = (abtest.ArmStats.of(got.values[f"v{x.version}"]) for x in (inc, cand))
    prev = latest(ctl.stores, state.name, "ab").get("ab")
    previous = None
    if prev is not None and (prev["detail"] or {}).get("candidate") == cand.version \
            and (prev["detail"] or {}).get("since") == since:
        seq = prev["detail"]["sequential"]
        previous = abtest.Sequential(*(math.nan,) * 4, *(_nan(seq.get(k)) for k in (
            "pvalue", "ci_low", "ci_high")), ab.alpha)
    c = abtest.compare(a, b, higher_is_better=got.higher_is_better, alpha=ab.alpha,
                       tau=ab.tau, previous=previous)
    rec = abtest.recommend(c, min_effect=ab.min_effect, min_n=ab.min_n, max_n=ab.max_n)
    s = c.sequential
    doc = {"candidate": cand.version, "since": since, "outcome": got.to_dict(),
           "a": {"version": inc.version, "n": int(a.n), "mean": finite(a.mean)},
           "b": {"version": cand.version, "n": int(b.n), "mean": finite(b.mean)},
           "diff": finite(c.diff), "relative": finite(c.relative),
           "sequential": {"pvalue": finite(s.pvalue), "ci_low": finite(s.ci_low),
                          "ci_high": finite(s.ci_high)},
           "welch_pvalue": finite(c.welch.pvalue), "decision": rec.decision,
           "reason": rec.reason, "more_per_arm": rec.more_per_arm}
    line = (f"A/B v{cand.version} vs v{inc.version} on {got.kind}: "
            f"{_mean(b)} vs {_mean(a)} ({int(b.n):,} and {int(a.n):,}): "
            f"{rec.decision} ({rec.reason})")
    action = {abtest.B_BETTER: "promote", abtest.A_BETTER: "abort",
              abtest.NO_DIFFERENCE: "pause"}.get(rec.decision)
    if state.automation == "automatic" and action is not None:
        record(ctl.stores, state, "ab", {**doc, "decision": action}, line, ctl.who)
        return {**ctl.decide(state, action, line), "ab": doc}
    record(ctl.stores, state, "ab", {**doc, "proposal": action or "keep collecting"},
           line, ctl.who)
    return {"action": "propose" if action else "none", "proposal": action,
            "reason": line, "ab": doc}


def _nan(x: Any) -> float:
    v = finite(x)
    return math.nan if v is None else v


def _mean(s: Any) -> str:
    return "-" if not s.n else f"{float(s.mean):.4g}"


def _floored(shares: dict[str, float], floor: float) -> dict[str, float]:
    """Each share at least ``floor`` (``floor + (1 - k·floor)·p``), rounded to 1e-4, the
    last taking what the others leave so they sum to 1."""
    names = list(shares)
    k = len(names)
    out = {a: round(floor + (1 - k * floor) * shares[a], 4) for a in names[:-1]}
    out[names[-1]] = round(1.0 - sum(out.values()), 10)
    return out
