"""Experiment configuration: typed schema and YAML loading with dotted overrides."""

from polytask.config.loader import apply_overrides, dump_config, load_config, parse_config
from polytask.config.schema import (
    DataConfig,
    EncoderConfig,
    ExperimentConfig,
    TaskConfig,
    TrainConfig,
    TransferConfig,
)

__all__ = [
    "DataConfig",
    "EncoderConfig",
    "ExperimentConfig",
    "TaskConfig",
    "TrainConfig",
    "TransferConfig",
    "apply_overrides",
    "dump_config",
    "load_config",
    "parse_config",
]
