"""``bilstm``: word embeddings -> bidirectional LSTM -> pooled sentence vector.

The classic pre-transformer text encoder (Hochreiter & Schmidhuber 1997, "Long Short-Term
Memory"; Graves & Schmidhuber 2005 for the bidirectional form). Max pooling over the states is
the default, after Conneau et al. 2017 ("Supervised Learning of Universal Sentence
Representations from Natural Language Inference Data", EMNLP; InferSent), who found it the best
of mean, max and last-state pooling. Padding never reaches a state a real token sees, so a sentence
encodes the same alone or in a padded batch.

Why not ``pack_padded_sequence``: on a CPU a packed LSTM runs a step-by-step loop whose backward
pass allocates a full-size zero tensor per time step (``SliceBackward``), about 4x slower than the
same LSTM on a padded batch, which runs as one oneDNN kernel per direction. So each layer runs
two single-direction LSTMs over padded batches: the forward one over the right-padded inputs (its
states at padded positions are never read), the backward one over each row reversed within its
own length (``_reverse``), its outputs put back in order. The weights are ``nn.LSTM``'s own
(``weight_ih_l0_reverse`` and so on), so earlier checkpoints load unchanged.

Pooling (``encoder.pooling``): ``max`` (default) or ``mean`` over the real tokens' states, or
``cls``: the final states of both directions, i.e. the forward LSTM after the last token
concatenated with the backward LSTM after the first (the classic "last hidden state").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from polytask.encoders._word_common import WordEncoder, WordEncoderOptions, masked_max
from polytask.encoders.base import ENCODERS, EncoderOutput, mean_pool


@dataclass
class BiLSTMOptions(WordEncoderOptions):
    """``bilstm`` options: the shared word-encoder options (see ``WordEncoderOptions``) and

    Args:
        hidden_size: LSTM units per direction; the encoder's output size is twice this.
        num_layers: stacked bidirectional layers.
        layer_dropout: dropout between stacked layers while training (needs num_layers > 1).
    """

    hidden_size: int = 128
    num_layers: int = 1
    layer_dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_size < 1:
            raise ValueError(f"option 'hidden_size' must be at least 1; got {self.hidden_size}")
        if self.num_layers < 1:
            raise ValueError(f"option 'num_layers' must be at least 1; got {self.num_layers}")
        if not 0.0 <= self.layer_dropout < 1.0:
            raise ValueError(f"option 'layer_dropout' must be in [0, 1); got {self.layer_dropout}")


@ENCODERS.register("bilstm")
class BiLSTMEncoder(WordEncoder):
    """Embedding -> packed bidirectional LSTM; token states (B, T, 2 * hidden_size)."""

    options_class = BiLSTMOptions
    poolings = ("max", "mean", "cls")

    def _build_network(self, embedding_dim: int) -> int:
        o: BiLSTMOptions = self.options
        self.lstm = nn.LSTM(
            embedding_dim, o.hidden_size, num_layers=o.num_layers, bidirectional=True,
            batch_first=True, dropout=o.layer_dropout if o.num_layers > 1 else 0.0,
        )
        return 2 * o.hidden_size

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, T), right-padded
        token_type_ids: torch.Tensor | None = None,  # (B, T), unused: [SEP] marks the pair's border
    ) -> EncoderOutput:
        x = self.embed(input_ids, attention_mask)  # (B, T, D)
        lengths = attention_mask.sum(1).clamp(min=1)  # (B,); an empty row still gets one step
        order = _reverse_index(lengths, x.shape[1])  # (B, T)
        keep = attention_mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        o: BiLSTMOptions = self.options
        finals: tuple[torch.Tensor, torch.Tensor] = (x, x)
        # with keep_layers (a head reads a lower layer: tasks[].from_layer) every layer's states
        # are kept; index 0 is the embeddings (D wide, not 2h: no head can read them)
        layers: list[torch.Tensor] | None = [x] if self.keep_layers else None
        for layer in range(o.num_layers):
            if layer > 0 and o.layer_dropout > 0:
                x = nn.functional.dropout(x, o.layer_dropout, self.training)
            fwd = self._direction(x, layer, "")  # (B, T, h)
            bwd = _reverse(self._direction(_reverse(x, order), layer, "_reverse"), order)  # (B, T, h)
            x = torch.cat([fwd, bwd], dim=-1) * keep  # (B, T, 2h), zeros at padding
            finals = (fwd, bwd)
            if layers is not None:
                layers.append(x)
        states = x
        if self.pooling == "max":
            pooled = masked_max(states, attention_mask)
        elif self.pooling == "mean":
            pooled = mean_pool(states, attention_mask)
        else:  # cls: last layer's final forward and backward states
            last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, finals[0].shape[-1])  # (B, 1, h)
            pooled = torch.cat([finals[0].gather(1, last)[:, 0], finals[1][:, 0]], dim=-1)  # (B, 2h)
        return EncoderOutput(token_states=states, mask=attention_mask, pooled=pooled, layers=layers)

    def _direction(self, x: torch.Tensor, layer: int, suffix: str) -> torch.Tensor:
        """One direction of one layer over a padded batch, left to right. (B, T, I) -> (B, T, h)."""
        lstm = self.lstm
        weights = [getattr(lstm, f"{n}_l{layer}{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)  # (1, B, h): h_0 = c_0 = 0, as nn.LSTM
        out, _h, _c = torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, self.training, False, True)
        return out

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """[embeddings, LSTM layer 0 (both directions), ..., LSTM layer N-1]."""
        groups: list[list[nn.Parameter]] = [[self.embedding.weight]]
        groups += [[] for _ in range(self.options.num_layers)]
        for name, p in self.lstm.named_parameters():  # weight_ih_l0, bias_hh_l1_reverse, ...
            layer = int(re.search(r"_l(\d+)", name).group(1))  # type: ignore[union-attr]
            groups[1 + layer].append(p)
        return groups


def _reverse_index(lengths: torch.Tensor, total: int) -> torch.Tensor:
    """Positions that reverse each row within its length, padding left in place. (B,) -> (B, T).

    Row b reads ``[len_b - 1, ..., 1, 0, len_b, ..., T - 1]``; the map is its own inverse.
    """
    pos = torch.arange(total, device=lengths.device).unsqueeze(0)  # (1, T)
    n = lengths.unsqueeze(1)  # (B, 1)
    return torch.where(pos < n, n - 1 - pos, pos)  # (B, T)


def _reverse(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x`` with each row reversed within its length (``_reverse_index``). (B, T, H) -> (B, T, H)."""
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
