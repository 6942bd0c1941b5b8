"""The step engine: the one place where an optimizer steps.

Every training procedure (fine-tuning, masked-LM pretraining, affinity measurement, the
contrastive phase of few-shot tuning, and the ones to come) runs on it: the procedure computes
losses and calls ``backward``; the engine owns what follows in one fixed order (clip the
gradients, step the optimizer, step the schedule, clear the gradients), keeps the recent losses
on the device (reading a loss every step would stall a GPU's queue), and holds the Ctrl-C stop
flag. Under several processes Accelerate averages the gradients inside ``backward`` (DDP); steps
whose gradients it cannot average on its own call ``sync`` (see ``training/gradients.py``).
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn


class StepEngine:
    """Backward passes, gradient clipping and optimizer/schedule steps of one training procedure.

    Args:
        accelerator: the Accelerate ``Accelerator`` the model and optimizer were prepared with
            (or not: a procedure may step an unwrapped model on one process).
        model: the model whose gradients are clipped and, under DDP, synchronised.
        optimizer: the optimizer it steps.
        scheduler: a learning-rate schedule stepped after each optimizer step, or None.
        max_grad_norm: clip the gradients' global norm to this before each step (None: no clip).
        clip_parameters: the parameters clipped (default: every parameter of ``model``).
    """

    def __init__(
        self,
        accelerator: Any,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        max_grad_norm: float | None = None,
        clip_parameters: Iterable[nn.Parameter] | None = None,
    ):
        self.accelerator = accelerator
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.max_grad_norm = max_grad_norm
        self._clip = list(clip_parameters) if clip_parameters is not None else None
        self.steps = 0
        self._window: list[torch.Tensor] = []
        self.stop = StopFlag()

    # ---- one step -----------------------------------------------------------------------------
    def sync_context(self, sync: bool) -> Any:
        """A context for one micro-batch: DDP all-reduces gradients only where ``sync``."""
        return nullcontext() if sync else self.accelerator.no_sync(self.model)

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` (scaled by Accelerate under fp16)."""
        self.accelerator.backward(loss)

    def sync(self, task_grads: Any = None) -> None:
        """Average gradients over processes by hand (steps run under ``no_sync``)."""
        from polytask.training.gradients import sync_gradients

        sync_gradients(self.accelerator, self.accelerator.unwrap_model(self.model), task_grads)

    def step(self) -> None:
        """Clip, step the optimizer and the schedule, clear the gradients."""
        if self.max_grad_norm is not None:
            params = self._clip if self._clip is not None else self.model.parameters()
            self.accelerator.clip_grad_norm_(params, self.max_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1

    def discard(self) -> None:
        """Drop the gradients gathered so far without stepping (e.g. a loss that is not finite)."""
        self.optimizer.zero_grad(set_to_none=True)

    # ---- losses and the schedule --------------------------------------------------------------
    def record(self, loss: torch.Tensor) -> None:
        """Keep a micro-batch's loss for the next ``mean_loss`` (on the device, not read now)."""
        self._window.append(loss.detach())

    def mean_loss(self) -> float:
        """The mean of the losses recorded since the last call (NaN if none), and a new window."""
        if not self._window:
            return float("nan")
        value = float(torch.stack(self._window).float().mean())
        self._window = []
        return value

    def peek_loss(self) -> float:
        """The mean of the losses recorded since the last ``mean_loss`` (NaN if none), window kept.

        Reads the device: called every step only where that costs nothing (a CPU).
        """
        if not self._window:
            return float("nan")
        return float(torch.stack(self._window).float().mean())

    @property
    def lr(self) -> float:
        """The first parameter group's learning rate now."""
        if self.scheduler is not None:
            return self.scheduler.get_last_lr()[0]
        return self.optimizer.param_groups[0]["lr"]


class StopFlag:
    """First Ctrl-C asks the procedure to stop after the current step and save; a second aborts.

    Checkpoints are written atomically, so even an abort leaves the last good one intact.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
