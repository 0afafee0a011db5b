"""``--set`` reaches the stores every command opens: a project run with its metadata on
PostgreSQL (``--set store.metadata_url=…``) is listed, promoted, diffed, scored and
deployed with the same ``--set`` (``cd4ml.cli.main``, in process); without it, the
project's own (empty) SQLite store is read. Needs the server of ``store_fixtures.pg_url`` (skips
without it, unless ``CD4ML_REQUIRE_POSTGRES=1``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from store_fixtures import pg_schema
from tabular_projects import wine_project

from cd4ml.cli import main

pytestmark = pytest.mark.postgres


def test_set_reaches_the_stores_of_every_command(tmp_path: Path, capfd: Any,
                                                  monkeypatch: Any) -> None:
    def cd4ml(proj: Path, *args: str) -> Any:
        """``cd4ml ARGS -p PROJ --json``: its one JSON document."""
        monkeypatch.setattr(sys, "argv", ["cd4ml", *args, "-p", str(proj), "--json"])
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, capfd.readouterr().err
        return json.loads(capfd.readouterr().out)

    with pg_schema() as url:
        proj = wine_project(tmp_path / "wine")
        on_pg = ["--set", f"store.metadata_url={url}"]
        ran = cd4ml(proj, "run", *on_pg)
        assert ran["registered"]["version"] == 1

        assert cd4ml(proj, "models") == []  # the project's own SQLite store: nothing
        versions = cd4ml(proj, "models", *on_pg)
        assert [(v["model_name"], v["version"], v["aliases"]) for v in versions] == [
            ("wine", 1, ["production"])]
        moved = cd4ml(proj, "promote", "wine", "1", "--alias", "staging", *on_pg)
        assert (moved["version"], moved["previous"]) == (1, None)
        assert cd4ml(proj, "models", *on_pg)[0]["aliases"] == ["production", "staging"]

        runs = cd4ml(proj, "runs", *on_pg)
        assert [r["id"] for r in runs] == [ran["run_id"]]
        assert cd4ml(proj, "runs") == []
        diff = cd4ml(proj, "runs", "diff", ran["run_id"], ran["run_id"], *on_pg)
        assert (diff["a"], diff["b"], diff["params"]) == (ran["run_id"], ran["run_id"], {})
        diff = cd4ml(proj, "runs", *on_pg, "diff", ran["run_id"], ran["run_id"])  # via runs
        assert diff["a"] == ran["run_id"]

        rows = pd.read_parquet(proj / "data" / "wine.parquet").drop(columns="target")
        rows.head(5).to_csv(tmp_path / "rows.csv", index=False)
        scored = cd4ml(proj, "predict", "-i", str(tmp_path / "rows.csv"), "-o",
                       str(tmp_path / "scored.parquet"), *on_pg)
        assert scored["rows"] == 5

        deployed = cd4ml(proj, "deploy", "wine", "--reason", "pinned", *on_pg)
        assert (deployed["revision"], deployed["strategy"]) == (1, "single")
        assert cd4ml(proj, "rollout", "status", "wine", *on_pg)["revision"] == 1
