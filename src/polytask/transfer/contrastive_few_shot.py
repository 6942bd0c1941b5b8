"""``contrastive_few_shot``: SetFit's contrastive phase before the head is fitted.

Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts" (SetFit),
https://arxiv.org/abs/2209.11055. With few labels per class (8-64), the sentence encoder is first
tuned Siamese-style on pairs drawn from the labelled examples: a pair of the same class has
cosine target 1, a pair of different classes 0, and the loss is the squared error between the
cosine similarity of the two pooled embeddings and the target (sentence-transformers'
``CosineSimilarityLoss``, as SetFit uses). The classes then sit in separate regions of the
embedding space, so a head fits them from very few examples.

Pairs are drawn as SetFit does: for each of ``num_iterations`` rounds, every training example gets
one positive partner (same class, another example when there is one) and one negative partner
(another class), so there are as many positive as negative pairs. Then the normal loop fits the
head: combine with ``freeze`` (``strategy: [contrastive_few_shot, freeze]``, SetFit's recipe, where
only the head trains afterwards) or with ``full``.

Applies to single-label ``classification`` tasks. The phase runs in ``prepare``: once, on a fresh
run; a resumed run restores the tuned encoder from its checkpoint.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from polytask.errors import ConfigError
from polytask.transfer.base import STRATEGIES, Strategy


@dataclass
class ContrastiveFewShotConfig:
    """Args:
    num_iterations: rounds of pair drawing; each gives every example one positive and one
        negative pair, so ``2 * num_iterations * n_examples`` pairs (SetFit's default 20).
    epochs: passes over the pairs.
    batch_size: pairs per step.
    lr: learning rate of the encoder in this phase (SetFit's 2e-5 suits a pretrained encoder).
    warmup_ratio: share of the phase's steps with a linear warm-up.
    max_pairs: keep at most this many pairs (half positive, half negative), to bound the phase.
    seed: seed of the pair drawing, the pair order and dropout in this phase.
    """

    num_iterations: int = 20
    epochs: int = 1
    batch_size: int = 16
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    max_pairs: int | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("num_iterations", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1); got {self.warmup_ratio}")
        if self.max_pairs is not None and self.max_pairs < 2:
            raise ValueError(f"max_pairs must be >= 2 (one positive, one negative); got {self.max_pairs}")


Pair = tuple[int, int, float]  # (example index, partner index, cosine target)


def sample_pairs(labels: list[int], num_iterations: int, seed: int, max_pairs: int | None = None) -> list[Pair]:
    """Balanced positive / negative pairs over examples with integer ``labels``, seeded.

    Args:
        labels: each example's class index.
        num_iterations: rounds; each gives every example one positive and one negative partner.
        seed: the random seed (the same seed gives the same pairs).
        max_pairs: keep at most this many (an equal number of each kind).

    Returns:
        ``(i, j, target)`` triples in a shuffled order; target 1.0 same class, 0.0 different.
    """
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    if len(by_class) < 2:
        raise ValueError("needs at least two classes")
    rng = random.Random(seed)
    others = {y: [i for c, members in by_class.items() if c != y for i in members] for y in by_class}
    rank = {i: r for members in by_class.values() for r, i in enumerate(members)}  # i's place in its class
    positives: list[Pair] = []
    negatives: list[Pair] = []
    for _ in range(num_iterations):
        for i, y in enumerate(labels):
            same = by_class[y]
            # A class of one example pairs with itself: a useless but harmless positive that
            # keeps the two kinds balanced.
            if len(same) == 1:
                j = i
            else:  # uniform over the class without i itself
                r = rng.randrange(len(same) - 1)
                j = same[r + 1 if r >= rank[i] else r]
            positives.append((i, j, 1.0))
            negatives.append((i, rng.choice(others[y]), 0.0))
    if max_pairs is not None and max_pairs < len(positives) + len(negatives):
        rng.shuffle(positives)
        rng.shuffle(negatives)
        positives, negatives = positives[: max_pairs // 2], negatives[: max_pairs // 2]
    pairs = positives + negatives
    rng.shuffle(pairs)
    return pairs


def cosine_similarity_loss(left: torch.Tensor, right: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between cos(left, right) and the target. left, right (B, H); target (B,)."""
    return F.mse_loss(F.cosine_similarity(left.float(), right.float(), dim=-1), target)


@STRATEGIES.register("contrastive_few_shot")
class ContrastiveFewShot(Strategy):
    """Tune the encoder on same-class / different-class pairs (SetFit) before the loop trains."""

    options_class = ContrastiveFewShotConfig

    def prepare(
        self,
        model: nn.Module,
        tasks: dict[str, Any],
        train_features: dict[str, list[dict[str, Any]]],
        pad_id: int,
        accelerator: Any,
        progress: bool = True,
    ) -> None:
        opts: ContrastiveFewShotConfig = self.options or ContrastiveFewShotConfig()
        # Pairs never cross tasks: each task's label indices mean different things.
        pairs: list[tuple[str, Pair]] = []
        for t, (name, feats) in enumerate(train_features.items()):
            labels = _class_indices(name, tasks[name], feats)
            pairs += [(name, p) for p in sample_pairs(labels, opts.num_iterations, opts.seed + t)]
        rng = random.Random(opts.seed)
        rng.shuffle(pairs)
        if opts.max_pairs is not None:  # balanced per task above; here the total is bounded
            pairs = _balanced_head(pairs, opts.max_pairs)
        steps_per_epoch = math.ceil(len(pairs) / opts.batch_size)
        total = steps_per_epoch * opts.epochs

        from transformers import get_linear_schedule_with_warmup

        from polytask.evaluation.evaluate import move
        from polytask.training.engine import StepEngine
        from polytask.training.logging import Progress
        from polytask.training.optim import adamw

        device = accelerator.device
        encoder = model.encoder
        home = next(encoder.parameters()).device
        was_training = encoder.training
        params = [p for p in encoder.parameters() if p.requires_grad]
        optimizer = adamw(params, opts.lr, device, weight_decay=0.0)
        scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(opts.warmup_ratio * total), total)
        engine = StepEngine(accelerator, model, optimizer, scheduler, max_grad_norm=1.0, clip_parameters=params)
        bar = Progress(total, enabled=progress)
        n_pos = sum(1 for _, p in pairs if p[2] == 1.0)
        bar.note(f"contrastive_few_shot: {len(pairs)} pairs ({n_pos} same-class, {len(pairs) - n_pos} "
                 f"different-class), {total} steps")
        model.to(device)
        encoder.train()
        forked = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked), bar:
            torch.manual_seed(opts.seed)  # dropout in this phase, independent of the main loop's
            step = 0
            for epoch in range(opts.epochs):
                order = list(range(len(pairs)))
                random.Random(opts.seed + 1000 + epoch).shuffle(order)
                for start in range(0, len(order), opts.batch_size):
                    chunk = [pairs[k] for k in order[start : start + opts.batch_size]]
                    loss = self._step_loss(model, tasks, train_features, chunk, pad_id, device, move)
                    engine.backward(loss)
                    engine.step()
                    step += 1
                    bar.update(step, loss=float(loss.detach()), speed=0.0, epoch=epoch + 1)
        encoder.train(was_training)
        model.to(home)

    @staticmethod
    def _step_loss(model: nn.Module, tasks: dict[str, Any], feats: dict[str, list[dict[str, Any]]],
                   chunk: list[tuple[str, Pair]], pad_id: int, device: torch.device, move: Any) -> torch.Tensor:
        """The pairs of one step, grouped by task so each batch is collated by its own task."""
        losses, sizes = [], []
        for name in dict.fromkeys(n for n, _ in chunk):
            mine = [p for n, p in chunk if n == name]
            # Both sides in one forward pass: the first half of the batch is the left examples.
            batch = tasks[name].collate([feats[name][i] for i, _, _ in mine] + [feats[name][j] for _, j, _ in mine],
                                        pad_id)
            pooled = model.encode(move(batch, device)).pooled  # (2P, H)
            target = torch.tensor([y for _, _, y in mine], device=pooled.device)  # (P,)
            losses.append(cosine_similarity_loss(pooled[: len(mine)], pooled[len(mine) :], target))
            sizes.append(len(mine))
        return sum(loss * n for loss, n in zip(losses, sizes, strict=True)) / sum(sizes)


def _class_indices(name: str, task: Any, feats: list[dict[str, Any]]) -> list[int]:
    """The class index of every training example, or a ConfigError for a task that has none."""
    kind = getattr(task, "registry_name", type(task).__name__)
    labels = [f.get("labels") for f in feats]
    if not labels or not all(isinstance(y, int) and not isinstance(y, bool) for y in labels):
        raise ConfigError(
            f"contrastive_few_shot needs single-label classification tasks (one class index per "
            f"example), but task {name!r} is {kind}; drop the strategy or train that task separately",
            field="transfer.strategy",
        )
    if len(set(labels)) < 2:
        raise ConfigError(
            f"contrastive_few_shot needs at least two classes in the training data, but task "
            f"{name!r} has only one; add examples of another class",
            field="transfer.strategy",
        )
    return labels


def _balanced_head(pairs: list[tuple[str, Pair]], max_pairs: int) -> list[tuple[str, Pair]]:
    """The first ``max_pairs // 2`` positive and negative pairs of a shuffled list, in that order."""
    pos = [p for p in pairs if p[1][2] == 1.0][: max_pairs // 2]
    neg = [p for p in pairs if p[1][2] == 0.0][: max_pairs // 2]
    keep = {id(p) for p in pos + neg}
    return [p for p in pairs if id(p) in keep]
