"""A deployment as pure state: validation, each strategy's transitions, the gate rule and
every refusal (a ConfigError naming the field and the value; the state untouched)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cd4ml.errors import ConfigError
from cd4ml.serving.deployment import (Arm, Candidate, DeploymentState, abort, configure,
                                      gate_of, pause, promote, start_candidate)

ROOT = Path(__file__).resolve().parents[1]


def state(strategy: str = "canary", gate: str = "passed", **kw: object) -> DeploymentState:
    role = "blue" if strategy == "bluegreen" else "stable"
    base = dict(name="sales", model="sales", alias="production", strategy=strategy,
                arms=(Arm(1, role, 1.0, gate),), steps=(0.05, 0.25, 0.5, 1.0), revision=3)
    return DeploymentState(**{**base, **kw}).validate()  # type: ignore[arg-type]


def arms(s: DeploymentState) -> list[tuple[int, str, float | None]]:
    return [(a.version, a.role, a.share) for a in s.arms]


def test_canary_walks_its_steps_then_finishes() -> None:
    s, change = start_candidate(state(), Candidate(2, "passed"), reason="new data")
    assert arms(s) == [(1, "stable", 0.95), (2, "canary", 0.05)]
    assert (s.status, s.step, s.revision) == ("progressing", 0, 4)
    assert change.action == "candidate" and change.reason == "new data"
    assert change.from_state["revision"] == 3 and change.to_state == s.to_dict()
    s, _ = promote(s)
    assert arms(s) == [(1, "stable", 0.75), (2, "canary", 0.25)] and s.step == 1
    s, _ = promote(s)
    s, change = promote(s)
    assert arms(s) == [(2, "stable", 1.0)] and (s.status, s.step) == ("stable", None)
    assert change.summary == "v2 stable (was v1)" and s.revision == 7
    assert DeploymentState.from_dict(s.to_dict()) == s


def test_each_strategy_starts_its_own_way() -> None:
    single, _ = start_candidate(state("single"), Candidate(2, "passed"))
    assert arms(single) == [(2, "stable", 1.0)] and single.status == "stable"
    shadow, _ = start_candidate(state("shadow"), Candidate(2, "passed"))
    assert arms(shadow) == [(1, "stable", 1.0), (2, "shadow", None)]
    assert shadow.candidate is not None and shadow.candidate.version == 2
    ab, _ = start_candidate(state("ab", split=0.2), Candidate(2, "passed"))
    assert arms(ab) == [(1, "stable", 0.8), (2, "arm", 0.2)]
    bandit, _ = start_candidate(state("bandit"), Candidate(2, "passed"))
    assert arms(bandit) == [(1, "stable", 0.5), (2, "arm", 0.5)]
    bg, _ = start_candidate(state("bluegreen"), Candidate(2, "passed"))
    assert arms(bg) == [(1, "blue", 1.0), (2, "green", 0.0)] and bg.status == "progressing"
    switched, change = promote(bg)
    assert arms(switched) == [(1, "blue", 0.0), (2, "green", 1.0)]
    assert "switched" in change.summary
    assert arms(promote(switched)[0]) == [(2, "blue", 1.0)]
    assert arms(abort(switched)[0]) == [(1, "blue", 1.0)]  # blue was kept loaded
    for s in (shadow, ab, bandit):
        assert arms(promote(s)[0]) == [(2, "stable", 1.0)]


def test_nothing_serving_yet_takes_the_candidate_as_stable() -> None:
    empty = DeploymentState(name="sales", model="sales", alias="production",
                            strategy="canary").validate()
    s, change = start_candidate(empty, Candidate(1, "baseline"))
    assert arms(s) == [(1, "stable", 1.0)] and s.status == "stable"
    assert change.from_state is None  # a new deployment


def test_pause_abort_and_a_newer_candidate() -> None:
    s, _ = start_candidate(state(), Candidate(2, "passed"))
    paused, _ = pause(s)
    assert paused.status == "paused" and arms(paused) == arms(s)
    resumed, _ = promote(paused)
    assert resumed.status == "progressing" and resumed.step == 1
    aborted, change = abort(paused)
    assert arms(aborted) == [(1, "stable", 1.0)] and aborted.status == "aborted"
    assert change.action == "abort"
    newer, _ = start_candidate(resumed, Candidate(3, "passed"))  # replaces v2, step 0
    assert arms(newer) == [(1, "stable", 0.95), (3, "canary", 0.05)]
    again, _ = start_candidate(aborted, Candidate(3, "passed"))
    assert again.status == "progressing"


def test_configure_keeps_the_stable_version() -> None:
    s, _ = configure(state("single"), strategy="bluegreen", automation="assisted")
    assert arms(s) == [(1, "blue", 1.0)] and s.automation == "assisted"
    s, _ = configure(s, strategy="canary", steps=[0.1, 1.0])
    assert arms(s) == [(1, "stable", 1.0)] and s.steps == (0.1, 1.0)
    s, _ = start_candidate(s, Candidate(2, "passed"))
    assert arms(promote(s)[0]) == [(2, "stable", 1.0)]  # 0.1 then 1.0: the finish


def test_the_gate_rule() -> None:
    assert gate_of({"kind": "candidate", "gate": {"passed": False}}) == "failed"
    assert gate_of({"kind": "candidate", "gate": None}) == "missing"
    assert gate_of({"kind": "baseline", "gate": {"passed": False, "note": "x"}}) == "baseline"
    for strategy in ("single", "canary", "ab", "bandit", "bluegreen"):
        with pytest.raises(ConfigError, match="version = 2: v2's gate is failed: it may "
                                              "only be a shadow"):
            start_candidate(state(strategy), Candidate(2, "failed"))
    shadow, _ = start_candidate(state("shadow"), Candidate(2, "failed"))
    assert arms(shadow)[1] == (2, "shadow", None)
    with pytest.raises(ConfigError, match="cannot be promoted"):
        promote(shadow)
    with pytest.raises(ConfigError, match="missing"):
        start_candidate(state("canary"), Candidate(2, "missing"))
    # the baseline served because nothing passed may take live traffic
    base, _ = start_candidate(state("canary"), Candidate(2, "baseline"))
    assert arms(base)[1] == (2, "canary", 0.05)
    with pytest.raises(ConfigError, match=r"arms.0.version = 1: v1's gate is failed"):
        state("canary", gate="failed")


@pytest.mark.parametrize("bad, field, why", [
    ({"arms": (Arm(1, "stable", 0.6), Arm(2, "canary", 0.3))}, "arms.share",
     "sum to 0.9, must sum to 1"),
    ({"arms": (Arm(1, "stable", 60.0), Arm(2, "canary", 40.0))}, "arms.share.v1",
     "must be in \\[0, 1\\]"),
    ({"steps": (0.05, 0.5, 0.9)}, "steps", "must reach 1"),
    ({"steps": (0.5, 0.25, 1.0)}, "steps", "strictly increasing"),
    ({"steps": (0.0, 1.0)}, "steps", "in \\(0, 1\\]"),
    ({"steps": ()}, "steps", "expected candidate shares"),
    ({"arms": (Arm(1, "stable", 0.5), Arm(1, "canary", 0.5))}, "arms", "one role only"),
    ({"arms": (Arm(1, "canary", 1.0),)}, "arms", "exactly one stable"),
    ({"arms": (Arm(1, "stable", 0.5), Arm(2, "stable", 0.5))}, "arms", "exactly one stable"),
    ({"arms": (Arm(1, "stable", 1.0), Arm(2, "shadow", 0.1))}, "arms.1.share",
     "a shadow takes no share"),
    ({"arms": (Arm(1, "blue", 1.0),)}, "arms.0.role", "expected one of stable, canary"),
    ({"strategy": "rainbow"}, "strategy", "expected one of single"),
    ({"automation": "yolo"}, "automation", "expected one of manual"),
    ({"status": "done"}, "status", "expected one of stable"),
    ({"split": 1.0}, "split", "in \\(0, 1\\)"),
])
def test_refusals_name_the_field_and_the_value(bad: dict, field: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        state(**bad)
    assert info.value.key == field


def test_transitions_that_make_no_sense_are_refused() -> None:
    s = state()
    for fn in (promote, pause, abort):
        with pytest.raises(ConfigError, match="status = 'stable': no rollout"):
            fn(s)
    with pytest.raises(ConfigError, match="version = 1: v1 already serves"):
        start_candidate(s, Candidate(1, "passed"))
    progressing, _ = start_candidate(s, Candidate(2, "passed"))
    with pytest.raises(ConfigError, match="a rollout is in progress"):
        configure(progressing, strategy="single")
    with pytest.raises(ConfigError, match="already paused"):
        pause(pause(progressing)[0])
    with pytest.raises(ConfigError, match="steps = \\[0.5\\]: ends at 0.5"):
        configure(s, strategy="canary", steps=[0.5])
    assert s.revision == 3 and arms(s) == [(1, "stable", 1.0)]  # frozen: never changed


def test_deployment_module_is_pure() -> None:
    """It imports nothing of cd4ml but errors and rollout's share check (no store)."""
    tree = ast.parse((ROOT / "src/cd4ml/serving/deployment.py").read_text())
    ours = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
            and n.module and n.module.startswith("cd4ml")}
    ours |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
             if a.name.startswith("cd4ml")}
    assert ours == {"cd4ml.errors", "cd4ml.serving.sticky"}
