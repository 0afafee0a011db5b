"""``cd4ml ui``: the dashboard alone, under uvicorn (one process)."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["run_ui", "DEFAULT_PORT"]

#: ``cd4ml ui``'s port when ``--port`` is not given (the model server's default is 5005)
DEFAULT_PORT = 5050


def run_ui(project_dir: str | Path = ".", *, overrides: list[str] | None = None,
           host: str = "127.0.0.1", port: int = DEFAULT_PORT,
           metrics_url: str | None = None) -> None:
    """Serve the project's dashboard at ``http://host:port/``; with ``metrics_url`` (a
    model server's ``/metrics``), its software metrics on the monitoring pages."""
    import uvicorn

    from cd4ml.dashboard import create_dashboard, url_metrics
    from cd4ml.errors import ConfigError

    try:
        scrape = url_metrics(metrics_url) if metrics_url else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    app = create_dashboard(project_dir, overrides, metrics_text=scrape)
    sys.stderr.write(f"dashboard of {Path(project_dir).resolve()} at http://{host}:{port}/"
                     + (f", software metrics from {metrics_url}" if metrics_url else "")
                     + "\n")
    uvicorn.run(app, host=host, port=port, access_log=False, lifespan="off",
                log_level="warning")
