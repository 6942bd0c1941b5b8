"""``rlw``: weights are a softmax of a standard normal draw, new every round, seeded, resumable."""

from __future__ import annotations

import torch

from polytask.multitask.weighting import WEIGHTINGS, build_weighting


class _Step:
    rounds = 1

    def __init__(self) -> None:
        self.got: dict[str, torch.Tensor] = {}

    def backward(self, task: str, objective: torch.Tensor) -> None:
        self.got[task] = objective.detach()


def test_rlw_draws_softmax_normal_weights_each_round() -> None:
    w = build_weighting("rlw", ["a", "b", "c"], {"seed": 7})
    assert WEIGHTINGS.get("rlw").needs_all_tasks
    losses = {"a": torch.tensor(1.0), "b": torch.tensor(2.0), "c": torch.tensor(4.0)}
    step = _Step()
    w.backward(losses, step)
    expected = torch.softmax(torch.randn(3, generator=torch.Generator().manual_seed(7 * 1_000_003)), 0)
    assert torch.allclose(w.current, expected)
    assert abs(sum(w.weights().values()) - 1.0) < 1e-6
    for i, t in enumerate("abc"):
        assert torch.allclose(step.got[t], expected[i] * losses[t])
    first = w.current.clone()
    w.backward(losses, _Step())
    assert not torch.allclose(first, w.current)  # a new draw every round
    assert int(w.draws) == 2


def test_rlw_state_round_trip_gives_the_same_next_draw() -> None:
    a = build_weighting("rlw", ["a", "b"], {"seed": 3})
    for _ in range(5):
        a.draw()
    b = build_weighting("rlw", ["a", "b"], {"seed": 3})
    assert not torch.equal(a.current, b.current)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.draw(), b.draw())  # a resumed run draws what the uninterrupted one does


def test_rlw_trains_two_tasks_in_the_loop(tmp_path, tiny_encoder_dir) -> None:  # noqa: ANN001
    from polytask.config import parse_config
    from polytask.training.loop import read_metrics, train
    from tests.unit.test_all_tasks_step import two_tasks

    result = train(parse_config(two_tasks(tmp_path, tiny_encoder_dir, {"weighting": {"type": "rlw"}},
                                          epochs=2, log_every=1)))
    logged = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert len({round(r["weight/sent"], 6) for r in logged}) == result.steps == 16  # a new draw per step
    assert result.dev["sent/accuracy"] > 0.7, result.dev
