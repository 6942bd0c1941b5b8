"""``famo``: loss-scaled objectives, logits moved towards the task whose loss fell least."""

from __future__ import annotations

import math

import torch

from polytask.multitask.weighting import WEIGHTINGS, build_weighting


class _Step:
    rounds = 1

    def __init__(self, after: dict[str, float] | None = None) -> None:
        self.got: dict[str, torch.Tensor] = {}
        self.after = after or {}

    def backward(self, task: str, objective: torch.Tensor) -> None:
        self.got[task] = objective

    def losses_now(self) -> dict[str, torch.Tensor]:
        return {t: torch.tensor(v) for t, v in self.after.items()}


def test_famo_gradient_is_each_task_gradient_over_its_loss() -> None:
    w = build_weighting("famo", ["a", "b"])
    assert WEIGHTINGS.get("famo").needs_all_tasks
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    losses = {"a": (x**2).sum(), "b": 3 * x.sum()}  # 5 and 9
    step = _Step({"a": 4.0, "b": 8.0})
    w.backward(losses, step)
    total = sum(step.got.values())
    (g,) = torch.autograd.grad(total, [x])
    # z = (1/2, 1/2): c = 1/2 (1/5 + 1/9); direction sum_i (z_i / c) grad L_i / L_i
    c = 0.5 * (1 / 5 + 1 / 9)
    expected = (0.5 / c) * (torch.tensor([2.0, 4.0]) / 5 + torch.tensor([3.0, 3.0]) / 9)
    assert torch.allclose(g, expected, atol=1e-5)


def test_famo_weights_the_task_whose_loss_fell_least() -> None:
    w = build_weighting("famo", ["a", "b"])
    for _ in range(3):
        step = _Step({"a": 0.5, "b": 0.99})  # a halves its loss, b barely moves
        w.backward({"a": torch.tensor(1.0), "b": torch.tensor(1.0)}, step)
        w.after_step(step)
    weights = w.weights()
    assert weights["b"] > weights["a"] and math.isclose(sum(weights.values()), 1.0, abs_tol=1e-6)
    # First Adam step moves each logit by lr (bias-corrected m / sqrt(v) = sign of the gradient).
    fresh = build_weighting("famo", ["a", "b"], {"weight_decay": 0.0})
    step = _Step({"a": 0.5, "b": 0.99})
    fresh.backward({"a": torch.tensor(1.0), "b": torch.tensor(1.0)}, step)
    fresh.after_step(step)
    assert torch.allclose(fresh.logits, torch.tensor([-0.025, 0.025]), atol=1e-6)


def test_famo_state_round_trip() -> None:
    a = build_weighting("famo", ["a", "b"])
    step = _Step({"a": 0.5, "b": 0.9})
    a.backward({"a": torch.tensor(1.0), "b": torch.tensor(1.0)}, step)
    a.after_step(step)
    b = build_weighting("famo", ["a", "b"])
    assert not torch.equal(a.logits, b.logits)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        s = _Step({"a": 0.7, "b": 0.6})
        m.backward({"a": torch.tensor(0.9), "b": torch.tensor(0.8)}, s)
        m.after_step(s)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.adam_v, b.adam_v)


def test_famo_trains_two_tasks_in_the_loop(tmp_path, tiny_encoder_dir) -> None:  # noqa: ANN001
    from polytask.config import parse_config
    from polytask.training.loop import read_metrics, train
    from tests.unit.test_all_tasks_step import two_tasks

    result = train(parse_config(two_tasks(tmp_path, tiny_encoder_dir, {"weighting": {"type": "famo"}},
                                          epochs=2, log_every=1)))
    logged = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert len({round(r["weight/sent"], 6) for r in logged}) > 3  # the weights move every step
    assert result.steps == 16 and result.dev["sent/accuracy"] > 0.7, result.dev
