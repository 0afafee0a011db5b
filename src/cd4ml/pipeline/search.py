"""The stage of a candidate with a hyperparameter search: its trials and its best recipe.

::

    candidate:<name> (search) ── sampler.ask(workers) ─▶ trials ─▶ sampler.tell ─┐
          ▲                       (grid, random, tpe)   (fit on train,           │
          └───────────────── until the budget (trials, time) is spent ◀──────────┘
                                                         score validation)
    outputs: the best trial's report and metric, its recipe (``spec``: the candidate's
    params with the best trial's over them), every trial (params, metric, seconds)

A trial is exactly the candidate's ``validate_candidate`` (``steps_model`` for a
forecast, ``steps_tabular`` for a tabular task) with the trial's params. Each is cached
in the stage cache as ``trial:<candidate>`` under a key of the same inputs, the trial's
recipe, seed, evaluation settings, code and library versions, so a search whose budget
grows (or whose stage re-runs for any reason that leaves a trial's key alone) refits only
the trials it has not seen. Trials that miss are fitted two at a time (``search.workers``)
in processes of their own, each with one thread (LightGBM's and scikit-learn's
``n_jobs: 1``, and OMP/OpenBLAS/MKL threads 1), so two workers use two cores;
LightGBM fits with ``deterministic: true``, so its trees do not depend on the threads.
Every trial is recorded as a child run of the pipeline's run (``cd4ml runs`` shows it).
``cd4ml run --force`` refits every trial.
"""

from __future__ import annotations

import importlib
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from cd4ml.config import ModelSpec
from cd4ml.errors import Cd4mlError
from cd4ml.pipeline.cache import stage_key
from cd4ml.pipeline.context import read_frame
from cd4ml.pipeline.sources import ML_LIBS
from cd4ml.training.search import Proposal, make_sampler

__all__ = ["search_candidate", "Trial"]


@dataclass(frozen=True, slots=True)
class Trial:
    """One trial of a search, as recorded in the stage's outputs and its child run."""

    number: int
    params: dict[str, Any]
    metric: float | None  #: None: the trial failed (``error`` says why)
    seconds: float  #: the fit and scoring (for a reused trial: when it was computed)
    cached: bool  #: reused from the stage cache, not fitted by this run
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict, repr=False)
    reused_from: str | None = None  #: the run that computed a reused trial

    @property
    def status(self) -> str:
        return "failed" if self.metric is None else "succeeded"

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "params": self.params, "metric": self.metric,
                "seconds": round(self.seconds, 3), "status": self.status,
                "cached": self.cached, "error": self.error}


# -- one trial, in this process or in a worker -----------------------------------------
@dataclass
class _Frames:
    """What a trial's function needs of a run context: frames read by digest, memoised."""

    artifacts: Any
    memo: dict[str, Any] = field(default_factory=dict)

    def frame(self, digest: str) -> Any:
        if digest not in self.memo:
            self.memo[digest] = read_frame(self.artifacts, digest)
        return self.memo[digest]


#: a worker process's frames, kept while its trials read the same inputs
_WORKER: dict[str, Any] = {}


@dataclass(frozen=True)
class _Fitted:
    """What one trial's fit and scoring gave (sent back from a worker process)."""

    outputs: dict[str, Any]  #: the validate function's (report, metric, ...); {} if failed
    error: str | None
    seconds: float

    @property
    def metric(self) -> float | None:
        """The validation metric; None for a failed trial or a metric that is not finite."""
        value = self.outputs.get("metric")
        if self.error is not None or not isinstance(value, (int, float)):
            return None
        return float(value) if math.isfinite(value) else None


def _evaluate(ctx: Any, func: str, inputs: dict[str, Any], params: dict[str, Any],
              ) -> _Fitted:
    """``func(ctx, inputs, params)`` timed; a cd4ml error (a fit the params make
    impossible, say) is the trial's failure, not the search's."""
    module, _, name = func.partition(":")
    t0 = time.perf_counter()
    try:
        outputs = getattr(importlib.import_module(module), name)(ctx, inputs, params)
    except Cd4mlError as exc:
        return _Fitted({}, str(exc), time.perf_counter() - t0)
    fitted = _Fitted(outputs, None, time.perf_counter() - t0)
    if outputs.get("error"):  # the model could not be fitted (validate reports it)
        return _Fitted(outputs, str(outputs["error"]), fitted.seconds)
    if fitted.metric is None:
        return _Fitted(outputs, f"the metric is {outputs['metric']}", fitted.seconds)
    return fitted


def _in_worker(artifacts: Any, func: str, inputs: dict[str, Any], params: dict[str, Any],
               ) -> _Fitted:
    """One trial in a worker process; its frames are read once per set of inputs."""
    key = repr((str(artifacts), sorted((k, str(v)) for k, v in inputs.items())))
    if _WORKER.get("key") != key:
        _WORKER.update(key=key, frames=_Frames(artifacts))
    return _evaluate(_WORKER["frames"], func, inputs, params)


def _one_thread(params: dict[str, Any]) -> dict[str, Any]:
    """The trial's params with ``n_jobs: 1`` where its model type takes threads."""
    from cd4ml.training.adapters import adapter_for

    spec = params["spec"]
    task = params.get("task", "forecast")
    defaults = adapter_for(spec["type"], task, where="type").defaults(task, 2)
    if "n_jobs" not in {**defaults, **spec["params"]}:
        return params
    return {**params, "spec": {**spec, "params": {**spec["params"], "n_jobs": 1}}}


@dataclass(frozen=True)
class _Pending:
    """A proposal the trial cache does not hold yet: to be fitted, then cached."""

    proposal: Proposal
    params: dict[str, Any]  #: what the validate function takes for this trial
    key: str  #: its trial-cache key
    parts: dict[str, Any]  #: what the key was made of (kept to explain staleness)


#: a worker process's thread pools: one thread each (set before it imports a library)
_ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1"}


def _one_thread_pools() -> None:
    """A worker's start: one thread per native pool, set before any library loads."""
    os.environ.update(_ONE_THREAD_ENV)


class _TrialRunner:
    """Runs batches of trials: cached ones read back, the rest fitted, in parallel when
    more than one misses, in worker processes forked from multiprocessing's fork server
    (a clean process: none inherits LightGBM's OpenMP threads or the run's open
    connections), started on first need, with one thread per pool, and ended with the
    search (``with``)."""

    def __init__(self, ctx: Any, inputs: dict[str, Any], params: dict[str, Any],
                 workers: int) -> None:
        self.ctx, self.inputs, self.workers = ctx, inputs, workers
        self.func: str = params["validate"]
        self.base: dict[str, Any] = params["candidate"]
        self.spec = ModelSpec(**self.base["spec"])
        self._pool: Any = None

    def __enter__(self) -> _TrialRunner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _key(self, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return stage_key(name=f"trial:{self.spec.name}", inputs=self.inputs, params=params,
                         modules=[self.func.partition(":")[0]], libraries=list(ML_LIBS))

    def run(self, batch: list[Proposal]) -> list[Trial]:
        """The trials of ``batch``, in its order."""
        stage = f"trial:{self.spec.name}"
        todo: list[_Pending] = []
        found: dict[int, Trial] = {}
        for p in batch:
            params = {**self.base, "spec": self.spec.tuned(p.params).model_dump(mode="json")}
            key, parts = self._key(params)
            hit = None if getattr(self.ctx, "force", False) else \
                self.ctx.metadata.cache_get(stage, key)
            if hit is None:
                todo.append(_Pending(p, params, key, parts))
                continue
            got = hit["outputs"]
            found[p.number] = Trial(p.number, p.params, got["metric"], got["seconds"],
                                    cached=True, error=got["error"], outputs=got["outputs"],
                                    reused_from=hit.get("run_id"))
        for pending, fitted in zip(todo, self._fit(todo), strict=True):
            self.ctx.metadata.cache_put(
                stage, pending.key,
                {"outputs": fitted.outputs, "metric": fitted.metric, "error": fitted.error,
                 "seconds": fitted.seconds, "parts": pending.parts},
                run_id=self.ctx.run_id, duration_s=fitted.seconds)
            p = pending.proposal
            found[p.number] = Trial(p.number, p.params, fitted.metric, fitted.seconds,
                                    cached=False, error=fitted.error, outputs=fitted.outputs)
        return [found[p.number] for p in batch]

    def _fit(self, todo: list[_Pending]) -> list[_Fitted]:
        if len(todo) < 2 or self.workers < 2:  # one fit: in this process, its own threads
            return [_evaluate(self.ctx, self.func, self.inputs, t.params) for t in todo]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, initializer=_one_thread_pools,
                mp_context=multiprocessing.get_context("forkserver"))
        futures = [self._pool.submit(_in_worker, self.ctx.artifacts, self.func, self.inputs,
                                     _one_thread(t.params)) for t in todo]
        return [f.result() for f in futures]


# -- the stage -----------------------------------------------------------------------
def _budget(spec: ModelSpec) -> int | None:
    """How many trials at most (None: until the time budget is spent): ``trials``; a
    grid's points when it has fewer. With a time budget alone, random and TPE on a
    finite space stop after as many trials as it has points (they would otherwise
    propose its points again and again, each a reused trial, until the time is up)."""
    search = spec.search
    assert search is not None
    if search.method == "grid":
        size = search.grid_size()
        return size if search.trials is None else min(search.trials, size)
    if search.trials is None and search.finite():
        return search.grid_size()
    return search.trials


def _record(ctx: Any, spec: ModelSpec, method: str, metric: str, trial: Trial) -> None:
    """The trial as a finished child run of the pipeline's run."""
    ctx.metadata.record_child_run(
        ctx.run_id, project=ctx.cfg.project, status=trial.status,
        duration_s=0.0 if trial.cached else trial.seconds, error=trial.error,
        params={"candidate": spec.name, "type": spec.type, "method": method,
                "trial": trial.number, "params": trial.params},
        metrics={} if trial.metric is None else {f"validation.{metric}": trial.metric},
        summary={"trial": trial.number, "candidate": spec.name, "cached": trial.cached,
                 "reused_from": trial.reused_from, "seconds": round(trial.seconds, 3)})


def search_candidate(ctx: Any, inputs: dict[str, Any], params: dict[str, Any],
                     ) -> dict[str, Any]:
    """Run the candidate's search; its outputs are the best trial's (``report``,
    ``metric``, a classifier's ``threshold``) with its recipe (``spec``) and every trial.

    ``params``: ``candidate`` (what ``validate`` takes: the spec with its search, seed,
    evaluation...), ``validate`` (``"module:function"`` of one fit-and-score),
    ``higher`` (the metric is higher-is-better) and ``metric`` (its name).
    """
    spec = ModelSpec(**params["candidate"]["spec"])
    search = spec.search
    assert search is not None, "a searched candidate's stage"
    higher = bool(params["higher"])
    sampler = make_sampler(search, seed=params["candidate"]["seed"], higher=higher)
    budget = _budget(spec)
    t0 = time.perf_counter()
    deadline = None if search.time_budget_s is None else t0 + search.time_budget_s
    trials: list[Trial] = []
    with _TrialRunner(ctx, inputs, params, search.workers) as runner:
        while budget is None or len(trials) < budget:
            if deadline is not None and time.perf_counter() >= deadline:
                break
            n = search.workers if budget is None else \
                min(search.workers, budget - len(trials))
            batch = sampler.ask(n)
            if not batch:
                break
            for trial in runner.run(batch):
                sampler.tell(trial.number, trial.metric)
                _record(ctx, spec, search.method, params["metric"], trial)
                trials.append(trial)
    ok = [t for t in trials if t.metric is not None]
    fitted = [t for t in trials if not t.cached]
    summary = {"method": search.method, "trials": len(trials), "fitted": len(fitted),
               "reused": len(trials) - len(fitted), "failed": len(trials) - len(ok),
               "best_trial": None, "best_params": {}, "workers": search.workers,
               "seconds": round(time.perf_counter() - t0, 3)}
    if not ok:  # the candidate fails alone, as a candidate that cannot be fitted does
        first = trials[0].error if trials else "no trial ran"
        return {"report": None, "metric": None, "spec": None,
                "error": f"every one of its {len(trials)} search trials failed; the "
                         f"first: {first}",
                "trials": [t.to_dict() for t in trials], "search": summary}
    sign = -1.0 if higher else 1.0
    best = min(ok, key=lambda t: (sign * float(t.metric or 0.0), t.number))
    summary.update(best_trial=best.number, best_params=best.params)
    return {**best.outputs, "spec": spec.tuned(best.params).model_dump(mode="json"),
            "trials": [t.to_dict() for t in trials], "search": summary}
