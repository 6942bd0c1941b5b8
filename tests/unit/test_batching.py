"""Length-bucketed batching."""

from __future__ import annotations

import random

from polytask.data.batching import bucket_batches


def _lengths(n: int = 1000) -> list[int]:
    rng = random.Random(0)
    return [rng.randint(5, 120) for _ in range(n)]


def _padded(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) for b in batches)


def test_every_index_once_and_batch_sizes() -> None:
    lengths = _lengths()
    for shuffle in (True, False):
        batches = bucket_batches(lengths, 32, shuffle=shuffle, seed=1)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(lengths)))
        assert all(1 <= len(b) <= 32 for b in batches)


def test_seeded_and_epoch_dependent() -> None:
    lengths = _lengths()
    assert bucket_batches(lengths, 16, True, seed=5) == bucket_batches(lengths, 16, True, seed=5)
    assert bucket_batches(lengths, 16, True, seed=5) != bucket_batches(lengths, 16, True, seed=6)


def test_bucketing_cuts_padding() -> None:
    lengths = _lengths()
    bucketed = _padded(bucket_batches(lengths, 32, True, seed=1), lengths)
    plain = _padded(bucket_batches(lengths, 32, True, seed=1, bucket_batches_per_chunk=1), lengths)
    assert bucketed < 0.75 * plain  # measured: about 0.55 of the padded tokens here


def test_inference_order_longest_first() -> None:
    lengths = [3, 9, 1, 7]
    assert bucket_batches(lengths, 2, shuffle=False) == [[1, 3], [0, 2]]
