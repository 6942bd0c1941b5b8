"""``imtl`` (IMTL-G): the combined gradient projects equally on every task's unit gradient."""

from __future__ import annotations

import torch

from polytask.multitask.surgery import SURGERIES, build_surgery


def test_imtl_projections_are_equal_and_weights_sum_to_one() -> None:
    torch.manual_seed(0)
    grads = torch.randn(3, 50) * torch.tensor([[1.0], [10.0], [0.1]])  # very different sizes
    combined = build_surgery("imtl").combine(grads)
    units = grads / grads.norm(dim=1, keepdim=True)
    proj = units @ combined  # (K,)
    assert torch.allclose(proj, proj[0].expand(3), rtol=1e-4), proj
    # combined = sum_i a_i g_i with sum a_i = 1: recover a by least squares
    a = torch.linalg.lstsq(grads.T.double(), combined.double().unsqueeze(1)).solution.squeeze(1)
    assert abs(float(a.sum()) - 1.0) < 1e-6
    assert SURGERIES.get("imtl").needs_all_tasks


def test_imtl_two_tasks_by_hand_and_degenerate_cases() -> None:
    g = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    # Orthogonal: a_1 * 1 = a_2 * 3 with a_1 + a_2 = 1 -> a = (3/4, 1/4): combined (0.75, 0.75)
    assert torch.allclose(build_surgery("imtl").combine(g), torch.tensor([0.75, 0.75]), atol=1e-6)
    same = torch.tensor([[2.0, 2.0], [2.0, 2.0]])
    assert torch.allclose(build_surgery("imtl").combine(same), torch.tensor([2.0, 2.0]), atol=1e-6)
    one = torch.tensor([[1.0, -2.0]])
    assert torch.equal(build_surgery("imtl").combine(one), one[0])


def test_imtl_runs_in_the_loop(tmp_path, tiny_encoder_dir) -> None:  # noqa: ANN001
    from polytask.config import parse_config
    from polytask.training.loop import train
    from tests.unit.test_all_tasks_step import two_tasks

    result = train(parse_config(two_tasks(tmp_path, tiny_encoder_dir, {"surgery": {"type": "imtl"}}, epochs=2)))
    assert result.steps == 16 and result.dev["sent/accuracy"] > 0.7, result.dev
