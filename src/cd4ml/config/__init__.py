"""The project config, ``cd4ml.yaml``, as typed pydantic models.

A wrong key or type fails with the file, the key path, the bad value and what is
allowed; ``--set key.path=value`` overrides any key before validation. The sections live
in ``sections`` (training), ``serving`` (stores, the log, the server), ``monitoring``
and ``rollout`` (the rollout controller);
``project`` checks them together and ``loading`` reads the file.

>>> from cd4ml.errors import ConfigError
>>> raw = {"project": "p", "data": {"sources": {"s": {"path": "s.csv"}}, "main": "s",
...        "target": "y", "time": "t", "series": ["k"]}, "features": {"horizon": 0}}
>>> try:
...     validate_config(raw, file="cd4ml.yaml")
... except ConfigError as e:
...     print(e)
cd4ml.yaml: features.horizon = 0: Input should be greater than or equal to 1
"""

from __future__ import annotations

from cd4ml.config._strict import CONFIG_FILE
from cd4ml.config.loading import (apply_overrides, config_hash, load_config, parse_yaml,
                                  read_raw, validate_config)
from cd4ml.config.monitoring import (DRIFT_METHODS, DriftColumnConfig, DriftConfig,
                                     MonitoringConfig)
from cd4ml.config.project import ProjectConfig
from cd4ml.config.rollout import RolloutConfig
from cd4ml.config.sections import (DEFAULT_BASELINE, DEFAULT_METRIC, ColumnPolicy, DataConfig,
                                   EvaluationConfig, FeaturesConfig, GateConfig, GroupGapRule,
                                   InputsConfig, JoinConfig, LeakageConfig, ModelsConfig,
                                   ModelSpec, RegistryConfig, SourceConfig, SplitConfig,
                                   TaskKind, ValidationConfig)
from cd4ml.config.search import SearchConfig, SearchDimension
from cd4ml.config.serving import PredictionLogConfig, ServingConfig, StoreConfig

__all__ = [
    "ProjectConfig", "load_config", "validate_config", "apply_overrides", "config_hash",
    "parse_yaml", "read_raw", "CONFIG_FILE", "DEFAULT_BASELINE", "DEFAULT_METRIC",
    "SourceConfig", "JoinConfig", "DataConfig", "FeaturesConfig", "ColumnPolicy",
    "InputsConfig", "ModelSpec", "ModelsConfig", "ValidationConfig", "SplitConfig",
    "EvaluationConfig", "LeakageConfig", "GroupGapRule", "GateConfig", "RegistryConfig",
    "StoreConfig",
    "PredictionLogConfig", "ServingConfig", "MonitoringConfig", "DriftConfig",
    "DriftColumnConfig", "DRIFT_METHODS", "TaskKind", "RolloutConfig",
    "SearchConfig", "SearchDimension",
]
