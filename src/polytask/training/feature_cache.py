"""Encoder outputs of the training set computed once, for a frozen encoder (``freeze``).

With the encoder frozen and its dropout off, its output for an example never changes, so
running it every epoch is wasted work: the cache runs it once (in inference mode, length-sorted
batches) and the loop feeds the stored outputs to the heads. Sequence tasks keep one pooled
vector per example (H floats), token tasks every token's state (T x H floats).
"""

from __future__ import annotations

from typing import Any

import torch

from polytask.encoders.base import EncoderOutput


class FeatureCache:
    """Per-example encoder outputs of every task's training features.

    Args:
        model: the PolytaskModel (its encoder is used, in eval mode).
        tasks: task name -> Task (collation, and whether it is token-level).
        feats: task name -> list of training features.
        pad_id: the tokenizer's padding id.
        device: where the encoder runs and the cache lives.
        batch_size: examples per encoder call.
    """

    def __init__(self, model: Any, tasks: dict[str, Any], feats: dict[str, list[dict]], pad_id: int,
                 device: torch.device, batch_size: int = 64):
        self.token_level = {name: task.token_level for name, task in tasks.items()}
        self.store: dict[str, list[torch.Tensor]] = {}
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            for name, task in tasks.items():
                rows: list[torch.Tensor | None] = [None] * len(feats[name])
                order = sorted(range(len(rows)), key=lambda i: len(feats[name][i]["input_ids"]))
                for start in range(0, len(order), batch_size):
                    idx = order[start : start + batch_size]
                    batch = task.collate([feats[name][i] for i in idx], pad_id)
                    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                    enc = model.encode(batch)
                    for j, i in enumerate(idx):
                        if self.token_level[name]:
                            n = int(enc.mask[j].sum())
                            rows[i] = enc.token_states[j, :n].clone()  # (T_i, H)
                        else:
                            rows[i] = enc.pooled[j].clone()  # (H,)
                self.store[name] = rows  # type: ignore[assignment]
        model.train(was_training)

    def output(self, task: str, idx: list[int]) -> EncoderOutput:
        """The stored EncoderOutput of examples ``idx`` of ``task``, padded like a batch."""
        rows = [self.store[task][i] for i in idx]
        if not self.token_level[task]:
            pooled = torch.stack(rows)  # (B, H)
            ones = torch.ones(len(rows), 1, dtype=torch.long, device=pooled.device)
            return EncoderOutput(token_states=pooled.unsqueeze(1), mask=ones, pooled=pooled)
        width = max(r.shape[0] for r in rows)
        states = rows[0].new_zeros(len(rows), width, rows[0].shape[-1])  # (B, T, H)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=states.device)  # (B, T)
        for j, r in enumerate(rows):
            states[j, : r.shape[0]] = r
            mask[j, : r.shape[0]] = 1
        return EncoderOutput(token_states=states, mask=mask, pooled=states.sum(1) / mask.sum(1, keepdim=True))
