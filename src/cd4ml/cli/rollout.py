"""``cd4ml deploy``, ``cd4ml rollout …`` and ``cd4ml rollback``: a project's deployments,
changed in the metadata store directly (compare-and-set on their revision, audited).

Who changed it is ``$CD4ML_ACTOR``, else the OS user. A refusal (bad shares or steps, a
version that does not exist or failed its gate, a deployment changed meanwhile, nothing
to roll back) is one line on stderr and exit 1, the deployment unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cd4ml.cli.common import (HELP_MARKUP, STDERR_FD, Json, Project, Sets, emit_json,
                              project_stores)
from cd4ml.errors import ConfigError

if TYPE_CHECKING:
    from cd4ml.serving.deployment import DeploymentState

__all__ = ["register", "rollout_app", "start_controller"]

rollout_app = typer.Typer(help="A deployment's rollout: status, promote, pause, abort, "
                               "candidate, shadow, controller.", no_args_is_help=True,
                          rich_markup_mode=HELP_MARKUP)

Reason = Annotated[str | None, typer.Option("--reason", help="why (kept in the audit log)")]


def _steps(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError("expected shares separated by commas, e.g. 0.05,0.25,0.5,1",
                          key="--steps", value=text) from None


def _doc(state: DeploymentState) -> dict[str, Any]:
    return {**state.to_dict(), "stored": not state.extra.get("default"),
            "shares": state.shares()}


def _line(state: DeploymentState) -> str:
    stored = "" if not state.extra.get("default") else ", default: serving.alias"
    return (f"{state.name} (revision {state.revision}, {state.model}@{state.alias}, "
            f"{state.automation}{stored}): {state.describe()}")


def _done(state: DeploymentState, json_: bool = False) -> None:
    """What a change answers: the deployment's line, or with ``--json`` its state."""
    if json_:
        emit_json(_doc(state))
    else:
        sys.stdout.write(_line(state) + "\n")


def deploy(name: str,
           alias: Annotated[str | None, typer.Option(
               "--alias", help="the registry alias it tracks (default serving.alias)")] = None,
           strategy: Annotated[str, typer.Option(
               "--strategy", help="single | shadow | canary | ab | bandit | bluegreen")
           ] = "single",
           steps: Annotated[str | None, typer.Option(
               "--steps", help="canary shares, e.g. 0.05,0.25,0.5,1")] = None,
           split: Annotated[float | None, typer.Option(
               "--split", help="an A/B or bandit candidate's first share")] = None,
           automation: Annotated[str | None, typer.Option(
               "--automation", help="manual | assisted | automatic")] = None,
           key: Annotated[str | None, typer.Option(
               "--key", help="the request field the split is sticky by (e.g. Store); "
                             "'' for none (by request id)")] = None,
           fallback: Annotated[str | None, typer.Option(
               "--fallback", help="a request without the key: request_id | refuse | "
                                  "arm:stable")] = None,
           reason: Reason = None, project: Project = Path("."), set_: Sets = None,
           json_: Json = False) -> None:
    """Create deployment NAME tracking an alias, or change its strategy."""
    from cd4ml.rollout import manage

    with project_stores(project, set_) as (cfg, stores):
        _done(manage.deploy(stores, cfg, name, alias=alias, strategy=strategy,
                            automation=automation, steps=_steps(steps), split=split,
                            key=key, fallback=fallback, reason=reason), json_)


@rollout_app.command("status")
def status(name: Annotated[str | None, typer.Argument()] = None, json_: Json = False,
           project: Project = Path("."), set_: Sets = None) -> None:
    """Each deployment (or NAME): versions, roles, shares, status and revision."""
    from cd4ml.rollout import manage

    with project_stores(project, set_) as (cfg, stores):
        found = [manage.effective_deployment(stores, cfg, name)] if name is not None \
            else manage.deployments(stores, cfg)
        history = {d.name: stores.metadata.deployment_history(d.name) for d in found}
        decided = {d.name: _controller_events(stores, d) for d in found}
    if json_:
        docs = [{**_doc(d), "history": history[d.name], "controller": decided[d.name]}
                for d in found]
        emit_json(docs[0] if name is not None else docs)
        return
    for d in found:
        _done(d)
        for kind, e in decided[d.name].items():
            sys.stdout.write(f"  {kind} (revision {e['revision']}, {e['at']:%Y-%m-%d %H:%M:%S}"
                             f" UTC, {e['actor']}): {e['reason']}\n")


def _controller_events(stores: Any, state: DeploymentState) -> dict[str, Any]:
    """The rollout controller's latest analysis, A/B comparison and bandit shares of
    ``state``'s rollout (:func:`cd4ml.rollout.events.latest`), by kind."""
    from cd4ml.rollout.events import latest

    if state.extra.get("default"):
        return {}
    return {k: {"at": e["at"], "actor": e["actor"], "reason": e["reason"],
                "revision": (e["detail"] or {}).get("revision"), "detail": e["detail"]}
            for k, e in latest(stores, state.name).items()}


def _step(action: str) -> Any:
    def command(name: str, reason: Reason = None, project: Project = Path("."),
                set_: Sets = None, json_: Json = False) -> None:
        from cd4ml.rollout import manage

        with project_stores(project, set_) as (cfg, stores):
            _done(manage.step(stores, cfg, name, action, reason=reason), json_)

    command.__doc__ = {"promote": "One step forward: the next canary step, the switch, or "
                                  "the finish.",
                       "pause": "Hold the rollout where it is.",
                       "abort": "Stop the rollout: the stable version alone serves."}[action]
    return command


for _action in ("promote", "pause", "abort"):
    rollout_app.command(_action)(_step(_action))


@rollout_app.command("candidate")
def candidate(name: str, version: int, reason: Reason = None,
              project: Project = Path("."), set_: Sets = None, json_: Json = False) -> None:
    """Start NAME's strategy with VERSION as candidate (what an alias move does)."""
    from cd4ml.rollout import manage

    with project_stores(project, set_) as (cfg, stores):
        _done(manage.offer_candidate(stores, cfg, name, version, reason=reason), json_)


@rollout_app.command("shadow")
def shadow(name: str,
           version: Annotated[int | None, typer.Option(
               "--version", help="the shadow version (default: the deployment's shadow)")
           ] = None,
           since: Annotated[str | None, typer.Option(
               "--since", help="a duration back from now (7d, 12h) or a time")] = None,
           json_: Json = False, project: Project = Path("."), set_: Sets = None) -> None:
    """NAME's shadow paired with the live answers per request: agreement, and which
    is right more often once labels came."""
    from cd4ml.pipeline.monitor_shadow import shadow_report
    from cd4ml.predlog import parse_time
    from cd4ml.rollout import manage

    with project_stores(project, set_) as (cfg, stores):
        state = manage.effective_deployment(stores, cfg, name)
    if version is None:
        version = next((a.version for a in state.arms if a.role == "shadow"), None)
        if version is None:
            raise ConfigError(f"deployment {name!r} has no shadow now; name one with "
                              f"--version", key="--version", value=None)
    doc = shadow_report(cfg.serving.log.folder_in(project.resolve()), model=state.model,
                        shadow_version=version,
                        since=None if since is None else parse_time(since))
    if json_:
        emit_json(doc)
        return
    lines = [f"shadow v{version} of {name}: {doc['pairs']} answers paired with the live "
             f"ones ({doc['unpaired']} unpaired)"]
    agree = doc.get("agreement")
    if isinstance(agree, float):
        lines.append(f"  same label: {agree:.1%}")
    elif agree:
        lines.append(f"  mean |live - shadow| {agree['mean_abs_difference']:.4g}, "
                     f"within 1 %: {agree['within_1_percent']:.1%}")
    q = doc.get("quality")
    if q:
        lines.append("  on " + f"{doc['labelled']} labelled: " + ", ".join(
            f"{k} {v:.4g}" for k, v in q.items() if isinstance(v, float)))
    if doc.get("note"):
        lines.append(f"  {doc['note']}")
    sys.stdout.write("\n".join(lines) + "\n")


def rollback(name: str,
             to: Annotated[int | None, typer.Option(
                 "--to", help="the revision to restore (default: the previous one)")] = None,
             reason: Reason = None, project: Project = Path("."), set_: Sets = None,
             json_: Json = False) -> None:
    """Restore deployment NAME's previous revision (or --to N) as a new revision."""
    from cd4ml.rollout import manage

    with project_stores(project, set_) as (_, stores):
        _done(manage.rollback(stores, name, to, reason=reason), json_)


@rollout_app.command("controller")
def controller(project: Project = Path("."), set_: Sets = None,
               every: Annotated[float | None, typer.Option(
                   "--every", min=0.1, help="look every this many seconds until stopped "
                   "(default rollout.interval_s)")] = None,
               once: Annotated[bool, typer.Option(
                   "--once", help="one look, then exit (the lock held elsewhere: exit 1)")
               ] = False,
               metrics_url: Annotated[str | None, typer.Option(
                   "--metrics-url", help="the server's /metrics (default serving.host:"
                   "serving.port); 'none': judge without the server's counters")] = None,
               json_: Annotated[bool, typer.Option(
                   "--json", help="--once: its decisions as one JSON document; else, once "
                   "it holds the lock and made its first look, one JSON document saying "
                   "what runs (decisions after it: the log, on stderr)")] = False,
               parent: Annotated[int | None, typer.Option(
                   "--parent", hidden=True, help="stop when this pid is no longer the "
                   "parent")] = None) -> None:
    """The rollout controller: canary steps analysed and decided, a bandit's split
    adapted, an A/B test compared, by each deployment's automation; one per project."""
    import os

    from cd4ml.config import load_config
    from cd4ml.rollout import watch

    cfg, _ = load_config(project.resolve(), set_)  # a bad --set: one line, exit 1
    url = None if (metrics_url or "").lower() == "none" else \
        metrics_url or watch.metrics_url(cfg)
    scrape = watch.scraper(url) if url else None

    if once:
        entries = watch.run_once(project, set_, metrics=scrape)
        if json_:
            emit_json(entries)
            return
        for e in entries:
            sys.stdout.write(f"{e['deployment']} (revision {e['revision']}, {e['strategy']}, "
                             f"{e['automation']}): {e['action']}: {e.get('reason', '')}\n")
        return
    every_s = every or cfg.rollout.interval_s or 30.0
    announced = False

    def announce(entries: list[dict[str, Any]]) -> None:
        """The first tick: --json's one document (what runs, and what it decided)."""
        nonlocal announced
        if not announced:
            announced = True
            emit_json({"command": "rollout controller", "project": str(project.resolve()),
                       "every_s": every_s, "metrics_url": url, "pid": os.getpid(),
                       "tick": entries})

    watch.watch(project, set_, every=every_s, metrics=scrape, parent=parent,
                on_tick=announce if json_ else None)


def start_controller(project: Path, set_: list[str] | None, port: int | None,
                     host: str | None) -> Any:
    """``cd4ml rollout controller --every rollout.interval_s`` beside ``cd4ml serve`` (a
    process of its own, scraping the server's /metrics, stopping with it; one per
    project, by its lock); None when ``rollout.interval_s`` is 0."""
    import os
    import subprocess

    from cd4ml.config import load_config
    from cd4ml.rollout.watch import metrics_url

    cfg, _ = load_config(project.resolve(), set_)
    if not cfg.rollout.interval_s:
        return None
    args = [sys.executable, "-m", "cd4ml.cli", "rollout", "controller", "-p",
            str(project.resolve()), "--every", str(cfg.rollout.interval_s), "--metrics-url",
            metrics_url(cfg, port, host), "--parent", str(os.getpid())]
    for s_ in set_ or []:
        args += ["--set", s_]
    return subprocess.Popen(args, stdout=STDERR_FD)


def register(app: typer.Typer) -> None:
    """Add ``deploy``, ``rollout …`` and ``rollback`` to the ``cd4ml`` app."""
    app.command("deploy")(deploy)
    app.add_typer(rollout_app, name="rollout")
    app.command("rollback")(rollback)
