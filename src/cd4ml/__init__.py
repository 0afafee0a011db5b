"""cd4ml: continuous delivery for machine learning.

``import cd4ml`` stays light: heavy parts (LightGBM, scikit-learn, the web server) load
only when used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_model"]


def load_model(uri: str, *, project_dir: str = ".", forecast_table: bool = True) -> Any:
    """Load a registered model version by ``NAME@alias`` or ``NAME/VERSION``.

    The returned object has ``predict(frame)`` taking rows of the forecasting contract
    (series keys and date) and returning the frame with a ``prediction`` column. Answers
    come from the version's forecast table once it matched the live model on a sample at
    load; ``forecast_table=False`` runs the model on every call.
    """
    from cd4ml.registry.loader import load_model as _load

    return _load(uri, project_dir=project_dir, forecast_table=forecast_table)
