"""Which batches an epoch holds, in which order, on which process.

Two step modes (``multitask.step``):

- ``one_task``: every micro-batch is one task's. Without a sampler an epoch holds every batch of
  every task once, shuffled together (tasks are seen in proportion to their size); with one, as
  many batches, each from the task the sampler draws.
- ``all_tasks``: every optimizer step takes one batch of every task (what GradNorm and gradient
  surgery need: all task losses of the same weights). An epoch lasts until the largest task has
  been seen once; a smaller task starts its batches again in a new seeded order when they run out.

Everything is seeded by (seed, epoch), so a resumed run sees the same order. Under several
processes each takes its share; every process runs the same number of steps (a few leftover
batches are dropped).
"""

from __future__ import annotations

import random
from typing import Any

from polytask.data.batching import bucket_batches

Feats = dict[str, dict[str, list[dict]]]
Item = tuple[str, list[int]]  # (task, example indices)


def task_batches(feats: Feats, tc: Any, name: str, seed: int) -> list[list[int]]:
    """One seeded pass over a task's training examples, as length-bucketed batches."""
    lengths = [len(f["input_ids"]) for f in feats[name]["train"]]
    per_chunk = 50 if tc.bucket_by_length else 1
    return bucket_batches(lengths, tc.batch_size, True, seed=seed, bucket_batches_per_chunk=per_chunk)


def _seed(tc: Any, epoch: int, task_index: int, cycle: int = 0) -> int:
    return tc.seed * 1000 + epoch * 31 + task_index + (7 * cycle + 1 if cycle else 0)


def group_size(n_tasks: int, tc: Any, mode: str) -> int:
    """Micro-batches per optimizer step."""
    return tc.grad_accum_steps * (n_tasks if mode == "all_tasks" else 1)


def epoch_batches(
    feats: Feats,
    tc: Any,
    epoch: int,
    world: int = 1,
    rank: int = 0,
    sampler: Any = None,
    run_epochs: float = 1.0,
    mode: str = "one_task",
) -> list[Item]:
    """This epoch's micro-batches for process ``rank`` of ``world``, in training order.

    In ``all_tasks`` mode the list is a sequence of rounds, each one batch of every task in task
    order; ``group_size`` consecutive items make one optimizer step.
    """
    if mode == "all_tasks":
        return _all_tasks(feats, tc, epoch, world, rank)
    per_task = {name: task_batches(feats, tc, name, _seed(tc, epoch, t_i)) for t_i, name in enumerate(feats)}
    rng = random.Random(tc.seed * 7919 + epoch)
    out: list[Item] = []
    if sampler is None:
        out = [(name, b) for name, batches in per_task.items() for b in batches]
        rng.shuffle(out)
    else:
        n = sum(len(b) for b in per_task.values())
        taken = dict.fromkeys(per_task, 0)
        t_index = {name: i for i, name in enumerate(feats)}
        for i in range(n):
            name = sampler.sample(min(1.0, (epoch + i / n) / max(run_epochs, 1e-9)), rng)
            stream, k = per_task[name], taken[name]
            if k and k % len(stream) == 0:  # this task's batches ran out: a new seeded order
                stream = task_batches(feats, tc, name, _seed(tc, epoch, t_index[name], k // len(stream)))
                per_task[name] = stream
            out.append((name, stream[k % len(stream)]))
            taken[name] = k + 1
    if world > 1:
        usable = len(out) - len(out) % world
        out = out[rank:usable:world]
    return out


def _all_tasks(feats: Feats, tc: Any, epoch: int, world: int, rank: int) -> list[Item]:
    names = list(feats)
    firsts = {name: task_batches(feats, tc, name, _seed(tc, epoch, i)) for i, name in enumerate(names)}
    longest = max(len(b) for b in firsts.values())
    # Global rounds this epoch, a multiple of the process count: round r goes to process r % world,
    # so one process with accumulation k sees the same batches as k processes.
    rounds = max(world, longest - longest % world)
    streams: dict[str, list[list[int]]] = {}
    for i, name in enumerate(names):
        stream, cycle = list(firsts[name]), 0
        while len(stream) < rounds:
            cycle += 1
            stream += task_batches(feats, tc, name, _seed(tc, epoch, i, cycle))
        streams[name] = stream
    return [(name, streams[name][r]) for r in range(rank, rounds, world) for name in names]
