"""Rollout: the statistics and policies behind A/B tests and bandits.

Pure parts, on numbers and keys only (NumPy; SciPy imported inside the functions that
use it, so ``import cd4ml.rollout`` stays light). They import nothing of serving,
monitoring or the pipeline (an import-linter contract in pyproject.toml); the rollout
controller calls them and writes deployment state that servers only read.

- :mod:`~cd4ml.rollout.abtest` — two arms compared on per-request outcomes: effect,
  Welch's fixed-horizon test, an always-valid sequential test (mSPRT) and a
  recommendation that says when enough data has arrived;
- :mod:`~cd4ml.rollout.bandit` — Thompson sampling and ε-greedy over two or more arms,
  their state a small JSON-safe record, and a seeded simulator;
- :mod:`~cd4ml.rollout.routed` and :mod:`~cd4ml.rollout.analysis` — a canary step's
  analysis: the router's counts and latency histograms from a server's ``/metrics``,
  and each check Successful, Failed or Inconclusive.

The controller that uses them (:mod:`~cd4ml.rollout.controller`, reading the log
through :mod:`~cd4ml.rollout.signals`, run by :mod:`~cd4ml.rollout.watch`) and the
deployments' changes (:mod:`~cd4ml.rollout.manage`) are not pure; none of them is
imported by ``import cd4ml.rollout``. What a deployment is and the sticky split the
router hashes by live in serving (:mod:`cd4ml.serving.deployment`,
:mod:`cd4ml.serving.sticky`; re-exported here: ``arm_for``, ``assign``, …), so that
serving imports nothing of rollout.
"""

from cd4ml.rollout.abtest import (ArmStats, Comparison, Recommendation, Sequential, Welch,
                                  compare, horizon, msprt, recommend, welch)
from cd4ml.rollout.bandit import (BanditState, EpsilonGreedy, Simulation, ThompsonSampling,
                                  simulate)
from cd4ml.serving.sticky import Assignment, arm_for, arms_for, assign, check_shares

__all__ = ["arm_for", "arms_for", "assign", "check_shares", "Assignment", "ArmStats", "Welch",
           "Sequential", "Comparison", "Recommendation", "welch", "msprt", "compare",
           "recommend", "horizon", "BanditState", "ThompsonSampling", "EpsilonGreedy",
           "Simulation", "simulate"]
