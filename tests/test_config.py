"""cd4ml.yaml validation and --set overrides: file, key path, bad value, what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import EXAMPLE

from cd4ml.config import load_config
from cd4ml.errors import ConfigError


@pytest.fixture()
def proj(tmp_path: Path) -> Path:
    (tmp_path / "cd4ml.yaml").write_text((EXAMPLE / "cd4ml.yaml").read_text())
    return tmp_path


def test_example_config_is_valid(proj: Path) -> None:
    cfg, _ = load_config(proj)
    assert cfg.features.horizon == 39 and cfg.models.name == "walmart-weekly-sales"
    assert cfg.data.joins[0].on == ["Store"]  # YAML's `on:` stays a key, not True


@pytest.mark.parametrize("override, key, text", [
    (["features.horizon=-3"], "features.horizon", "greater than or equal to 1"),
    (["features.horizon=soon"], "features.horizon", "valid integer"),
    (["features.lags=[4]"], "features", "lag 4 < horizon 39"),
    (["gate.baseline=nope"], "(top level)", "gate.baseline = 'nope' is not a baseline"),
    (["serving.prot=80"], "serving.prot", "did you mean 'port'"),
    (["models.candidates.9.name=x"], "models.candidates.9", "out of range"),
])
def test_bad_values_name_file_key_and_allowed(proj: Path, override, key, text) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(proj, override)
    msg = str(exc.value)
    assert str(proj / "cd4ml.yaml") in msg
    assert key in msg and text in msg


def test_set_overrides_any_key(proj: Path) -> None:
    cfg, raw = load_config(proj, ["features.horizon=20", "features.lags=[20, 52]",
                                  "models.candidates.0.params.n_estimators=7",
                                  "store.metadata_url=sqlite:///x.db"])
    assert cfg.features.horizon == 20 and cfg.features.lags == [20, 52]
    assert cfg.models.candidates[0].params["n_estimators"] == 7
    assert cfg.store.metadata_url == "sqlite:///x.db"


def test_missing_empty_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no cd4ml.yaml here"):
        load_config(tmp_path)
    (tmp_path / "cd4ml.yaml").write_text("")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_config(tmp_path)
    (tmp_path / "cd4ml.yaml").write_text("project: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path)


def test_an_unexpected_error_in_a_command_surfaces_as_itself() -> None:
    """main()'s handler for click's usage errors must not fail on typer's vendored copy of
    click (which has no Abort) and hide the real error behind an AttributeError."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        from cd4ml import cli

        @cli.app.command("boom")
        def boom() -> None:
            raise RuntimeError("the real error")

        sys.argv = ["cd4ml", "boom"]
        cli.main()
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 1
    assert "RuntimeError: the real error" in res.stderr
    assert "AttributeError" not in res.stderr
