"""Inter-task affinity: which tasks help each other, measured during a short multi-task run.

Fifty, Amid, Zhao, Yu, Anil and Finn, "Efficiently Identifying Task Groupings in Multi-Task
Learning", NeurIPS 2021 (https://arxiv.org/abs/2109.04617). At a training step ``t`` every task
``i`` takes a *lookahead* SGD step on the shared (encoder) parameters with its own gradient
only, and every task ``j`` checks how its loss on the same step's batch moved::

    theta'_i  = theta - lookahead_lr * grad_theta L_i(theta)
    Z_{i->j}  = 1 - L_j(theta'_i) / L_j(theta)

``Z_{i->j} > 0``: the update task ``i`` asks for lowers task ``j``'s loss (``i`` helps ``j``);
``< 0``: it raises it. The matrix is averaged over the measured steps. Between measurements the
model trains normally (one batch of every task per step, losses summed, AdamW at ``train.lr``),
so the affinities are those of a real run rather than of the untrained encoder.

Two choices that differ from the paper, whose tasks share every example (one batch, several
labels): here each task has its own data, so ``L_j`` is task ``j``'s loss on *its* batch of the
step; and the losses before and after a lookahead are computed in eval mode (no dropout),
because dropout noise on a tiny lookahead step would swamp the change it is meant to measure.
The lookahead gradients are the step's training gradients (train mode), so measuring costs no
extra backward pass.

``suggest_groupings`` turns the matrix into task groupings: for each number of groups ``k`` it
finds the partition of the tasks into ``k`` groups that maximises the mean affinity each task
receives from the other members of its group (the paper's "total inter-task affinity onto a
task", restricted to partitions so that every task is trained exactly once).

Shape legend: K tasks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polytask.config.schema import ExperimentConfig, TrainConfig
from polytask.errors import ConfigError
from polytask.io import write_with
from polytask.tasks.base import Features, Task

JSON_NAME = "affinity.json"
PNG_NAME = "affinity.png"
FORMAT_VERSION = 1
# Partitions of K tasks into k groups are enumerated exactly up to this many (Stirling number
# S(K, k)); beyond it a deterministic local search is used. S(12, 3) = 86,526 is still exact.
MAX_EXACT_PARTITIONS = 200_000


# ---- results --------------------------------------------------------------------------------
@dataclass
class Grouping:
    """The best partition found for one number of groups.

    Attributes:
        groups: the groups, each a list of task names in the matrix's task order.
        score: mean over tasks of the affinity each receives from its group mates (a task alone
            in its group receives 0: trained alone, nothing helps or hurts it).
        exact: True when every partition was scored, False when found by local search.
    """

    groups: list[list[str]]
    score: float
    exact: bool = True

    @property
    def k(self) -> int:
        return len(self.groups)

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "groups": self.groups, "score": self.score, "exact": self.exact}


@dataclass
class AffinityResult:
    """What ``measure_affinity`` measured.

    Attributes:
        tasks: task names; the order of the matrix's rows and columns.
        matrix: (K, K) ``matrix[i][j] = Z_{i->j}``, the mean relative drop of task ``j``'s loss
            after a lookahead step along task ``i``'s gradient (row: source, column: target).
        steps: training steps run (one batch of every task each).
        measurements: how many of them were measured (every ``every``-th step, from step 0).
        stderr: (K, K) standard error of each mean over the measurements (0 with one).
        groupings: the best grouping for each number of groups, from ``suggest_groupings``.
        lookahead_lr: the SGD learning rate of the lookahead step.
        every: measurement interval in steps.
        seed: the seed of the run.
        config: the resolved experiment config (JSON-ready), when measured from one.
    """

    tasks: list[str]
    matrix: list[list[float]]
    steps: int
    measurements: int
    stderr: list[list[float]]
    groupings: list[Grouping] = field(default_factory=list)
    lookahead_lr: float = 0.0
    every: int = 1
    seed: int = 0
    config: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``affinity.json`` record (schema in docs/affinity.md)."""
        return {
            "format_version": FORMAT_VERSION,
            "tasks": self.tasks,
            "matrix": self.matrix,
            "stderr": self.stderr,
            "steps": self.steps,
            "measurements": self.measurements,
            "every": self.every,
            "lookahead_lr": self.lookahead_lr,
            "seed": self.seed,
            "groupings": [g.to_json() for g in self.groupings],
            "config": self.config,
        }

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``affinity.json`` and the ``affinity.png`` heatmap into ``directory`` (atomically).

        Returns:
            (json path, png path).
        """
        from polytask.io import write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        json_path, png_path = directory / JSON_NAME, directory / PNG_NAME
        write_json(json_path, self.to_json())
        plot_affinity(self.matrix, self.tasks, png_path, title=f"inter-task affinity ({self.measurements} steps)")
        return json_path, png_path


@dataclass
class AffinityStats:
    """Raw output of ``measure_model_affinity``: means and standard errors, (K, K) each."""

    matrix: list[list[float]]
    stderr: list[list[float]]
    measurements: int
    train_loss: dict[str, float]  # mean training loss of each task over the run


# ---- measuring ------------------------------------------------------------------------------
def measure_affinity(
    cfg: ExperimentConfig,
    steps: int = 100,
    lookahead_lr: float | None = None,
    every: int = 1,
    seed: int | None = None,
    max_groups: int = 3,
    output_dir: str | Path | None = None,
    save: bool = True,
    progress: bool | None = None,
) -> AffinityResult:
    """Train ``cfg``'s tasks together for ``steps`` steps and measure their inter-task affinity.

    The encoder is ``cfg.encoder`` as pretrained (``transfer`` and ``multitask`` settings are
    not applied: every task's batch counts equally and the whole model trains). Uses CUDA when
    available unless ``train.cpu`` is set.

    Args:
        cfg: the experiment; it needs at least two tasks.
        steps: training steps; each takes one batch (``train.batch_size``) of every task.
        lookahead_lr: learning rate of the lookahead SGD step; default ``train.lr``.
        every: measure every ``every``-th step (from step 0); the others only train.
        seed: seeds the model's heads, dropout and batch order; default ``train.seed``.
        max_groups: suggest groupings into 1 .. min(#tasks, max_groups) groups.
        output_dir: where ``affinity.json`` and ``affinity.png`` go; default ``cfg.output_dir``
            or ``runs/<name>``.
        save: write the two files (False: only return the result).
        progress: draw a progress bar; default ``train.progress``.
    """
    from accelerate.utils import set_seed

    from polytask.encoders import build_encoder
    from polytask.multitask.model import PolytaskModel
    from polytask.training.logging import Progress
    from polytask.training.run import make_accelerator
    from polytask.training.setup import prepare_tasks

    if len(cfg.tasks) < 2:
        names = ", ".join(t.name for t in cfg.tasks)
        raise ConfigError(
            f"affinity needs at least 2 tasks to compare; the experiment has {len(cfg.tasks)} ({names}). "
            "Add the tasks you want to compare under tasks",
            field="tasks",
        )
    tc = cfg.train
    lookahead_lr = tc.lr if lookahead_lr is None else lookahead_lr
    check_arguments(steps, every, lookahead_lr, max_groups)
    seed = tc.seed if seed is None else seed

    data = prepare_tasks(cfg)  # bad data fails here, before the model loads
    tasks = {name: td.task for name, td in data.items()}
    accelerator = make_accelerator(cpu=tc.cpu)
    set_seed(seed)
    encoder = build_encoder(cfg.encoder)
    model = PolytaskModel(encoder, tasks, dropout=cfg.encoder.dropout)
    tokenizer = encoder.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    features = {name: [td.task.encode(ex, tokenizer) for ex in td.splits["train"]] for name, td in data.items()}

    show = tc.progress if progress is None else progress
    with Progress(steps, enabled=show) as bar:
        stats = measure_model_affinity(
            model, tasks, features, tc, steps=steps, lookahead_lr=lookahead_lr, every=every, seed=seed,
            pad_id=pad_id, device=accelerator.device, on_step=bar.update, accelerator=accelerator,
        )
    names = list(tasks)
    result = AffinityResult(
        tasks=names,
        matrix=stats.matrix,
        steps=steps,
        measurements=stats.measurements,
        stderr=stats.stderr,
        groupings=suggest_groupings(stats.matrix, names, max_groups),
        lookahead_lr=lookahead_lr,
        every=every,
        seed=seed,
        config=cfg.model_dump(mode="json"),
    )
    if save:
        result.save(Path(output_dir) if output_dir else Path(cfg.output_dir or Path("runs") / cfg.name))
    return result


def check_arguments(steps: int, every: int, lookahead_lr: float, max_groups: int = 3) -> None:
    """Reject measurement settings that cannot work, naming the argument (CLI option)."""
    if steps < 1:
        raise ConfigError(f"steps must be at least 1; got {steps}", field="steps")
    if every < 1:
        raise ConfigError(f"every must be at least 1 (measure every n-th step); got {every}", field="every")
    if every > steps:
        raise ConfigError(
            f"every ({every}) is larger than steps ({steps}): only step 0 would be measured; "
            "lower every or raise steps",
            field="every",
        )
    if not lookahead_lr > 0:
        raise ConfigError(f"lookahead_lr must be positive; got {lookahead_lr}", field="lookahead_lr")
    if max_groups < 1:
        raise ConfigError(f"max_groups must be at least 1; got {max_groups}", field="max_groups")


def measure_model_affinity(
    model: nn.Module,
    tasks: dict[str, Task],
    features: dict[str, list[Features]],
    train: TrainConfig,
    steps: int,
    lookahead_lr: float,
    every: int = 1,
    seed: int = 0,
    pad_id: int = 0,
    device: torch.device | None = None,
    on_step: Any = None,
    accelerator: Any = None,
) -> AffinityStats:
    """The measuring run on a built model (``measure_affinity`` builds one from a config).

    Args:
        model: a ``PolytaskModel`` (``.encoder`` is shared, ``.heads[name]`` per task); frozen
            parameters (``requires_grad=False``) are neither trained nor looked ahead on.
        tasks: the tasks, by name, in matrix order.
        features: each task's encoded training examples.
        train: optimiser settings (``batch_size``, ``lr``, ``head_lr``, ``weight_decay``,
            ``max_grad_norm``).
        steps: training steps (one batch of every task each).
        lookahead_lr: SGD learning rate of the lookahead step.
        every: measure every ``every``-th step, starting at step 0.
        seed: seed of the batch order.
        pad_id: the tokenizer's padding id.
        device: where to run (default: CPU).
        on_step: called as ``on_step(step, loss, examples_per_second, epoch)`` after each step.
        accelerator: the Accelerator the step engine steps through (default: one for ``device``).
    """
    from polytask.evaluation.evaluate import move
    from polytask.training.engine import StepEngine
    from polytask.training.optim import build_optimizer
    from polytask.training.run import make_accelerator

    device = device or torch.device("cpu")
    accelerator = accelerator or make_accelerator(cpu=device.type == "cpu")
    model.to(device)
    names = list(tasks)
    k = len(names)
    for name in names:
        if not features.get(name):
            raise ConfigError(f"task {name!r} has no training examples; affinity trains on every task", field="tasks")
    # One seed for every task's order: tasks whose training files hold the same examples in the
    # same order get the same batch at every step, the paper's setting (one batch, several labels).
    streams = {name: _BatchStream(features[name], train.batch_size, seed) for name in names}
    shared = [p for p in model.encoder.parameters() if p.requires_grad]  # the lookahead moves these
    if not shared:
        raise ConfigError("every encoder parameter is frozen, so no task can move the shared encoder; "
                          "unfreeze the encoder to measure affinity")
    trainable = [p for p in model.parameters() if p.requires_grad]
    # What each task's loss reaches: the shared encoder and its own head.
    reach = {n: shared + [p for p in model.heads[n].parameters() if p.requires_grad] for n in names}
    # The lookahead needs each task's gradient on its own (autograd.grad, not backward), so the
    # procedure writes the summed gradients itself; the engine clips and steps.
    engine = StepEngine(accelerator, model, build_optimizer(model, train, device=device), None, train.max_grad_norm,
                        clip_parameters=trainable)

    # Summed on the device: no host sync per lookahead.
    total = torch.zeros(k, k, dtype=torch.float64, device=device)  # (K, K) sum of Z over measurements
    total_sq = torch.zeros(k, k, dtype=torch.float64, device=device)  # (K, K) sum of Z**2
    loss_sum = dict.fromkeys(names, 0.0)
    measured = 0
    start = time.perf_counter()
    examples = 0

    def losses(batches: dict[str, dict[str, Any]]) -> torch.Tensor:
        """(K,) each task's loss on its batch, eval mode, no gradient."""
        with torch.no_grad():
            return torch.stack([tasks[n].loss(model(n, batches[n]), batches[n]).double() for n in names])

    for step in range(steps):
        batches = {n: move(tasks[n].collate([features[n][j] for j in streams[n].next()], pad_id), device)
                   for n in names}
        measure = step % every == 0
        if measure:
            model.eval()
            before = losses(batches)  # (K,)
        model.train()
        engine.discard()
        grads: list[list[torch.Tensor]] = []  # per task: its gradient of each shared parameter
        step_loss = 0.0
        for n in names:
            loss = tasks[n].loss(model(n, batches[n]), batches[n])
            g = torch.autograd.grad(loss, reach[n], allow_unused=True)
            # The training update follows the summed loss, so the task gradients add up.
            for p, gp in zip(reach[n], g, strict=True):
                if gp is not None:
                    p.grad = gp.clone() if p.grad is None else p.grad.add_(gp)
            if measure:
                grads.append(list(g[: len(shared)]))
            value = float(loss.detach())
            loss_sum[n] += value
            step_loss += value
            examples += int(batches[n]["input_ids"].shape[0])
        if measure:
            model.eval()
            saved = [p.detach().clone() for p in shared]
            with torch.no_grad():
                for i in range(k):
                    for p, gp in zip(shared, grads[i], strict=True):
                        if gp is not None:
                            p.sub_(gp, alpha=lookahead_lr)
                    after = losses(batches)  # (K,)
                    z = 1.0 - after / before.clamp(min=1e-12)  # (K,) row i: i's step, each target j
                    total[i] += z
                    total_sq[i] += z * z
                    for p, s in zip(shared, saved, strict=True):
                        p.copy_(s)
            del saved, grads
            measured += 1
            model.train()
        engine.step()
        if on_step is not None:
            on_step(step + 1, step_loss / k, examples / max(time.perf_counter() - start, 1e-9), 0)

    total, total_sq = total.cpu(), total_sq.cpu()
    mean = total / measured  # (K, K)
    if measured > 1:
        var = (total_sq / measured - mean * mean).clamp(min=0.0) * measured / (measured - 1)
        err = (var / measured).sqrt()
    else:
        err = torch.zeros_like(mean)
    model.eval()
    return AffinityStats(
        matrix=mean.tolist(),
        stderr=err.tolist(),
        measurements=measured,
        train_loss={n: loss_sum[n] / steps for n in names},
    )


class _BatchStream:
    """Endless batches of one task: a seeded length-bucketed order, reshuffled when it runs out."""

    def __init__(self, features: list[Features], batch_size: int, seed: int):
        from polytask.data.batching import bucket_batches

        self._make = lambda cycle: bucket_batches(
            [len(f["input_ids"]) for f in features], batch_size, True, seed=seed + 7 * cycle
        )
        self._cycle = 0
        self._queue = list(self._make(0))

    def next(self) -> list[int]:
        if not self._queue:
            self._cycle += 1
            self._queue = list(self._make(self._cycle))
        return self._queue.pop(0)


# ---- groupings ------------------------------------------------------------------------------
def suggest_groupings(matrix: list[list[float]], names: list[str], max_groups: int = 3) -> list[Grouping]:
    """The best partition of the tasks into k groups, for k = 1 .. min(#tasks, max_groups).

    A partition's score is the mean over tasks of the affinity each task receives from the other
    members of its group: ``mean_{j in G(i), j != i} Z_{j->i}``, and 0 for a task alone. Every
    partition is scored when there are at most ``MAX_EXACT_PARTITIONS`` of them; otherwise a
    deterministic local search (move one task at a time while the score rises) is used.

    Args:
        matrix: (K, K) affinities, ``matrix[i][j] = Z_{i->j}``.
        names: the K task names, in matrix order.
        max_groups: the largest number of groups to suggest.

    Returns:
        One ``Grouping`` per k, in increasing k.
    """
    n = len(names)
    if len(matrix) != n or any(len(row) != n for row in matrix):
        shape = f"{len(matrix)}x{'/'.join(sorted({str(len(r)) for r in matrix})) or 0}"
        raise ValueError(f"the affinity matrix must be {n}x{n} (one row and column per task name); got {shape}")
    if len(set(names)) != n:
        raise ValueError(f"task names must be unique; got {names}")
    if max_groups < 1:
        raise ValueError(f"max_groups must be at least 1; got {max_groups}")
    z = [[float(v) for v in row] for row in matrix]
    out = []
    for k in range(1, min(n, max_groups) + 1):
        if stirling2(n, k) <= MAX_EXACT_PARTITIONS:
            best = max(_partitions(n, k), key=lambda labels: _score(labels, z))
            exact = True
        else:
            best, exact = _local_search(n, k, z), False
        groups = [[names[i] for i in range(n) if best[i] == g] for g in range(k)]
        out.append(Grouping(groups=groups, score=_score(best, z), exact=exact))
    return out


def grouping_score(groups: list[list[str]], matrix: list[list[float]], names: list[str]) -> float:
    """The score ``suggest_groupings`` gives a partition (every task in exactly one group)."""
    index = {name: i for i, name in enumerate(names)}
    labels = [0] * len(names)
    seen = set()
    for g, group in enumerate(groups):
        for name in group:
            if name not in index:
                raise ValueError(f"unknown task {name!r} in groups; known: {', '.join(names)}")
            labels[index[name]] = g
            seen.add(name)
    if len(seen) != len(names) or sum(len(g) for g in groups) != len(names):
        raise ValueError("groups must hold every task exactly once")
    return _score(labels, [[float(v) for v in row] for row in matrix])


def _score(labels: list[int] | tuple[int, ...], z: list[list[float]]) -> float:
    """Mean over tasks of the mean affinity onto it from its group mates (0 alone)."""
    n = len(labels)
    total = 0.0
    for i in range(n):
        mates = [j for j in range(n) if j != i and labels[j] == labels[i]]
        if mates:
            total += sum(z[j][i] for j in mates) / len(mates)
    return total / n


def stirling2(n: int, k: int) -> int:
    """Number of partitions of n items into k non-empty groups (Stirling number of the 2nd kind)."""
    return sum((-1) ** i * math.comb(k, i) * (k - i) ** n for i in range(k + 1)) // math.factorial(k)


def _partitions(n: int, k: int) -> Iterator[tuple[int, ...]]:
    """Every partition of range(n) into exactly k groups, as group labels in first-use order
    (restricted growth strings, so each partition appears once)."""

    def grow(prefix: list[int], used: int) -> Iterator[tuple[int, ...]]:
        i = len(prefix)
        if i == n:
            if used == k:
                yield tuple(prefix)
            return
        if used + (n - i) < k:  # not enough items left to open the missing groups
            return
        for g in range(min(used + 1, k)):
            yield from grow([*prefix, g], max(used, g + 1))

    return grow([], 0)


def _local_search(n: int, k: int, z: list[list[float]]) -> list[int]:
    """Hill climbing from a round-robin start: move one task to another group, or swap two tasks
    of different groups, while the score rises (groups never empty)."""
    labels = [i % k for i in range(n)]
    best = _score(labels, z)
    improved = True
    while improved:
        improved = False
        trials = []
        for i in range(n):
            if labels.count(labels[i]) > 1:
                trials += [[*labels[:i], g, *labels[i + 1:]] for g in range(k) if g != labels[i]]
            for j in range(i + 1, n):
                if labels[i] != labels[j]:
                    swapped = [*labels]
                    swapped[i], swapped[j] = labels[j], labels[i]
                    trials.append(swapped)
        for trial in trials:
            s = _score(trial, z)
            if s > best + 1e-12:
                labels, best, improved = trial, s, True
                break
    return _relabel(labels)


def _relabel(labels: list[int]) -> list[int]:
    """Group labels in first-use order (the form ``_partitions`` yields)."""
    order: dict[int, int] = {}
    return [order.setdefault(g, len(order)) for g in labels]


# ---- heatmap --------------------------------------------------------------------------------
def format_value(v: float) -> str:
    """Affinities are often tiny (a lookahead step is small): scientific below 0.01."""
    return f"{v:.1e}" if v != 0 and abs(v) < 0.01 else f"{v:.3f}"


def plot_affinity(matrix: list[list[float]], names: list[str], path: str | Path, title: str = "inter-task affinity") -> Path:
    """Write a heatmap PNG: rows are the source task i, columns the target j, values annotated,
    diverging colours centred at 0 (blue: i helps j, red: i hurts j).

    The colour scale is set by the off-diagonal entries, the ones that say which tasks help each
    other; the diagonal (a task's effect on itself, usually far larger) is grey, value annotated.
    """
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    path = Path(path)
    n = len(names)
    values = np.asarray(matrix, dtype=float).reshape(n, n)  # (K, K)
    off = ~np.eye(n, dtype=bool)
    limit = float(np.abs(values[off]).max()) if n > 1 else 0.0
    limit = limit or float(np.abs(values).max()) or 1e-12
    cmap = colormaps["RdBu"].with_extremes(bad="#d9d9d9")
    size = 1.6 + 0.9 * n
    fig = Figure(figsize=(size + 1.4, size))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_where(~off, values), cmap=cmap,
                      norm=TwoSlopeNorm(vmin=-limit, vcenter=0.0, vmax=limit))
    ax.set_xticks(range(n), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=names)
    ax.set_xlabel("target task j (its loss)")
    ax.set_ylabel("source task i (its lookahead step)")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            v = float(values[i, j])
            ax.text(j, i, format_value(v), ha="center", va="center", fontsize=8,
                    color="white" if i != j and abs(v) > 0.6 * limit else "black")
    fig.colorbar(image, ax=ax, label="Z(i->j) = 1 - L_j(after i's step) / L_j(before)")
    fig.text(0.01, 0.01, "grey diagonal: a task's effect on itself", fontsize=7, color="#555555")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_with(path, lambda tmp: fig.savefig(tmp, dpi=120))
