"""cd4ml's registered model as an MLflow pyfunc ("model from code"; runs in the MLflow venv).

``load_context`` loads the same registered version with cd4ml's own loader (hash
verified, features of every servable (series, week) precomputed, and the version's
forecast table when ``model_config["forecast_table"]`` is true, as cd4ml's server uses
it); ``predict`` turns the request DataFrame into records and calls
``ServableModel.predict_records``: the same lookup and predict call as cd4ml's server. What differs is MLflow's own request handling
(JSON to pandas, schema enforcement) and the DataFrame round trip.

Saved by ``benchmarks/serving_vs_mlflow.py`` with ``mlflow.pyfunc.save_model(path,
python_model=<this file>, model_config={"project_dir", "model_uri", "digest", "forecast_table"})``.
"""

from __future__ import annotations

import mlflow
from mlflow.models import set_model


class Cd4mlForecast(mlflow.pyfunc.PythonModel):
    def load_context(self, context):  # type: ignore[no-untyped-def]
        from cd4ml.registry.loader import load_model

        cfg = context.model_config
        self.servable = load_model(cfg["model_uri"], project_dir=cfg["project_dir"],
                                   forecast_table=cfg.get("forecast_table", True))
        if cfg.get("digest") and self.servable.digest != cfg["digest"]:
            raise RuntimeError(f"{cfg['model_uri']} has digest {self.servable.digest}, "
                               f"expected {cfg['digest']}: re-export the MLflow model")

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return self.servable.predict_records(model_input.to_dict("records"))


set_model(Cd4mlForecast())
