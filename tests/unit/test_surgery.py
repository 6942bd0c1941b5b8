"""Gradient surgeries: PCGrad and CAGrad maths, grad flattening, and every user-facing error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polytask.errors import ConfigError
from polytask.multitask.surgery import (
    SURGERIES,
    CAGrad,
    GradientSurgery,
    PCGrad,
    assign_grads,
    build_surgery,
    flatten_grads,
)

D = torch.float64


def tensor(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=D)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


TWO_CONFLICTING = tensor([[1.0, 0.0], [-1.0, 1.0]])  # (2, 2) dot = -1
# Every pair conflicts, and in every projection order each g_i' ends up non-negative against
# every original g_j (for K >= 3 that is not guaranteed in general; see pcgrad's docstring).
THREE_CONFLICTING = tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])  # (3, 3)


# ---- shared battery over every registered member ----------------------------------------------
@pytest.mark.parametrize("name", SURGERIES.names())
def test_every_member_combines_to_a_finite_deterministic_vector(name):
    surgery = build_surgery(name)
    assert isinstance(surgery, GradientSurgery)
    grads = torch.randn(4, 10, generator=gen(1), dtype=D)  # (K, P)
    out = surgery.combine(grads, generator=gen(7))
    assert out.shape == (10,)
    assert out.dtype == grads.dtype
    assert torch.isfinite(out).all()
    again = surgery.combine(grads, generator=gen(7))
    assert torch.equal(out, again)
    # float32 input and a single task also work
    single = surgery.combine(grads[:1].float(), generator=gen(7))
    assert single.shape == (10,) and torch.isfinite(single).all()


@pytest.mark.parametrize("name", SURGERIES.names())
def test_every_member_leaves_its_input_alone_and_handles_zero_gradients(name):
    surgery = build_surgery(name)
    grads = THREE_CONFLICTING.clone()
    surgery.combine(grads, generator=gen(0))
    assert torch.equal(grads, THREE_CONFLICTING)
    zeros = torch.zeros(3, 5, dtype=D)
    assert torch.equal(surgery.combine(zeros, generator=gen(0)), torch.zeros(5, dtype=D))


@pytest.mark.parametrize("name", SURGERIES.names())
def test_every_member_rejects_grads_that_are_not_k_by_p(name):
    surgery = build_surgery(name)
    with pytest.raises(ValueError, match=r"grads must be a \(K, P\) tensor"):
        surgery.combine(torch.zeros(5, dtype=D))


# ---- PCGrad ---------------------------------------------------------------------------------
def assert_no_conflict_left(grads: torch.Tensor, projected: torch.Tensor) -> None:
    k = grads.shape[0]
    for i in range(k):
        for j in range(k):
            if i != j:
                dot = torch.dot(projected[i], grads[j]).item()
                assert dot >= -1e-12, (i, j, dot)


@pytest.mark.parametrize("grads", [TWO_CONFLICTING, THREE_CONFLICTING], ids=["k2", "k3"])
@pytest.mark.parametrize("seed", range(8))
def test_pcgrad_leaves_no_negative_dot_product_with_the_original_gradients(grads, seed):
    projected = PCGrad(PCGrad.options_class()).project(grads, gen(seed))  # (K, P)
    assert_no_conflict_left(grads, projected)


def test_pcgrad_projects_two_conflicting_gradients_by_hand():
    projected = build_surgery("pcgrad").project(TWO_CONFLICTING, gen(0))
    # g1' = g1 - (-1 / 2) g2 = [0.5, 0.5];  g2' = g2 - (-1 / 1) g1 = [0, 1]
    assert torch.allclose(projected, tensor([[0.5, 0.5], [0.0, 1.0]]), atol=1e-12)
    combined = build_surgery("pcgrad").combine(TWO_CONFLICTING, gen(0))
    assert torch.allclose(combined, tensor([[0.25, 0.75]])[0], atol=1e-12)
    summed = build_surgery("pcgrad", {"reduction": "sum"}).combine(TWO_CONFLICTING, gen(0))
    assert torch.allclose(summed, tensor([[0.5, 1.5]])[0], atol=1e-12)


def test_pcgrad_projects_against_the_original_gradients():
    # g1 = [1, 0, 0] against g2 then g3 (originals): [0.5, 0.5, 0] then [0.25, 0.5, 0.25];
    # against g3 then g2: [0.5, 0, 0.5] then [0.25, 0.25, 0.5]. Projecting against the already
    # projected g2', g3' would give neither.
    expected = [tensor([[0.25, 0.5, 0.25]])[0], tensor([[0.25, 0.25, 0.5]])[0]]
    seen = set()
    for seed in range(16):
        g1 = build_surgery("pcgrad").project(THREE_CONFLICTING, gen(seed))[0]
        matches = [k for k, e in enumerate(expected) if torch.allclose(g1, e, atol=1e-12)]
        assert len(matches) == 1, g1
        seen.add(matches[0])
    assert seen == {0, 1}  # both orders are drawn


def test_pcgrad_returns_exactly_the_mean_when_nothing_conflicts():
    grads = torch.rand(4, 6, generator=gen(3), dtype=D)  # non-negative: all dots >= 0
    assert (grads @ grads.T >= 0).all()
    assert torch.equal(build_surgery("pcgrad").combine(grads, gen(0)), grads.mean(dim=0))
    summed = build_surgery("pcgrad", {"reduction": "sum"}).combine(grads, gen(0))
    assert torch.equal(summed, grads.sum(dim=0))


def test_pcgrad_is_reproducible_with_a_seeded_generator_and_order_matters():
    grads = torch.randn(5, 8, generator=gen(11), dtype=D)
    pcgrad = build_surgery("pcgrad")
    results = [pcgrad.combine(grads, gen(s)) for s in range(6)]
    assert torch.equal(pcgrad.combine(grads, gen(2)), results[2])
    # with K = 5 random gradients the projection order changes the result for some seed
    assert any(not torch.allclose(results[0], r) for r in results[1:])


# ---- CAGrad ---------------------------------------------------------------------------------
def test_cagrad_at_c_zero_is_the_mean_gradient():
    grads = torch.randn(4, 9, generator=gen(5), dtype=D)
    out = build_surgery("cagrad", {"c": 0}).combine(grads)
    assert torch.allclose(out, grads.mean(dim=0), atol=1e-10)


@pytest.mark.parametrize("grads", [TWO_CONFLICTING, THREE_CONFLICTING], ids=["k2", "k3"])
def test_cagrad_improves_the_worst_task_at_least_as_fast_as_the_mean(grads):
    # The paper's dual: d* = argmax over ||d - g0|| <= c ||g0|| of min_i g_i . d, and d = g0 is
    # in the ball, so min_i g_i . d* >= min_i g_i . g0. The check is on the unrescaled d*
    # (the returned direction times 1 + c^2), since the rescale shrinks every dot product.
    c = 0.5
    cagrad = build_surgery("cagrad", {"c": c})
    out = cagrad.combine(grads)
    assert torch.isfinite(out).all()
    d = out * (1 + c**2)
    g0 = grads.mean(dim=0)
    assert (grads @ d).min() >= (grads @ g0).min() - 1e-9
    assert (grads @ d).min() > (grads @ g0).min()  # here strictly: the mean hurts a task
    # and d stays in the ball around g0
    assert (d - g0).norm() <= c * g0.norm() + 1e-9


def test_cagrad_worst_task_property_on_random_gradients():
    cagrad = build_surgery("cagrad", {"c": 0.5})
    for seed in range(30):
        grads = torch.randn(2 + seed % 4, 6, generator=gen(seed), dtype=D)
        d = cagrad.combine(grads) * 1.25
        assert (grads @ d).min() >= (grads @ grads.mean(dim=0)).min() - 1e-9, seed


def test_cagrad_weights_minimise_the_dual_objective_against_a_grid():
    c = 0.5
    grads = TWO_CONFLICTING
    cagrad = CAGrad(CAGrad.options_class(c=c))
    g0 = grads.mean(dim=0)

    def objective(w: torch.Tensor) -> float:
        g_w = w @ grads
        return (g_w @ g0 + c * g0.norm() * g_w.norm()).item()

    w = cagrad.task_weights(grads)
    assert torch.allclose(w.sum(), torch.tensor(1.0, dtype=D)) and (w >= 0).all()
    grid = min(objective(tensor([[a, 1 - a]])[0]) for a in torch.linspace(0, 1, 2001).tolist())
    # the Adam solve approaches the boundary optimum w = (1, 0) without reaching it
    assert grid == pytest.approx(0.25)
    assert objective(w) <= grid + 1e-2
    assert w[0] > 0.9


def test_cagrad_on_identical_gradients_returns_that_gradient_rescaled():
    # All g_i = g: g0 = g_w = g, so d = g + c ||g|| g / ||g|| = (1 + c) g and the returned
    # d / (1 + c^2) is (1 + c) / (1 + c^2) g, the same direction as g (1.2 g at c = 0.5).
    c = 0.5
    g = tensor([[0.3, -1.2, 2.0]])[0]
    out = build_surgery("cagrad", {"c": c}).combine(g.repeat(3, 1))
    assert torch.allclose(out, (1 + c) / (1 + c**2) * g, atol=1e-7)


# ---- flatten_grads / assign_grads -----------------------------------------------------------
def test_flatten_and_assign_grads_round_trip_with_a_missing_grad():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    layer.weight.sum().backward()  # the bias gets no gradient
    params = list(layer.parameters())
    assert layer.bias.grad is None
    flat = flatten_grads(params)  # (P,)
    assert flat.shape == (3 * 2 + 2,)
    assert torch.equal(flat[:6], torch.ones(6))
    assert torch.equal(flat[6:], torch.zeros(2))

    new = torch.arange(8, dtype=torch.float32)
    assign_grads(params, new)
    assert layer.bias.grad is not None
    assert torch.equal(layer.weight.grad, new[:6].view(2, 3))
    assert torch.equal(layer.bias.grad, new[6:])
    assert torch.equal(flatten_grads(params), new)
    new[0] = 100.0  # the assigned grads do not alias the flat vector
    assert layer.weight.grad[0, 0] == 0.0


def test_assign_grads_rejects_a_vector_of_the_wrong_size():
    layer = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"must have shape \(8,\)"):
        assign_grads(list(layer.parameters()), torch.zeros(7))


def test_flatten_grads_rejects_no_parameters():
    with pytest.raises(ValueError, match="no parameters to flatten"):
        flatten_grads([])


# ---- build_surgery errors -------------------------------------------------------------------
def test_unknown_surgery_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown gradient surgery 'nope'") as info:
        build_surgery("nope")
    message = str(info.value)
    assert "multitask.surgery.type" in message
    assert f"known: {', '.join(SURGERIES.names())}" in message and "pcgrad" in message


def test_negative_c_is_rejected():
    with pytest.raises(ConfigError, match="c must be a finite number >= 0; got -1.0") as info:
        build_surgery("cagrad", {"c": -1})
    assert info.value.field == "multitask.surgery.options"


def test_unknown_option_names_the_allowed_ones():
    with pytest.raises(
        ConfigError,
        match=r"unknown option\(s\) alpha for gradient surgery "
        r"'cagrad'; allowed: c",
    ):
        build_surgery("cagrad", {"alpha": 0.4})
    with pytest.raises(ConfigError, match="allowed: reduction"):
        build_surgery("pcgrad", {"c": 0.5})


def test_badly_typed_options_are_rejected():
    with pytest.raises(ConfigError, match="option 'c' must be a number; got 'big'") as info:
        build_surgery("cagrad", {"c": "big"})
    assert info.value.field == "multitask.surgery.options.c"
    with pytest.raises(ConfigError, match="option 'c' must be a number; got True"):
        build_surgery("cagrad", {"c": True})
    with pytest.raises(ConfigError, match="option 'reduction' must be a string; got 1"):
        build_surgery("pcgrad", {"reduction": 1})
    with pytest.raises(ConfigError, match="reduction must be one of mean, sum; got 'max'"):
        build_surgery("pcgrad", {"reduction": "max"})


def test_import_path_names_a_surgery():
    surgery = build_surgery("polytask.multitask.surgery.pcgrad:PCGrad")
    assert isinstance(surgery, PCGrad)
