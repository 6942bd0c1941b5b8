"""Loss weightings: formulas, learned weights moving the right way, and every user-facing error."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polytask.errors import ConfigError
from polytask.multitask.weighting import (
    WEIGHTINGS,
    GradNormWeighting,
    LossWeighting,
    build_weighting,
)

TASKS = ["a", "b", "c"]


def t(x: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(x, requires_grad=grad)


# ---- shared battery over every registered member ----------------------------------------------
@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_member_builds_and_weights_random_losses(name):
    weighting = build_weighting(name, TASKS)
    assert isinstance(weighting, LossWeighting)
    assert isinstance(weighting, nn.Module)
    gen = torch.Generator().manual_seed(0)
    raw = torch.rand(3, generator=gen) + 0.1
    losses = {task: raw[i].clone().requires_grad_(True) for i, task in enumerate(TASKS)}
    total = weighting(losses)
    assert total.dim() == 0
    assert torch.isfinite(total)
    total.backward()
    for task, loss in losses.items():
        assert loss.grad is not None, task
        assert torch.isfinite(loss.grad) and loss.grad > 0, task
    weights = weighting.weights()
    assert list(weights) == TASKS
    assert all(isinstance(w, float) and math.isfinite(w) for w in weights.values())


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_member_accepts_a_single_present_task(name):
    weighting = build_weighting(name, TASKS)
    total = weighting({"b": t(0.7, grad=True)})
    assert torch.isfinite(total)


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_member_rejects_a_loss_for_an_unknown_task(name):
    weighting = build_weighting(name, TASKS)
    with pytest.raises(ValueError, match="loss for unknown task"):
        weighting({"zzz": t(1.0)})
    with pytest.raises(ValueError, match="no task losses"):
        weighting({})


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_member_state_dict_round_trips(name):
    first = build_weighting(name, TASKS)
    # Move every piece of state away from its start, as training would, before saving it.
    with torch.no_grad():
        for p in first.parameters():
            p.add_(torch.linspace(0.1, 0.5, p.numel()).view_as(p))
        for b in first.buffers():
            if b.dtype == torch.bool:
                b.fill_(True)
            elif b.is_floating_point():
                b.add_(torch.linspace(0.2, 0.6, b.numel()).view_as(b))
            else:
                b.add_(3)
    for epoch in range(3):
        first.end_epoch({task: 1.0 + i + epoch for i, task in enumerate(TASKS)})
    second = build_weighting(name, TASKS)
    second.load_state_dict(first.state_dict())
    assert second.state_dict().keys() == first.state_dict().keys()
    for k, v in first.state_dict().items():
        assert torch.equal(second.state_dict()[k], v), k
    assert second.weights() == first.weights()
    if first.state_dict():  # a member with state: the round trip carried it
        assert build_weighting(name, TASKS).weights() != first.weights() or name == "rlw"


# ---- equal ------------------------------------------------------------------------------------
def test_equal_is_the_mean_of_two_and_three_tasks():
    weighting = build_weighting("equal", TASKS)
    assert weighting({"a": t(1.0), "b": t(3.0)}).item() == pytest.approx(2.0)
    assert weighting({"a": t(1.0), "b": t(3.0), "c": t(8.0)}).item() == pytest.approx(4.0)
    assert weighting.weights() == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_equal_single_present_task_is_unchanged():
    weighting = build_weighting("equal", TASKS)
    assert weighting({"c": t(0.37)}).item() == pytest.approx(0.37)


# ---- static -----------------------------------------------------------------------------------
def test_static_is_the_weighted_sum_with_missing_tasks_at_one():
    weighting = build_weighting("static", TASKS, {"weights": {"a": 2, "c": 0.5}})
    total = weighting({"a": t(1.0), "b": t(3.0), "c": t(4.0)})
    assert total.item() == pytest.approx(2 * 1.0 + 1.0 * 3.0 + 0.5 * 4.0)
    assert weighting({"a": t(1.5)}).item() == pytest.approx(3.0)
    assert weighting.weights() == {"a": 2.0, "b": 1.0, "c": 0.5}


def test_static_weight_for_unknown_task():
    with pytest.raises(ConfigError, match="weight for unknown task 'x'; tasks: a, b, c") as e:
        build_weighting("static", TASKS, {"weights": {"x": 1.0}})
    assert e.value.field == "multitask.weighting.options.weights"


def test_static_negative_weight():
    with pytest.raises(ConfigError, match="loss weight for task 'a' must be >= 0; got -1.0"):
        build_weighting("static", TASKS, {"weights": {"a": -1}})


def test_static_weights_must_be_numbers():
    with pytest.raises(ConfigError, match="option 'weights' must map task names to numbers"):
        build_weighting("static", TASKS, {"weights": {"a": "heavy"}})


# ---- uncertainty ------------------------------------------------------------------------------
def test_uncertainty_formula_and_parameters():
    weighting = build_weighting("uncertainty", ["a", "b"])
    params = list(weighting.parameters())
    assert params and all(isinstance(p, nn.Parameter) and p.requires_grad for p in params)
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([0.5, -1.0]))
    total = weighting({"a": t(2.0), "b": t(0.5)})
    expected = math.exp(-0.5) * 2.0 + 0.5 + math.exp(1.0) * 0.5 - 1.0
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert weighting.weights() == pytest.approx({"a": math.exp(-0.5), "b": math.exp(1.0)})


def test_uncertainty_log_variances_move_to_log_loss():
    weighting = build_weighting("uncertainty", ["a", "b"])
    opt = torch.optim.Adam(weighting.parameters(), lr=0.05)
    losses = {"a": t(2.0), "b": t(0.5)}

    def step(n: int) -> None:
        for _ in range(n):
            opt.zero_grad()
            weighting(losses).backward()
            opt.step()

    step(5)
    s_a, s_b = weighting.log_vars.tolist()
    assert s_a > 0 and s_b < 0  # towards log 2 > 0 and log 0.5 < 0
    step(600)
    s_a, s_b = weighting.log_vars.tolist()
    assert s_a == pytest.approx(math.log(2.0), abs=0.05)
    assert s_b == pytest.approx(math.log(0.5), abs=0.05)


# ---- dwa --------------------------------------------------------------------------------------
def test_dwa_weights_follow_the_formula():
    weighting = build_weighting("dwa", ["a", "b"], {"temperature": 2.0})
    assert weighting.weights() == {"a": 1.0, "b": 1.0}
    weighting.end_epoch({"a": 1.0, "b": 2.0})
    assert weighting.weights() == {"a": 1.0, "b": 1.0}  # a ratio needs two epochs
    assert weighting({"a": t(1.0), "b": t(3.0)}).item() == pytest.approx(4.0)
    weighting.end_epoch({"a": 0.5, "b": 1.8})
    # r_a = 0.5, r_b = 0.9; w_a = 2 e^{0.25} / (e^{0.25} + e^{0.45}) = 2 / (1 + e^{0.2}).
    w_a = 2 / (1 + math.exp(0.2))
    w_b = 2 - w_a
    assert w_a == pytest.approx(0.900332, abs=1e-6)
    weights = weighting.weights()
    assert weights == pytest.approx({"a": w_a, "b": w_b}, abs=1e-9)
    assert sum(weights.values()) == pytest.approx(2.0)
    total = weighting({"a": t(1.0), "b": t(3.0)})
    assert total.item() == pytest.approx(w_a * 1.0 + w_b * 3.0, rel=1e-6)
    # The slower-falling task (b) gets the larger weight.
    assert weights["b"] > weights["a"]


def test_dwa_three_tasks_sum_to_k_and_state_is_saved():
    weighting = build_weighting("dwa", TASKS, {"temperature": 1.0})
    for losses in ({"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 0.9, "b": 0.5, "c": 1.2}):
        weighting.end_epoch(losses)
    assert sum(weighting.weights().values()) == pytest.approx(3.0)
    restored = build_weighting("dwa", TASKS, {"temperature": 1.0})
    restored.load_state_dict(weighting.state_dict())
    assert restored.weights() == weighting.weights()


def test_dwa_errors():
    with pytest.raises(ConfigError, match="temperature must be > 0; got 0.0"):
        build_weighting("dwa", TASKS, {"temperature": 0})
    weighting = build_weighting("dwa", TASKS)
    with pytest.raises(ValueError, match="missing: c"):
        weighting.end_epoch({"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match="finite positive loss for task 'b'"):
        weighting.end_epoch({"a": 1.0, "b": 0.0, "c": 1.0})


# ---- gradnorm ---------------------------------------------------------------------------------
def test_gradnorm_downweights_the_large_gradient_task():
    torch.manual_seed(0)
    shared = nn.Linear(4, 8)
    head_a, head_b = nn.Linear(8, 1), nn.Linear(8, 1)
    x = torch.randn(32, 4)
    y = torch.randn(32, 1)
    weighting = build_weighting("gradnorm", ["a", "b"])
    assert isinstance(weighting, GradNormWeighting)
    opt = torch.optim.Adam([weighting.task_weights], lr=0.02)
    for _ in range(150):
        h = torch.relu(shared(x))  # (32, 8)
        losses = {
            # Task a's targets are 20x larger, so its gradient on the shared layer is far larger.
            "a": nn.functional.mse_loss(head_a(h), 20 * y),
            "b": nn.functional.mse_loss(head_b(h), y),
        }
        gn = weighting.gradnorm_loss(losses, list(shared.parameters()))
        opt.zero_grad()
        gn.backward()
        # L_grad reaches only the weights, never the network.
        assert shared.weight.grad is None and head_a.weight.grad is None
        opt.step()
        weighting.renormalise()
        assert sum(weighting.weights().values()) == pytest.approx(2.0, abs=1e-5)
    weights = weighting.weights()
    assert weights["a"] < weights["b"]
    assert weights["a"] < 0.5  # far from the initial 1.0, not a rounding drift
    # forward uses the weights as constants: the network's loss does not train them.
    weighting.task_weights.grad = None
    total = weighting(losses)
    assert total.item() == pytest.approx(
        weights["a"] * losses["a"].item() + weights["b"] * losses["b"].item(), rel=1e-5
    )
    total.backward()
    assert weighting.task_weights.grad is None
    assert shared.weight.grad is not None


def test_gradnorm_records_initial_losses_once():
    weighting = build_weighting("gradnorm", ["a", "b"])
    w = nn.Parameter(torch.tensor(1.0))
    weighting.gradnorm_loss({"a": 2.0 * w, "b": 3.0 * w}, [w])
    weighting.gradnorm_loss({"a": 1.0 * w, "b": 1.0 * w}, [w])
    assert weighting.initial_losses.tolist() == [2.0, 3.0]


def test_gradnorm_needs_every_task_in_the_step():
    weighting = build_weighting("gradnorm", TASKS)
    w = nn.Parameter(torch.tensor(1.0))
    with pytest.raises(ValueError, match="every task's loss in the same step; missing: b, c"):
        weighting.gradnorm_loss({"a": w * 2}, [w])


def test_gradnorm_alpha_must_be_non_negative():
    with pytest.raises(ConfigError, match="alpha must be >= 0; got -1.0"):
        build_weighting("gradnorm", TASKS, {"alpha": -1})


# ---- build_weighting --------------------------------------------------------------------------
def test_unknown_weighting_lists_known_names():
    with pytest.raises(ConfigError) as e:
        build_weighting("nope", TASKS)
    message = str(e.value)
    assert "unknown loss weighting 'nope'" in message
    assert "multitask.weighting.type" in message
    assert f"known: {', '.join(WEIGHTINGS.names())}" in message and "gradnorm" in message


def test_unknown_option_names_allowed_keys():
    with pytest.raises(
        ConfigError,
        match="unknown option\\(s\\) temp for loss weighting 'dwa'; allowed: temperature",
    ) as e:
        build_weighting("dwa", TASKS, {"temp": 3})
    assert e.value.field == "multitask.weighting.options"


def test_option_on_weighting_without_options():
    with pytest.raises(ConfigError, match="loss weighting 'equal' takes no options; got alpha"):
        build_weighting("equal", TASKS, {"alpha": 1})


def test_option_must_be_a_number():
    with pytest.raises(ConfigError, match="option 'temperature' must be a number; got 'hot'"):
        build_weighting("dwa", TASKS, {"temperature": "hot"})


def test_no_tasks_and_duplicate_tasks():
    with pytest.raises(ConfigError, match="no tasks to weight"):
        build_weighting("equal", [])
    with pytest.raises(ConfigError, match="task 'a' is named twice"):
        build_weighting("equal", ["a", "a"])
