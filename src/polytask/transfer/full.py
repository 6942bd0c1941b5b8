"""``full``: every parameter trains (the default; Devlin et al. 2019, BERT fine-tuning)."""

from __future__ import annotations

from dataclasses import dataclass

from polytask.transfer.base import STRATEGIES, Strategy


@dataclass
class FullConfig:
    """No options."""


@STRATEGIES.register("full")
class Full(Strategy):
    """Fine-tune the encoder and the heads together at the configured learning rates."""

    options_class = FullConfig
