"""Experiment configuration: typed schema and YAML loading with dotted overrides."""

from polytask.config.loader import apply_overrides, dump_config, load_config, parse_config
from polytask.config.schema import (
    DataConfig,
    EncoderConfig,
    ExperimentConfig,
    TaskConfig,
    TrainConfig,
)

__all__ = [
    "DataConfig",
    "EncoderConfig",
    "ExperimentConfig",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "dump_config",
    "load_config",
    "parse_config",
]
