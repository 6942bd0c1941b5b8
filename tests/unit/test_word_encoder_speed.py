"""The fast word encoders compute what the reference computations do: the BiLSTM (two oneDNN
single-direction passes over padded batches) against ``nn.LSTM`` over packed sequences, the CNN
(one convolution for every kernel width) against one ``Conv1d`` per width."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from polytask.config.schema import EncoderConfig
from polytask.encoders import build_encoder
from polytask.encoders._word_common import masked_max

TEXTS = ["a good film", "a bad film , really bad", "great acting and a fine plot", "dull", "x y z w v u t s"]


def _inputs(lengths: list[int], vocab: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    total = max(lengths)
    ids = torch.randint(5, vocab, (len(lengths), total), generator=g)
    mask = (torch.arange(total).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).long()  # right-padded
    return ids * mask, mask


def _packed_reference(enc, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """The earlier forward pass: nn.LSTM over packed sequences; (states, [h_fwd, h_bwd])."""
    x = enc.embed(ids, mask)
    lengths = mask.sum(1).clamp(min=1)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (h_n, _) = enc.lstm(packed)
    states, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
    return states, torch.cat([h_n[-2], h_n[-1]], dim=-1)


@pytest.mark.parametrize("layers", [1, 2])
def test_bilstm_matches_the_packed_lstm_states_and_gradients(layers: int) -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig(type="bilstm", pooling="cls",
                        options={"embedding_dim": 12, "hidden_size": 8, "num_layers": layers})
    enc = build_encoder(cfg, texts=lambda: TEXTS).eval()
    ids, mask = _inputs([7, 3, 1, 5], len(enc.tokenizer))
    out = enc(ids, mask)
    ref_states, ref_last = _packed_reference(enc, ids, mask)
    assert torch.allclose(out.token_states, ref_states, atol=1e-6)
    assert torch.count_nonzero(out.token_states[1, 3:]) == 0  # padding's states are zeros
    assert torch.allclose(out.pooled, ref_last, atol=1e-6)  # cls: forward after the last token, backward after the first
    assert torch.allclose(masked_max(out.token_states, mask), masked_max(ref_states, mask), atol=1e-6)
    # The gradients of every LSTM weight (both directions) agree as well.
    (out.token_states.square().sum() + out.pooled.sum()).backward()
    new = {n: p.grad.clone() for n, p in enc.lstm.named_parameters()}
    enc.zero_grad()
    (ref_states.square().sum() + ref_last.sum()).backward()
    for n, p in enc.lstm.named_parameters():
        assert torch.allclose(new[n], p.grad, atol=1e-5), n


def test_bilstm_layer_dropout_acts_only_in_training() -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig(type="bilstm", options={"embedding_dim": 12, "hidden_size": 8, "num_layers": 2,
                                                 "layer_dropout": 0.5})
    enc = build_encoder(cfg, texts=lambda: TEXTS)
    ids, mask = _inputs([6, 4], len(enc.tokenizer))
    enc.eval()
    a, b = enc(ids, mask).pooled, enc(ids, mask).pooled
    assert torch.equal(a, b)
    enc.train()
    assert not torch.allclose(enc(ids, mask).pooled, a)


@pytest.mark.parametrize("widths", [[3, 4, 5], [2, 5], [1]])
def test_cnn_one_convolution_equals_one_per_width(widths: list[int]) -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig(type="cnn", options={"embedding_dim": 12, "num_filters": 6, "kernel_sizes": widths})
    enc = build_encoder(cfg, texts=lambda: TEXTS).eval()
    ids, mask = _inputs([9, 4, 2], len(enc.tokenizer))
    out = enc(ids, mask)
    x = enc.embed(ids, mask).transpose(1, 2)  # (B, D, T)
    ref = torch.cat([F.relu(conv(F.pad(x, ((conv.kernel_size[0] - 1) // 2, conv.kernel_size[0] // 2))))
                     for conv in enc.convs], dim=1).transpose(1, 2) * mask.unsqueeze(-1)
    assert torch.allclose(out.token_states, ref, atol=1e-6)
    out.pooled.sum().backward()
    assert all(conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0 for conv in enc.convs)
