"""Helpers of ``benchmarks/monitoring_vs_peers.py`` (not part of the cd4ml package).

``frames`` writes the benchmark's frames to Parquet once; ``venvs`` creates the peers'
venvs; ``peer_cd4ml``, ``peer_evidently`` and ``peer_nannyml`` are scripts, each run in its
tool's own venv on one case (sharing ``_peer``: loading, the meter, the answer line), and
never imported here; ``scipy_check`` recomputes the scores with SciPy; ``report`` prints the
tables and the goals.
"""
