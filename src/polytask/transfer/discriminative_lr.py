"""``discriminative_lr``: layer-wise learning-rate decay; each lower layer group learns at the
rate of the group above times ``decay`` (Howard & Ruder 2018, ULMFiT "discriminative
fine-tuning"; Sun et al. 2019, "How to Fine-Tune BERT for Text Classification", layer-wise decay)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from polytask.config.schema import TrainConfig
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


def split_decay(params: list[nn.Parameter], lr: float, weight_decay: float) -> list[dict]:
    """Two groups at one learning rate: matrices decayed, biases and norms (1-d) not."""
    out = []
    for decay, ps in ((True, [p for p in params if p.ndim > 1]), (False, [p for p in params if p.ndim <= 1])):
        if ps:
            out.append({"params": ps, "lr": lr, "weight_decay": weight_decay if decay else 0.0})
    return out


@STRATEGIES.register("discriminative_lr")
class DiscriminativeLr(Strategy):
    options_class = DiscriminativeLrConfig

    def param_groups(self, model: nn.Module, cfg: TrainConfig) -> list[dict]:
        groups = encoder_groups(model)
        n = len(groups)
        out: list[dict] = []
        for i, params in enumerate(groups):
            out.extend(split_decay(params, cfg.lr * self.options.decay ** (n - 1 - i), cfg.weight_decay))
        out.extend(split_decay(head_parameters(model), cfg.head_lr or cfg.lr, cfg.weight_decay))
        return out
