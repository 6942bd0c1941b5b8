"""``bilstm``: word embeddings -> bidirectional LSTM -> pooled sentence vector.

The classic pre-transformer text encoder (Hochreiter & Schmidhuber 1997, "Long Short-Term
Memory"; Graves & Schmidhuber 2005 for the bidirectional form). Max pooling over the states is
the default, after Conneau et al. 2017 ("Supervised Learning of Universal Sentence
Representations from Natural Language Inference Data", EMNLP; InferSent), who found it the best
of mean, max and last-state pooling. Sequences are packed, so padding never reaches the LSTM and a
sentence encodes the same alone or in a padded batch.

Pooling (``encoder.pooling``): ``max`` (default) or ``mean`` over the real tokens' states, or
``cls``: the final states of both directions, i.e. the forward LSTM after the last token
concatenated with the backward LSTM after the first (the classic "last hidden state").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

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
        # pack_padded_sequence wants the lengths on the CPU; an empty row still gets one step.
        lengths = attention_mask.sum(1).clamp(min=1).cpu()  # (B,)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        layers = None
        if self.keep_layers:
            layers, h_n = self._layer_by_layer(packed, input_ids.shape[1])
            layers.insert(0, x)  # the embeddings (D wide, not 2h: no head can read them)
            states = layers[-1]
        else:
            out, (h_n, _c_n) = self.lstm(packed)  # h_n: (layers * 2, B, hidden), in input order
            states, _ = pad_packed_sequence(out, batch_first=True, total_length=input_ids.shape[1])  # (B, T, 2h)
        if self.pooling == "max":
            pooled = masked_max(states, attention_mask)
        elif self.pooling == "mean":
            pooled = mean_pool(states, attention_mask)
        else:  # cls: last layer's final forward and backward states
            pooled = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # (B, 2h)
        return EncoderOutput(token_states=states, mask=attention_mask, pooled=pooled, layers=layers)

    def _layer_by_layer(self, packed: Any, width: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The stacked LSTM run one layer at a time with its own weights (``nn.LSTM`` returns
        the top layer only): each layer's states (B, T, 2h), and h_n (layers * 2, B, hidden).
        Same computation as ``self.lstm``, dropout between layers included."""
        o: BiLSTMOptions = self.options
        one = nn.LSTM(self.lstm.input_size, o.hidden_size, bidirectional=True, batch_first=True)
        states, finals, inp = [], [], packed
        for k in range(o.num_layers):
            if k:
                one = nn.LSTM(2 * o.hidden_size, o.hidden_size, bidirectional=True, batch_first=True)
            params = {f"{n}_l0{sfx}": getattr(self.lstm, f"{n}_l{k}{sfx}")
                      for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") for sfx in ("", "_reverse")}
            out, (h_n, _c) = torch.func.functional_call(one.to(packed.data.device), params, (inp,))
            finals.append(h_n)
            padded, _ = pad_packed_sequence(out, batch_first=True, total_length=width)  # (B, T, 2h)
            states.append(padded)
            if k < o.num_layers - 1 and o.layer_dropout and self.training:
                out = out._replace(data=nn.functional.dropout(out.data, o.layer_dropout, True))
            inp = out
        return states, torch.cat(finals, 0)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """[embeddings, LSTM layer 0 (both directions), ..., LSTM layer N-1]."""
        groups: list[list[nn.Parameter]] = [[self.embedding.weight]]
        groups += [[] for _ in range(self.options.num_layers)]
        for name, p in self.lstm.named_parameters():  # weight_ih_l0, bias_hh_l1_reverse, ...
            layer = int(re.search(r"_l(\d+)", name).group(1))  # type: ignore[union-attr]
            groups[1 + layer].append(p)
        return groups
