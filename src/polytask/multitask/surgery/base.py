"""Gradient surgeries: how the per-task gradients of the shared parameters become one update.

A surgery sees one flattened gradient per task and returns the single direction the shared
parameters step along. Unlike a loss weighting it needs every task's gradient separately, so
the training loop back-propagates each task's loss on its own, gathers the shared parameters'
gradients with ``flatten_grads``, combines them, and writes the result back with
``assign_grads``. Members live one per file and register in ``SURGERIES``.

Shape legend: K = number of tasks, P = number of elements of the shared parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from polytask.registry import Registry

OPTIONS_FIELD = "multitask.surgery.options"
NAME_FIELD = "multitask.surgery.type"


class GradientSurgery(ABC):
    """Combines per-task gradients of the shared parameters into one update direction.

    Surgeries hold no state between steps: everything they need comes in through ``combine``.

    Args:
        config: the member's config dataclass (``options_class``).
    """

    registry_name: str
    options_class: type  # the member's options dataclass, built by ``build_surgery``
    needs_all_tasks: bool = True  # a surgery compares every task's gradient of the same step

    def __init__(self, config: Any):
        self.config = config

    @abstractmethod
    def combine(
        self, grads: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The combined gradient of this step.

        Args:
            grads: (K, P) one flattened gradient per task.
            generator: source of any randomness (PCGrad's projection order); None uses
                torch's global generator. The same seed gives the same result.

        Returns:
            (P,) the direction the shared parameters step along, at the scale of the mean
            gradient (so the learning rate means what it means for a mean loss).
        """


SURGERIES: Registry[GradientSurgery] = Registry("gradient surgery")


# ---- helpers shared by the members and the training loop -------------------------------------
def check_grads(grads: torch.Tensor) -> torch.Tensor:
    """Return ``grads`` if it is a (K, P) floating tensor with K, P >= 1, else raise ValueError."""
    if not isinstance(grads, torch.Tensor) or grads.dim() != 2:
        shape = tuple(grads.shape) if isinstance(grads, torch.Tensor) else type(grads).__name__
        raise ValueError(f"grads must be a (K, P) tensor, one row per task; got {shape}")
    if grads.shape[0] < 1 or grads.shape[1] < 1:
        raise ValueError(
            f"grads must have at least one task and one element; got {tuple(grads.shape)}"
        )
    if not grads.is_floating_point():
        raise ValueError(f"grads must be floating point; got {grads.dtype}")
    return grads


def flatten_grads(params: list[nn.Parameter]) -> torch.Tensor:
    """The gradients of ``params`` concatenated into one vector, zeros where ``.grad`` is None.

    A parameter a task's loss does not reach has no gradient from it; zeros say exactly that.

    Args:
        params: the shared parameters, in a fixed order (the same order for ``assign_grads``).

    Returns:
        (P,) detached, in the dtype and device of the parameters.

    Raises:
        ValueError: no parameters.
    """
    params = list(params)
    if not params:
        raise ValueError("no parameters to flatten; pass at least one")
    parts = [
        p.grad.detach().reshape(-1)
        if p.grad is not None
        else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
        for p in params
    ]
    return torch.cat(parts)  # (P,)


def assign_grads(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    """Write ``flat`` back into the ``.grad`` of ``params``, creating it where it is None.

    Args:
        params: the parameters, in the order ``flatten_grads`` used.
        flat: (P,) with P the total number of elements of ``params``.

    Raises:
        ValueError: ``flat`` is not one-dimensional with P elements.
    """
    params = list(params)
    total = sum(p.numel() for p in params)
    if flat.dim() != 1 or flat.numel() != total:
        raise ValueError(
            f"flat gradient must have shape ({total},) to match the parameters; "
            f"got {tuple(flat.shape)}"
        )
    offset = 0
    for p in params:
        n = p.numel()
        piece = flat[offset : offset + n].detach().view_as(p).to(dtype=p.dtype, device=p.device)
        if p.grad is None:
            p.grad = piece.clone()
        else:
            p.grad.copy_(piece)
        offset += n
