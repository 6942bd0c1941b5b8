"""``cnn``: word embeddings -> parallel convolutions of several widths -> max over time.

Kim 2014, "Convolutional Neural Networks for Sentence Classification" (EMNLP): filters of widths
3, 4 and 5 (100 each) with ReLU over the word vectors, each filter max-pooled over the sentence,
the results concatenated. Here the convolutions are "same"-padded so every token keeps a state
(B, T, len(kernel_sizes) * num_filters) usable by token classification; padding is zeroed before
convolving, which is exactly what the convolution's own zero padding gives an unpadded sentence,
so batching never changes a sentence's outputs.

Pooling (``encoder.pooling``): ``max`` (default, Kim's max-over-time) or ``mean`` over the real
tokens. ``cls`` is refused: a CNN has no sentence token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from polytask.encoders._word_common import WordEncoder, WordEncoderOptions, masked_max
from polytask.encoders.base import ENCODERS, EncoderOutput, mean_pool


@dataclass
class CNNOptions(WordEncoderOptions):
    """``cnn`` options: the shared word-encoder options (see ``WordEncoderOptions``) and

    Args:
        kernel_sizes: the filter widths in tokens, one convolution each.
        num_filters: filters per width; the encoder's output size is
            ``len(kernel_sizes) * num_filters``.
    """

    kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    num_filters: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        ks = self.kernel_sizes
        if (not isinstance(ks, list) or not ks
                or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks)):
            raise ValueError(f"option 'kernel_sizes' must be a non-empty list of widths of at least 1, e.g. [3, 4, 5]; got {ks!r}")
        if self.num_filters < 1:
            raise ValueError(f"option 'num_filters' must be at least 1; got {self.num_filters}")


@ENCODERS.register("cnn")
class CNNEncoder(WordEncoder):
    """Embedding -> one same-padded Conv1d + ReLU per kernel width, concatenated."""

    options_class = CNNOptions
    poolings = ("max", "mean")

    def _build_network(self, embedding_dim: int) -> int:
        o: CNNOptions = self.options
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, o.num_filters, k) for k in o.kernel_sizes)
        return len(o.kernel_sizes) * o.num_filters

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, T)
        token_type_ids: torch.Tensor | None = None,  # (B, T), unused: [SEP] marks the pair's border
    ) -> EncoderOutput:
        x = self.embed(input_ids, attention_mask).transpose(1, 2)  # (B, D, T)
        # Every width in one convolution: each filter bank is zero-padded to the widest kernel,
        # placed so that its "same" padding (the extra column of an even width on the right) is
        # kept, and the banks are stacked. One oneDNN call instead of one per width; the result
        # is the per-width convolutions' exactly (the zeros add nothing).
        widest = max(conv.kernel_size[0] for conv in self.convs)
        weights, biases = [], []
        for conv in self.convs:
            k = conv.kernel_size[0]
            left = (widest - 1) // 2 - (k - 1) // 2
            weights.append(F.pad(conv.weight, (left, widest - k - left)))  # (F, D, widest)
            biases.append(conv.bias)
        padded = F.pad(x, ((widest - 1) // 2, widest // 2))  # (B, D, T + widest - 1)
        states = F.relu(F.conv1d(padded, torch.cat(weights), torch.cat(biases))).transpose(1, 2)  # (B, T, K * F)
        states = states * attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = masked_max(states, attention_mask) if self.pooling == "max" else mean_pool(states, attention_mask)
        return EncoderOutput(token_states=states, mask=attention_mask, pooled=pooled)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """[embeddings, the convolutions]."""
        return [[self.embedding.weight], list(self.convs.parameters())]
