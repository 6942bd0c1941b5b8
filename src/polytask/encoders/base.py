"""Encoder family: text in, token states + mask + pooled vector out.

Dimension letters in shape comments: B batch, T tokens, H hidden size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polytask.registry import Registry


@dataclass
class EncoderOutput:
    token_states: torch.Tensor  # (B, T, H)
    mask: torch.Tensor  # (B, T), 1 for real tokens
    pooled: torch.Tensor  # (B, H)
    # Every layer's token states, bottom to top: [0] the embeddings, [k] after layer k; only
    # when the encoder was asked for them (``keep_layers``, for ``tasks[].from_layer``).
    layers: list[torch.Tensor] | None = None  # each (B, T, H)


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where ``mask`` is 1. (B, T, H), (B, T) -> (B, H)."""
    m = mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


class Encoder(nn.Module, ABC):
    """A shared text encoder.

    Subclasses set ``hidden_size`` and ``tokenizer`` (callable like a Hugging Face fast tokenizer:
    ``tokenizer(text, text_pair, truncation=True, max_length=n, is_split_into_words=...)``).
    """

    registry_name: str
    hidden_size: int
    tokenizer: Any
    # Set by the model when a task reads a lower layer; encoders that can (transformer,
    # stacked BiLSTM) then fill ``EncoderOutput.layers``.
    keep_layers: bool = False

    @abstractmethod
    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, T)
        token_type_ids: torch.Tensor | None = None,  # (B, T)
    ) -> EncoderOutput: ...

    @abstractmethod
    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters grouped bottom (embeddings) to top, for freezing and layer-wise LR."""

    @abstractmethod
    def save_files(self, directory: Path) -> None:
        """Write what rebuilds this encoder without its weights (architecture, tokenizer)."""

    @classmethod
    @abstractmethod
    def from_files(cls, directory: Path, **kwargs: Any) -> Encoder:
        """Rebuild from ``save_files`` output, weights left at their initial values."""


ENCODERS: Registry[Encoder] = Registry("encoder type")
