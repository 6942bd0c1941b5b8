"""``discriminative_lr``: layer-wise learning-rate decay; each lower layer group learns at the
rate of the group above times ``decay`` (Howard & Ruder 2018, ULMFiT "discriminative
fine-tuning"; Sun et al. 2019, "How to Fine-Tune BERT for Text Classification", layer-wise decay)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from polytask.config.schema import TrainConfig
from polytask.training.optim import decay_groups
from polytask.transfer.base import STRATEGIES, Strategy, encoder_groups, head_parameters


@dataclass
class DiscriminativeLrConfig:
    """Args:
    decay: factor between adjacent groups (0 < decay <= 1); the top group gets ``train.lr``,
        the embeddings ``lr * decay ** (n_groups - 1)``.
    """

    decay: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1]; got {self.decay}")


@STRATEGIES.register("discriminative_lr")
class DiscriminativeLr(Strategy):
    options_class = DiscriminativeLrConfig

    def param_groups(self, model: nn.Module, cfg: TrainConfig) -> list[dict]:
        groups = encoder_groups(model)
        n = len(groups)
        out: list[dict] = []
        for i, params in enumerate(groups):
            out.extend(decay_groups(params, cfg.weight_decay, cfg.lr * self.options.decay ** (n - 1 - i)))
        out.extend(decay_groups(head_parameters(model), cfg.weight_decay, cfg.head_lr or cfg.lr))
        return out
