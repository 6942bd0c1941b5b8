"""Domain-adaptive masked-LM pretraining (``polytask pretrain``): see ``polytask.pretrain.mlm``."""

from polytask.pretrain.config import PretrainConfig, load_pretrain_config, parse_pretrain_config
from polytask.pretrain.corpus import read_corpus
from polytask.pretrain.mlm import PretrainResult, load_masked_lm, pretrain_mlm

__all__ = [
    "PretrainConfig",
    "PretrainResult",
    "load_masked_lm",
    "load_pretrain_config",
    "parse_pretrain_config",
    "pretrain_mlm",
    "read_corpus",
]
