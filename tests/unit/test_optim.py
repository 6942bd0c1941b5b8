"""The optimiser: AdamW with the fused kernel where the device has one, same updates as foreach."""

from __future__ import annotations

import torch
from torch import nn

from polytask.training.optim import adamw


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 3))


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 5) -> None:
    torch.manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 50, (4, 6))
        loss = model(ids).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_cpu_gets_the_fused_kernel_and_matches_foreach() -> None:
    fused_model, ref_model = _model(0), _model(0)
    fused = adamw(fused_model.parameters(), 1e-2, weight_decay=0.01)  # a generator is fine
    ref = torch.optim.AdamW(ref_model.parameters(), lr=1e-2, weight_decay=0.01, foreach=True)
    assert fused.defaults["fused"] is True
    assert len(fused.param_groups[0]["params"]) == 3
    _train(fused_model, fused)
    _train(ref_model, ref)
    start = _model(0)
    for a, b, a0 in zip(fused_model.parameters(), ref_model.parameters(), start.parameters(), strict=True):
        assert not torch.equal(a, a0)  # it trained
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # The state has the usual layout, so checkpoints of either kind load into the other.
    assert set(fused.state_dict()["state"][0]) == set(ref.state_dict()["state"][0])


def test_param_groups_keep_their_settings_and_an_explicit_foreach_wins() -> None:
    model = _model(0)
    groups = [{"params": (p for p in model[0].parameters()), "lr": 0.5},
              {"params": list(model[1].parameters()), "weight_decay": 0.0}]
    opt = adamw(groups, 1e-3, device="cpu")
    assert [len(g["params"]) for g in opt.param_groups] == [1, 2]
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[1]["lr"] == 1e-3
    plain = adamw(model.parameters(), 1e-3, foreach=True)
    assert plain.defaults["foreach"] is True and not plain.defaults["fused"]
