"""``famo``: Fast Adaptive Multitask Optimization, balanced loss decrease at O(1) extra cost.

From Liu, Feng, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023
(https://arxiv.org/abs/2306.03792). Task weights ``z = softmax(xi)`` come from learned logits
``xi``. The model is trained on ``sum_i z_i log(L_i + eps) / c`` with ``c = sum_i z_i / (L_i + eps)``
(constant), i.e. along ``sum_i (z_i / c) grad L_i / L_i``: each task's gradient scaled by its own
loss, so the step lowers every log-loss evenly. After the optimizer step the logits take one Adam
step on the measured decrease of each task's log-loss on the same batches,
``delta_i = log L_i(before) - log L_i(after)``, pushed through the softmax's Jacobian: tasks whose
loss fell less get more weight next time. The extra cost is one forward pass per step, not one
backward per task (unlike GradNorm or gradient surgery).

The logits and their Adam moments are buffers (saved with the model, out of the model's
optimizer), so a resumed run continues exactly. Every task's loss is needed in each step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from polytask.multitask.weighting.base import WEIGHTINGS, LossWeighting


@dataclass
class FAMOWeightingConfig:
    """Options of ``famo`` (the paper's defaults).

    Args:
        lr: learning rate beta of the logits' Adam step (0.025 in the paper).
        weight_decay: gamma, L2 decay of the logits towards 0 (equal weights); 0.001 in the paper.
        eps: added to each loss before the log (losses must be >= 0).
    """

    lr: float = 0.025
    weight_decay: float = 0.001
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if self.weight_decay < 0 or self.eps <= 0:
            raise ValueError(f"weight_decay must be >= 0 and eps > 0; got {self.weight_decay}, {self.eps}")


@WEIGHTINGS.register("famo")
class FAMOWeighting(LossWeighting):
    """Loss-scaled gradients with softmax weights learned from each task's loss decrease.

    Args:
        tasks: the task names.
        config: a ``FAMOWeightingConfig``.
    """

    options_class = FAMOWeightingConfig
    needs_all_tasks = True
    BETAS = (0.9, 0.999)  # Adam's, as in the paper's code

    def __init__(self, tasks: list[str], config: FAMOWeightingConfig):
        super().__init__(tasks, config)
        k = len(self.tasks)
        self.register_buffer("logits", torch.zeros(k))  # (K,) xi
        self.register_buffer("adam_m", torch.zeros(k))  # (K,)
        self.register_buffer("adam_v", torch.zeros(k))  # (K,)
        self.register_buffer("adam_t", torch.zeros((), dtype=torch.long))
        self._before: dict[str, list[torch.Tensor]] = {}  # this step's losses, per round

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        present = self.present(losses)
        z = torch.softmax(self.logits, 0)
        eps = self.config.eps
        c = sum(z[self.index[t]] / (losses[t].detach() + eps) for t in present)
        return torch.stack([z[self.index[t]] * torch.log(losses[t] + eps) / c for t in present]).sum()

    def backward(self, losses: dict[str, torch.Tensor], step: Any) -> None:
        z = torch.softmax(self.logits, 0)  # (K,)
        eps = self.config.eps
        c = sum(z[self.index[t]] / (losses[t].detach() + eps) for t in losses)
        for task, loss in losses.items():
            self._before.setdefault(task, []).append(loss.detach())
            step.backward(task, (z[self.index[task]] / c).to(loss.dtype) * torch.log(loss + eps))

    @torch.no_grad()
    def after_step(self, step: Any) -> None:
        before = {t: torch.stack(v).mean() for t, v in self._before.items()}
        self._before = {}
        after = step.losses_now()
        eps = self.config.eps
        delta = torch.stack([torch.log(before[t] + eps) - torch.log(after[t] + eps) for t in self.tasks]).float()
        z = torch.softmax(self.logits, 0)
        # d/dxi of sum_i delta_i log z_i (the paper's update direction for the logits).
        grad = delta.to(z.device) - z * delta.sum().to(z.device)  # (K,)
        grad = grad + self.config.weight_decay * self.logits
        b1, b2 = self.BETAS
        self.adam_t += 1
        t = int(self.adam_t)
        self.adam_m.mul_(b1).add_(grad, alpha=1 - b1)
        self.adam_v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat = self.adam_m / (1 - b1**t)
        v_hat = self.adam_v / (1 - b2**t)
        self.logits.sub_(self.config.lr * m_hat / (v_hat.sqrt() + 1e-8))
        if not torch.isfinite(self.logits).all():  # a non-finite loss reached the logits: start over
            self.logits.zero_()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, torch.softmax(self.logits, 0).tolist(), strict=True))
