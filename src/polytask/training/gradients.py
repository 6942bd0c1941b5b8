"""Gradients of an ``all_tasks`` step: per-task gradients, surgery, GradNorm, and their sync.

Why the loop synchronises these steps itself: DDP all-reduces gradients inside ``backward``,
bucket by bucket, as they are produced. Gradient surgery must see each task's gradient *averaged
over processes* before combining (PCGrad's projections are not linear, so "combine per process,
then average" is not the same update), and GradNorm's weight gradient comes from
``torch.autograd.grad``, which DDP never sees. So every backward of such a step runs under
``no_sync`` and ``sync_gradients`` averages, in one place and explicitly, the per-task gradient
matrix and every other gradient across processes. With one process it does nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polytask.multitask.surgery import assign_grads, flatten_grads


class TaskGradients:
    """Collects each task's gradient of the shared parameters over a step's micro-batches.

    Args:
        shared: the shared (encoder) parameters that train, in a fixed order.
        tasks: the task names (rows of the matrix, in this order).
    """

    def __init__(self, shared: list[nn.Parameter], tasks: list[str]):
        self.shared = shared
        self.rows = {t: i for i, t in enumerate(tasks)}
        self.matrix: torch.Tensor | None = None  # (K, P)

    def take(self, task: str) -> None:
        """Move the shared parameters' current ``.grad`` into ``task``'s row and clear them."""
        flat = flatten_grads(self.shared)  # (P,)
        if self.matrix is None:
            self.matrix = torch.zeros(len(self.rows), flat.numel(), dtype=flat.dtype, device=flat.device)
        self.matrix[self.rows[task]] += flat
        for p in self.shared:
            p.grad = None

    def combine(self, surgery: Any, generator: torch.Generator | None = None) -> None:
        """Write the surgery's combination of the rows into the shared ``.grad``.

        Rows are scaled by K first: each holds its task's share of the step's mean loss, and a
        surgery returns a direction at the scale of the mean row.
        """
        if self.matrix is None:
            return
        k = self.matrix.shape[0]
        combined = surgery.combine(self.matrix.float() * k, generator=generator)  # (P,)
        assign_grads(self.shared, combined.to(self.matrix.dtype))
        self.matrix = None


def sync_gradients(accelerator: Any, model: nn.Module, task_grads: TaskGradients | None) -> None:
    """Average every gradient (and the per-task matrix) over processes; no-op for one process."""
    if accelerator.num_processes == 1:
        return
    if task_grads is not None and task_grads.matrix is not None:
        task_grads.matrix = accelerator.reduce(task_grads.matrix, reduction="mean")
    params = [p for p in model.parameters() if p.requires_grad]
    # A parameter no process reached has no gradient anywhere; one some process reached needs a
    # zero elsewhere, so everybody takes part in the same reduction.
    flat = torch.cat([
        (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params
    ])
    flat = accelerator.reduce(flat, reduction="mean")
    reached = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=flat.device)
    reached = accelerator.reduce(reached, reduction="sum")  # (n_params,) processes that reached each
    offset = 0
    for p, hit in zip(params, reached.tolist(), strict=True):
        n = p.numel()
        # Unreached everywhere stays None, as with one process (AdamW then leaves it alone).
        p.grad = flat[offset : offset + n].view_as(p).clone() if hit else None
        offset += n


def top_shared_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The last shared layer's trainable parameters (GradNorm measures gradient norms there)."""
    for group in reversed(model.encoder.layer_groups()):
        params = [p for p in group if p.requires_grad]
        if params:
            return params
    raise ValueError("no trainable encoder parameters: GradNorm needs the shared encoder to train")
