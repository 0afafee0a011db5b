"""The dashboard: runs, model versions and the monitoring of served models, as web pages.

Its own ASGI app (Starlette), made by :func:`create_dashboard`: ``cd4ml ui`` runs it
alone, ``cd4ml serve`` puts it at ``/ui`` beside the model server (the CLI composes the
two apps with :class:`~cd4ml.dashboard.compose.Beside`; serving never imports this
package). Pages are rendered on the server, charts are inline SVG
(:mod:`~cd4ml.dashboard.charts`), and the one stylesheet is shipped in ``assets/``:
nothing is fetched from elsewhere, so it works offline.

Pages (under the prefix): ``/`` overview · ``/runs``, ``/runs/{id}``,
``/runs/compare?a=&b=`` · ``/models``, ``/models/{name}/{version}`` · ``/audit`` ·
``/monitor/{name}/{alias or version}`` (traffic, latency, errors, refusals, drift,
predictions, quality, protected groups, alerts with the latest window's concept-drift
verdict, a forecast's series) and its ``/window?since=&until=`` report (with the
concept-drift verdict and where the model errs, per input).

It reads the metadata and artifact stores, the prediction log, and monitoring's results
(``cd4ml.pipeline.monitor_timeline.timeline``, ``cd4ml.pipeline.monitor.monitor``); the
server's software metrics come from its Prometheus text (``metrics_text``).
"""

from cd4ml.dashboard.app import create_dashboard
from cd4ml.dashboard.compose import Beside, asgi_metrics, url_metrics

__all__ = ["create_dashboard", "Beside", "asgi_metrics", "url_metrics"]
