"""Helpers of ``benchmarks/serving_vs_mlflow.py`` (not part of the cd4ml package).

``wrk`` drives the load (Lua scripts generated per request body set), ``servers`` starts
and stops the two servers, ``floor`` times the in-process predict call, ``report`` prints
the table and the goals. ``mlflow_pyfunc`` is the MLflow "model from code" file: it runs
inside the MLflow venv only and is never imported here.
"""
