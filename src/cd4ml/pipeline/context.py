"""What a stage can reach: config, stores, the project folder and a per-run memo."""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cd4ml.config import ProjectConfig, config_hash

__all__ = ["RunContext", "git_state", "read_frame"]


def read_frame(artifacts: Any, digest: str) -> Any:
    """The data frame stored as Parquet under ``digest``."""
    import pandas as pd

    return pd.read_parquet(io.BytesIO(artifacts.get_bytes(digest)))


def git_state(path: Path) -> tuple[str | None, bool]:
    """(commit, dirty) of the git checkout holding ``path``; (None, False) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=path, capture_output=True, text=True, timeout=5,
                               check=True).stdout.strip() != ""
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return None, False


@dataclass
class RunContext:
    cfg: ProjectConfig
    project_dir: Path
    metadata: Any
    artifacts: Any
    raw_config: dict[str, Any] = field(default_factory=dict)
    _run_id: str | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    #: ``cd4ml run --force``: stages re-run, and a search refits its trials
    force: bool = False

    @property
    def run_id(self) -> str:
        """The tracked run, created when the first stage actually runs."""
        if self._run_id is None:
            commit, dirty = git_state(self.project_dir)
            self._run_id = self.metadata.create_run(
                project=self.cfg.project, params=self.cfg.model_dump(mode="json"),
                config_hash=config_hash(self.cfg), git_commit=commit, git_dirty=dirty)
        return self._run_id

    @property
    def has_run(self) -> bool:
        return self._run_id is not None

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.project_dir / p

    # -- artifacts with a per-run memo: stages often read the same frame ---------------
    def put_frame(self, df: Any) -> str:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False, compression="zstd")
        digest = self.artifacts.put_bytes(buf.getvalue())
        self.memo[digest] = df
        return digest

    def frame(self, digest: str) -> Any:
        if digest not in self.memo:
            self.memo[digest] = read_frame(self.artifacts, digest)
        return self.memo[digest]
