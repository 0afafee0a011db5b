"""The command line as one CLI: every command that reads a project takes ``-p``,
``--set`` and ``--json``; ``--json`` is one JSON document on stdout and nothing else; the
long-running commands say what started once it is ready; ``models`` and ``runs`` read in
80 columns; ``NO_COLOR`` leaves no ANSI escape; shell completion through the real
``cd4ml`` entry point. On the trained Walmart sample (``conftest.trained_project``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FAST, _free_port, cli_in_process, modules_after

import cd4ml
from cd4ml.cli import app

MODEL = "walmart-weekly-sales"
#: what every command that reads a project takes
EVERYWHERE = {"--project", "-p", "--set", "--json"}
#: commands that read no project, and the options they take instead
EXEMPT = {
    # writes an example's data into DEST: there is no project to read yet
    "example-data": set(),
    # makes the project DIR (cd4ml.cli.init): takes DIR and --json only
    "init": {"--json"},
}
CLI = [sys.executable, "-m", "cd4ml.cli"]
SETS = [x for s in FAST for x in ("--set", s)]


def _commands(group: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every command under ``group`` by its words (``rollout promote``); a group that
    runs by itself (``runs`` lists the runs) counts as a command too."""
    found = {}
    for name, cmd in group.commands.items():
        words = (*path, name)
        if hasattr(cmd, "commands"):
            if cmd.invoke_without_command:
                found[" ".join(words)] = cmd
            found.update(_commands(cmd, words))
        else:
            found[" ".join(words)] = cmd
    return found


def test_every_command_takes_project_set_and_json() -> None:
    import typer

    commands = _commands(typer.main.get_command(app))
    assert {"run", "models", "promote", "runs", "runs diff", "serve", "log export",
            "rollout controller", "rollback", "example-data"} <= set(commands)
    missing = {}
    for words, cmd in commands.items():
        opts = {o for p in cmd.params for o in p.opts}
        need = EXEMPT.get(words, EVERYWHERE)
        if not need <= opts:
            missing[words] = sorted(need - opts)
    assert not missing, f"commands without the options every command takes: {missing}"


def cli(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        *args: str) -> tuple[int, str, str]:
    """``cd4ml ARGS`` in this process: (exit code, stdout, stderr), both read at the file
    descriptors (what a library wrote there too)."""
    return cli_in_process(capfd, monkeypatch, *args)


def one_document(capfd: Any, monkeypatch: Any, *args: str) -> Any:
    """The one JSON document ``cd4ml ARGS --json`` prints (json.loads refuses anything
    else on stdout)."""
    code, out, err = cli(capfd, monkeypatch, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_json_is_one_document(trained_project: Path, capfd: Any, monkeypatch: Any,
                              tmp_path: Path) -> None:
    p = ["-p", str(trained_project)]
    assert one_document(capfd, monkeypatch, "run", *p, *SETS)["up_to_date"] is True
    assert {s["status"] for s in one_document(capfd, monkeypatch, "status", *p, *SETS)} \
        <= {"cached", "skipped"}
    assert set(one_document(capfd, monkeypatch, "validate", *p)) == {
        "sales", "features", "stores"}
    runs = one_document(capfd, monkeypatch, "runs", *p)
    diff = one_document(capfd, monkeypatch, "runs", "diff", runs[0]["id"], runs[0]["id"], *p)
    assert (diff["a"], diff["params"], diff["metrics"]) == (runs[0]["id"], {}, {})
    versions = one_document(capfd, monkeypatch, "models", *p)
    assert [(v["model_name"], v["version"]) for v in versions] == [(MODEL, 1)]
    moved = one_document(capfd, monkeypatch, "promote", MODEL, "1", "--alias", "json-test",
                         *p)
    assert moved == {"model": MODEL, "alias": "json-test", "version": 1, "previous": None,
                     "deployments": []}
    assert one_document(capfd, monkeypatch, "log", "status", *p)["lost_total"] == 0
    assert one_document(capfd, monkeypatch, "log", "query", *p) == []
    exported = one_document(capfd, monkeypatch, "log", "export", "-o",
                            str(tmp_path / "log.parquet"), *p)
    assert exported == {"predictions": 0, "output": str(tmp_path / "log.parquet")}
    assert one_document(capfd, monkeypatch, "monitor", *p)["version"] == 1
    status = one_document(capfd, monkeypatch, "rollout", "status", *p)
    assert [d["name"] for d in status] == [MODEL]

    model = cd4ml.load_model(f"{MODEL}@production", project_dir=str(trained_project))
    (tmp_path / "rows.csv").write_text(
        "store,dept,date\n" + "".join(f"{s},{d},{str(model.start.date())}\n"
                                      for s, d in sorted(model.series_index)[:3]))
    scored = one_document(capfd, monkeypatch, "predict", "-i", str(tmp_path / "rows.csv"),
                          "-o", str(tmp_path / "scored.parquet"), *p)
    assert scored["rows"] == 3


def _first_document(proc: subprocess.Popen[str]) -> Any:
    """The JSON document a long-running command prints once ready (indented: read up
    to its closing brace)."""
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if line == "}\n":
            return json.loads("".join(lines))
    raise AssertionError(f"exited {proc.wait()} before a document: {''.join(lines)!r}")


def test_long_running_commands_say_what_started(trained_project: Path) -> None:
    """serve, ui and the rollout controller with --json: one document once ready, then
    nothing more on stdout (their logs are on stderr)."""
    p = ["-p", str(trained_project)]
    port, ui_port = _free_port(), _free_port()
    procs = {
        "serve": [*CLI, "serve", *p, "--port", str(port), "--no-ui", "--json",
                  "--set", "rollout.interval_s=0", "--set", "serving.drain_s=0"],
        "ui": [*CLI, "ui", *p, "--port", str(ui_port), "--json"],
        "controller": [*CLI, "rollout", "controller", *p, "--every", "600",
                       "--metrics-url", "none", "--json"],
    }
    running = {k: subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True) for k, args in procs.items()}
    try:
        docs = {k: _first_document(proc) for k, proc in running.items()}
    finally:
        for proc in running.values():
            proc.terminate()
        rest = {k: proc.communicate(timeout=60)[0] for k, proc in running.items()}
    assert docs["serve"] == {
        "command": "serve", "url": f"http://127.0.0.1:{port}", "model": MODEL, "version": 1,
        "dashboard": None, "admin": f"http://127.0.0.1:{port}/admin", "workers": 1,
        "pid": running["serve"].pid}
    assert docs["ui"] == {"command": "ui", "url": f"http://127.0.0.1:{ui_port}/",
                          "project": str(trained_project.resolve()), "metrics_url": None,
                          "pid": running["ui"].pid}
    assert (docs["controller"]["command"], docs["controller"]["every_s"]) == \
        ("rollout controller", 600.0)
    assert [e["deployment"] for e in docs["controller"]["tick"]] == []  # none stored
    assert rest == {"serve": "", "ui": "", "controller": ""}


def _run(proj: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "-p", str(proj)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_models_and_runs_read_in_80_columns(trained_project: Path, capfd: Any,
                                            monkeypatch: Any) -> None:
    """Nothing cut: the model's name, every version, alias and run id appear whole."""
    p = ["-p", str(trained_project)]
    one_document(capfd, monkeypatch, "promote", MODEL, "1", "--alias",
                 "a-rather-long-alias-name", *p)
    versions = one_document(capfd, monkeypatch, "models", *p)
    runs = one_document(capfd, monkeypatch, "runs", *p)
    text = _run(trained_project, "models", COLUMNS="80")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == MODEL and lines[1].split()[:5] == [
        "version", "aliases", "recipe", "gate", "wmae"]  # the project's metric
    assert max(len(line) for line in lines) <= 80 and "…" not in text.stdout
    words = text.stdout.split()
    assert [line.split()[0] for line in lines[2:] if line[:1].isdigit()] == \
        [str(v["version"]) for v in versions]
    for v in versions:
        assert set(v["aliases"]) <= set(words) and v["run_id"] in words
    assert "a-rather-long-alias-name" in words

    text = _run(trained_project, "runs", COLUMNS="80")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:6] == ["run", "status", "started", "took", "selected", "wmae"]
    assert max(len(line) for line in lines) <= 80 and "…" not in text.stdout
    assert [line.split()[0] for line in lines[1:] if not line.startswith(" ")] == \
        [r["id"] for r in runs]
    started = str(runs[0]["started_at"])[:16]  # to the minute, on one line
    assert started in lines[1]


def test_the_prediction_log_reads_in_80_columns(trained_project: Path,
                                               tmp_path: Path) -> None:
    """log status and log query: segments, times, request ids and versions whole."""
    from conftest import start_server, stop_server

    proj = tmp_path / "p"
    shutil.copytree(trained_project, proj)
    proc, url = start_server(proj, "--no-ui")
    try:
        ids = [httpx.post(f"{url}/predict", json={"store": 1, "dept": d, "date": "2012-11-02"},
                          timeout=10).headers["x-request-id"] for d in (1, 3)]
        port = url.rsplit(":", 1)[1]  # a second server on the same port: one line
        taken = _run(proj, "serve", "--port", port)
        assert taken.returncode == 1 and taken.stdout == ""
        assert taken.stderr == (f"error: serving.port = {port}: 127.0.0.1:{port} is in use by "
                                f"another process; choose another --port (or --host)\n")
    finally:
        stop_server(proc)
    status = _run(proj, "log", "status", COLUMNS="80")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split()[:3] == ["segment", "requests", "predictions"]
    assert lines[-2] == f"in {(proj / '.cd4ml' / 'predictions').resolve()}"  # a path, whole
    assert max(len(line) for line in lines[:-2]) <= 80 and "…" not in status.stdout
    segment = lines[1].split()[0]
    assert (proj / ".cd4ml" / "predictions" / segment).is_file()
    query = _run(proj, "log", "query", COLUMNS="80")
    assert query.returncode == 0, query.stderr
    lines = query.stdout.splitlines()
    assert lines[0] == "2 request(s), newest first"
    assert max(len(line) for line in lines) <= 80
    assert set(ids) <= set(query.stdout.split())  # each id whole, on its row


def test_no_color_leaves_no_ansi_escape(trained_project: Path, tmp_path: Path) -> None:
    forced = {"FORCE_COLOR": "1", "TERM": "xterm-256color"}
    coloured = _run(trained_project, "models", **forced)
    assert "\x1b[" in coloured.stdout  # what the check below would catch
    for args in (["--help"], ["models"], ["run", *SETS], ["models", "--bad-option"]):
        res = _run(trained_project, *args, NO_COLOR="1", **forced)
        assert res.returncode in (0, 2), res.stderr
        assert "\x1b" not in res.stdout + res.stderr, args
    res = _run(tmp_path, "models", NO_COLOR="1", **forced)  # an error: one plain line
    assert res.returncode == 1 and res.stderr.startswith("error: ")
    assert "\x1b" not in res.stdout + res.stderr


def test_shell_completion_through_the_entry_point() -> None:
    exe = shutil.which("cd4ml", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the cd4ml entry point is not installed (pip install -e .)")
    env = {**os.environ, "_CD4ML_COMPLETE": "complete_bash", "COMP_WORDS": "cd4ml mo",
           "COMP_CWORD": "1"}
    res = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["models", "monitor"]
    env.update(COMP_WORDS="cd4ml runs diff --pro", COMP_CWORD="3")
    res = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=60)
    assert res.stdout.split() == ["--project"]
    # the script is for the shell cd4ml runs in (typer asks shellingham): here, bash (a
    # list of two commands, so that bash forks cd4ml rather than exec-ing it)
    res = subprocess.run(["bash", "-c", '"$0" --show-completion; exit $?', exe],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "_CD4ML_COMPLETE=complete_bash" in res.stdout
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--install-completion" in res.stdout
    assert all(c in res.stdout for c in ("models", "monitor", "rollout", "runs"))


def test_the_cli_imports_no_heavy_library() -> None:
    """--help and completion start quickly: commands import what they need when run."""
    tops = {m.split(".")[0] for m in modules_after("import cd4ml.cli")}
    assert tops & {"pandas", "numpy", "pyarrow", "sqlalchemy", "pydantic", "yaml", "lightgbm",
                   "sklearn", "fastapi", "uvicorn", "starlette", "httpx"} == set()
