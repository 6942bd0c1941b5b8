"""UDA: consistency training on unlabelled text, and training-signal annealing.

Xie, Dai, Hovy, Luong & Le, "Unsupervised Data Augmentation for Consistency Training", NeurIPS 2020
(https://arxiv.org/abs/1904.12848). With few labels, the model is also asked to give an unlabelled
example and its augmented copy the same prediction: each step adds

    L_u = mean_i  m_i * KL( sharpen(p(y | x_i)) || p(y | aug(x_i)) ),   m_i = [max p(y | x_i) >= threshold]

with the prediction on the original taken without gradient and sharpened by a temperature, and
only confident originals counted (confidence masking). Training-signal annealing (TSA) leaves out
of the supervised loss the labelled examples whose correct class is already predicted above
eta_t = a_t (1 - 1/K) + 1/K, with a_t rising from 0 to 1 over the run (linear, log or exp), so the
few labels are not memorised before the unlabelled signal has shaped the model.

Which pool examples a step uses and how they are augmented are seeded by (seed, step), so a
resumed run computes the same losses. Classification tasks only.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
import torch.nn.functional as F

from polytask.errors import ConfigError


def consistency_loss(orig_logits: torch.Tensor, aug_logits: torch.Tensor, temperature: float,
                     threshold: float) -> torch.Tensor:
    """UDA's masked KL between the sharpened original and the augmented prediction.

    Args:
        orig_logits: (U, C) logits on the originals (their gradient is not used).
        aug_logits: (U, C) logits on the augmented copies.
        temperature: sharpening of the original's distribution.
        threshold: confidence below which an original does not count.
    Returns:
        () the sum of the counted KLs over U (the paper's mean over the unlabelled batch).
    """
    orig = orig_logits.detach().float()
    target = F.softmax(orig / temperature, dim=-1)  # (U, C) sharpened
    mask = (F.softmax(orig, dim=-1).max(dim=-1).values >= threshold).float()  # (U,)
    log_aug = F.log_softmax(aug_logits.float(), dim=-1)  # (U, C)
    kl = (target * (torch.log(target.clamp_min(1e-12)) - log_aug)).sum(-1)  # (U,)
    return (kl * mask).sum() / max(1, kl.shape[0])


def tsa_threshold(schedule: str, progress: float, n_classes: int) -> float:
    """eta_t: the probability above which a labelled example leaves the supervised loss."""
    if schedule == "none":
        return 1.0
    a = {"linear": progress, "log": 1 - math.exp(-5 * progress), "exp": math.exp(5 * (progress - 1))}[schedule]
    return a * (1 - 1 / n_classes) + 1 / n_classes


def tsa_loss(logits: torch.Tensor, labels: torch.Tensor, eta: float) -> torch.Tensor:
    """Cross-entropy over the examples whose correct class is predicted at most ``eta``.

    logits (B, C), labels (B,). With ``eta`` 1 it is the plain mean cross-entropy.
    """
    ce = F.cross_entropy(logits.float(), labels, reduction="none")  # (B,)
    if eta >= 1.0:
        return ce.mean()
    keep = (torch.exp(-ce.detach()) <= eta).float()  # p(correct) = exp(-ce)
    return (ce * keep).sum() / keep.sum().clamp_min(1.0)


class UDA:
    """The consistency objective of one task.

    Args:
        task: the task (single-label classification).
        pool: its unlabelled examples.
        options: its ``unlabeled.uda`` block.
        pipeline: the task's augmentation pipeline (``tasks[].augment``), which makes the copies.
        tokenizer: the encoder's tokenizer.
        batch_size: labelled examples per batch (the unlabelled batch is ``ratio`` times that).
        seed: the run's seed.
        total_steps: the run's optimizer steps (TSA's schedule).
    """

    def __init__(self, task: Any, pool: list, options: Any, pipeline: Any, tokenizer: Any, batch_size: int,
                 seed: int, total_steps: int):
        if getattr(task, "token_level", False) or not getattr(task, "stratify", False):
            raise ConfigError(
                f"uda: task {task.name!r} is {task.registry_name}; consistency training is built for single-label "
                f"classification tasks (remove tasks.{task.name}.unlabeled.uda)", field=f"tasks.{task.name}.unlabeled.uda")
        if not pool:
            raise ConfigError(f"uda: the unlabeled pool of task {task.name!r} is empty", field=f"tasks.{task.name}.unlabeled")
        self.task, self.pool, self.options, self.pipeline = task, pool, options, pipeline
        self.tokenizer, self.seed, self.total_steps = tokenizer, seed, max(1, total_steps)
        self.size = min(len(pool), options.ratio * batch_size)

    def supervised(self, logits: torch.Tensor, batch: dict[str, Any], step: int) -> torch.Tensor:
        """The task's loss with training-signal annealing at ``step``."""
        eta = tsa_threshold(self.options.tsa, step / self.total_steps, len(self.task.labels or []) or 2)
        return tsa_loss(logits, batch["labels"], eta)

    def loss(self, forward: Any, step: int, pad_id: int, device: torch.device) -> torch.Tensor:
        """``weight`` x the consistency loss of this step's unlabelled batch; ``forward(batch)`` gives logits."""
        from polytask.evaluation.evaluate import move

        rng = random.Random(self.seed * 7_919 + step)
        idx = rng.sample(range(len(self.pool)), self.size)
        originals = [self.pool[i] for i in idx]
        copies = [self.pipeline.copy(self.pool[i], i, 0, self.seed, step) for i in idx]
        enc = self.task.encode_batch
        orig_batch = move(self.task.collate(enc(originals, self.tokenizer), pad_id), device)
        aug_batch = move(self.task.collate(enc(copies, self.tokenizer), pad_id), device)
        with torch.no_grad():
            orig_logits = forward(orig_batch)
        value = consistency_loss(orig_logits, forward(aug_batch), self.options.temperature, self.options.threshold)
        return self.options.weight * value
