"""The sticky split: one unit, one arm, in every process; the shares held; refusals."""

from __future__ import annotations

import json
import math
import os
import subprocess
import types
import sys

import pytest
from conftest import modules_after

from cd4ml.errors import ConfigError, RequestError
from cd4ml.serving.sticky import Assignment, arm_for, arms_for, assign, check_shares, unit

SHARES = {"stable": 0.5, "candidate": 0.3, "shadow": 0.2}
KEYS = [f"customer-{i}" for i in range(100_000)]


def _arms_in_subprocess(keys: list[str], hashseed: str) -> list[str]:
    code = ("import json, sys; from cd4ml.serving.sticky import arm_for; "
            "keys = json.load(sys.stdin); "
            f"print(json.dumps([arm_for(k, {SHARES!r}, 'exp-7') for k in keys]))")
    env = {**os.environ, "PYTHONHASHSEED": hashseed}  # hash() differs; ours must not
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(keys),
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def test_same_key_same_arm_in_separate_processes() -> None:
    keys = KEYS[:2_000]
    here = [arm_for(k, SHARES, "exp-7") for k in keys]
    assert _arms_in_subprocess(keys, "1") == here
    assert _arms_in_subprocess(keys, "2") == here
    assert arms_for(keys, SHARES, "exp-7") == here


def test_proportions_within_binomial_tolerance() -> None:
    from scipy import stats

    arms = arms_for(KEYS, SHARES, "exp-7")
    n = len(KEYS)
    for name, p in SHARES.items():
        count = arms.count(name)
        assert abs(count - n * p) <= 4 * math.sqrt(n * p * (1 - p)), (name, count)
    # the points themselves are uniform on [0, 1) (SciPy's KS test as the reference)
    points = [unit(k, "exp-7") for k in KEYS[:20_000]]
    assert min(points) >= 0.0 and max(points) < 1.0
    assert stats.kstest(points, "uniform").pvalue > 0.001


def test_order_of_shares_does_not_matter_and_ramps_only_move_into_the_grown_arm() -> None:
    keys = KEYS[:20_000]
    reordered = dict(reversed(list(SHARES.items())))
    assert arms_for(keys, reordered, "exp-7") == arms_for(keys, SHARES, "exp-7")
    before = arms_for(keys, {"stable": 0.95, "candidate": 0.05}, "ramp")
    after = arms_for(keys, {"stable": 0.90, "candidate": 0.10}, "ramp")
    moved = [(b, a) for b, a in zip(before, after) if b != a]
    assert moved and set(moved) == {("stable", "candidate")}
    assert all(a == "candidate" for b, a in zip(before, after) if b == "candidate")


def test_a_new_salt_draws_an_independent_split() -> None:
    half = {"A": 0.5, "B": 0.5}
    one, two = arms_for(KEYS[:20_000], half, "salt-1"), arms_for(KEYS[:20_000], half, "salt-2")
    agree = sum(a == b for a, b in zip(one, two)) / len(one)
    assert abs(agree - 0.5) < 4 * math.sqrt(0.25 / len(one))


def test_an_arm_with_no_share_is_never_chosen() -> None:
    arms = arms_for(KEYS[:20_000], {"A": 0.0, "B": 1.0, "C": 0.0}, "s")
    assert set(arms) == {"B"}


def test_the_key_as_a_number_or_text_is_one_unit() -> None:
    got = {assign({"store": v}, "store", SHARES, "s", request_id="r").arm
           for v in (17, 17.0, "17")}
    assert got == {arm_for("17", SHARES, "s")}


def test_a_request_without_the_key_takes_the_documented_fallback() -> None:
    for request in ({}, {"store": None}, {"store": ""}, {"store": float("nan")}):
        by_id = assign(request, "store", SHARES, "s", request_id="req-1")
        assert by_id.by == "request_id"
        assert by_id == assign(request, "store", SHARES, "s", request_id="req-1")
        assert assign(request, "store", SHARES, "s", request_id="req-1",
                      fallback="arm:stable") == Assignment("stable", "fallback")
        with pytest.raises(RequestError, match="store: missing") as e:
            assign(request, "store", SHARES, "s", request_id="req-1", fallback="refuse")
        assert e.value.errors[0]["field"] == "store"
    # by request id, such requests still follow the shares
    arms = [assign({}, "store", SHARES, "s", request_id=f"r{i}").arm for i in range(20_000)]
    for name, p in SHARES.items():
        assert abs(arms.count(name) - 20_000 * p) <= 4 * math.sqrt(20_000 * p * (1 - p))


@pytest.mark.parametrize("shares, match", [
    ({"A": 0.5, "B": 0.4}, r"shares = \{'A': 0.5, 'B': 0.4\}: sum to 0.9, must sum to 1"),
    ({"A": 50, "B": 50}, r"shares.A = 50: must be in \[0, 1\]; shares are fractions"),
    ({"A": -0.5, "B": 1.5}, r"shares.A = -0.5: must be in \[0, 1\]"),
    ({"A": float("nan"), "B": 1.0}, r"shares.A = nan: expected a number in \[0, 1\]"),
    ({"A": True, "B": 0.0}, r"shares.A = True: expected a number"),
    ({"A": "0.5", "B": 0.5}, r"shares.A = '0.5': expected a number"),
    ({}, r"shares = \{\}: expected a mapping of arm name to share"),
    ([0.5, 0.5], r"shares = \[0.5, 0.5\]: expected a mapping"),
])
def test_bad_shares_are_refused_naming_them(shares: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        arm_for("k", shares, "s")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=match):
        assign({"k": 1}, "k", shares, "s", request_id="r")  # type: ignore[arg-type]


def test_shares_within_the_tolerance_are_taken_and_not_changed() -> None:
    shares = {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}
    assert check_shares(shares, field="rollout.shares") == shares
    with pytest.raises(ConfigError, match=r"^rollout.shares = .*must sum to 1"):
        check_shares({"A": 0.5, "B": 0.5 + 1e-6}, field="rollout.shares")


def test_import_rollout_is_light_and_its_surface_is_all() -> None:
    from cd4ml import rollout

    loaded = modules_after("import cd4ml.rollout")
    heavy = sorted(m for m in loaded
                   if m.split(".")[0] in ("scipy", "pandas", "sklearn", "lightgbm", "fastapi")
                   or m.startswith(("cd4ml.serving", "cd4ml.monitoring", "cd4ml.pipeline")))
    # the sticky split it re-exports is serving's (the router hashes by it), and pure
    assert heavy == ["cd4ml.serving", "cd4ml.serving.sticky"]
    # submodules are attributes once anything imported them (cd4ml.serving.deployment,
    # manage): what the package itself exports is its names other than modules
    public = {n for n, v in vars(rollout).items() if not n.startswith("_")
              and not isinstance(v, types.ModuleType)} - {"annotations"}
    assert set(rollout.__all__) == public


def test_bad_keys_and_fallbacks_are_refused() -> None:
    with pytest.raises(RequestError, match=r"store = \[1, 2\]: expected a string or a number"):
        assign({"store": [1, 2]}, "store", SHARES, "s", request_id="r")
    with pytest.raises(RequestError, match=r"key = 17: expected a string"):
        arm_for(17, SHARES, "s")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"fallback = 'arm:gone': names no arm; expected one "
                       r"of candidate, shadow, stable"):
        assign({}, "store", SHARES, "s", request_id="r", fallback="arm:gone")
    with pytest.raises(ConfigError, match=r"fallback = 'random': expected one of request_id"):
        assign({}, "store", SHARES, "s", request_id="r", fallback="random")
