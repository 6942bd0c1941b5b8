"""``gradnorm``: learned weights that balance the tasks' gradient norms on the shared layers.

From Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for Adaptive
Loss Balancing in Deep Multitask Networks", ICML 2018 (https://arxiv.org/abs/1711.02257).
Each task has a learnable weight w_i (init 1). At every step:

    G_i     = || grad_W (w_i L_i) ||                 gradient norm on the shared weights W
    r_i     = (L_i / L_i(0)) / mean_j (L_j / L_j(0)) inverse training rate; L_i(0) = first loss
    L_grad  = sum_i | G_i - mean_j(G_j) * r_i^alpha |, the target treated as a constant

The network is trained on ``forward`` = sum_i w_i L_i with the weights held constant (they are
detached there), and the weights alone are trained on ``gradnorm_loss``; after each optimiser
step ``renormalise()`` rescales them to sum to K. Tasks that train slower (larger r_i) get a
larger target gradient norm and so a larger weight.

GradNorm needs *every* task's loss in the same step (all G_i and r_i are compared), so it does
not fit one-task-per-step sampling: ``gradnorm_loss`` raises when a task is missing.

In the loop (``backward`` and ``after_step``): the weights' gradient from ``gradnorm_loss`` is
taken first, then each task's weighted loss is back-propagated; after the optimizer step the
weights are renormalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from polytask.multitask.weighting.base import WEIGHTINGS, LossWeighting

# Weights are kept at least this large by renormalise(): a zero or negative loss weight would
# stop training (or make the model ascend) a task for good.
MIN_WEIGHT = 1e-4


@dataclass
class GradNormWeightingConfig:
    """Options of ``gradnorm``.

    Args:
        alpha: asymmetry alpha >= 0, the strength of the pull towards equal training rates;
            0 asks for equal gradient norms only. The paper uses 0.12 to 3.0 depending on how
            different the tasks are; 1.5 is its NYUv2 setting.
    """

    alpha: float = 1.5

    def __post_init__(self) -> None:
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0; got {self.alpha}")


@WEIGHTINGS.register("gradnorm")
class GradNormWeighting(LossWeighting):
    """L = sum over the present tasks of w_i * L_i, w_i learned by ``gradnorm_loss``.

    Args:
        tasks: the task names.
        config: a ``GradNormWeightingConfig``.
    """

    options_class = GradNormWeightingConfig
    needs_all_tasks = True

    def __init__(self, tasks: list[str], config: GradNormWeightingConfig):
        super().__init__(tasks, config)
        k = len(self.tasks)
        self.task_weights = nn.Parameter(torch.ones(k))  # (K,) w_i
        # L_i(0), the first loss seen per task; buffers so a resumed run keeps the same rates.
        self.register_buffer("initial_losses", torch.ones(k))  # (K,)
        self.register_buffer("has_initial", torch.zeros(k, dtype=torch.bool))  # (K,)

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        present = self.present(losses)
        # Detached: the network is trained with the weights as constants; only gradnorm_loss
        # moves them (otherwise d(sum w_i L_i)/dw_i = L_i would drive every weight to 0).
        w = self.task_weights.detach()
        return torch.stack([w[self.index[t]] * losses[t] for t in present]).sum()

    def gradnorm_loss(
        self, losses: dict[str, torch.Tensor], shared: list[nn.Parameter]
    ) -> torch.Tensor:
        """L_grad = sum_i |G_i - mean(G) r_i^alpha|, whose gradient reaches only the w_i.

        Args:
            losses: task -> scalar loss of this step, for every task, each still attached to
                the graph through ``shared``.
            shared: the shared parameters W the gradient norms are taken on (the paper uses
                the last shared layer, which is cheapest).

        Raises:
            ValueError: a task's loss missing (GradNorm compares all tasks in one step).
        """
        missing = [t for t in self.tasks if t not in losses]
        if missing:
            raise ValueError(
                f"GradNorm needs every task's loss in the same step; missing: {', '.join(missing)}"
            )
        self.present(losses)  # rejects unknown tasks
        shared = [p for p in shared if p.requires_grad]
        # ||grad_W(w_i L_i)|| = |w_i| * ||grad_W L_i||. Taking the gradient of L_i without
        # create_graph gives the same value and the same gradient w.r.t. w_i as the
        # create_graph form, without a second-order graph through W, and L_grad cannot leak
        # into the network's parameters (the paper updates only the w_i with it).
        norms = []
        for task in self.tasks:
            grads = torch.autograd.grad(losses[task], shared, retain_graph=True, allow_unused=True)
            sq = sum((g.detach().pow(2).sum() for g in grads if g is not None), torch.zeros(()))
            norms.append(sq.sqrt())
        grad_norms = torch.stack(norms).to(self.task_weights)  # (K,) ||grad_W L_i||
        g = self.task_weights.abs() * grad_norms  # (K,) G_i

        current = torch.stack([losses[t].detach() for t in self.tasks]).to(self.initial_losses)
        with torch.no_grad():
            # First loss seen per task; recorded here because only GradNorm needs it.
            self.initial_losses.copy_(torch.where(self.has_initial, self.initial_losses, current))
            self.has_initial.fill_(True)
        ratio = current / self.initial_losses.clamp_min(1e-12)  # (K,) L_i / L_i(0)
        inverse_rate = ratio / ratio.mean()  # (K,) r_i
        target = (g.mean() * inverse_rate.pow(self.config.alpha)).detach()  # (K,)
        return (g - target).abs().sum()

    def backward(self, losses: dict[str, torch.Tensor], step: Any) -> None:
        top = step.top_shared_parameters()
        w_grad, = torch.autograd.grad(self.gradnorm_loss(losses, top), [self.task_weights], retain_graph=True)
        # Averaged over the rounds accumulated into one optimizer step, as the losses are.
        previous = self.task_weights.grad
        self.task_weights.grad = w_grad / step.rounds + (previous if previous is not None else 0)
        super().backward(losses, step)

    def after_step(self, step: Any) -> None:
        self.renormalise()

    @torch.no_grad()
    def renormalise(self) -> None:
        """Rescale the weights to sum to K; call after each optimiser step on them."""
        self.task_weights.clamp_(min=MIN_WEIGHT)
        self.task_weights.mul_(len(self.tasks) / self.task_weights.sum())

    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.task_weights.detach().tolist(), strict=True))
