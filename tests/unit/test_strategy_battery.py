"""One battery over every transfer strategy in the registry (peft's shared tester, for polytask):
set up on a tiny model it trains (finite gradients where it lets weights train, a finite penalty),
its checkpoint holds what it says, and a saved run reloads to the metrics it was saved with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polytask.config import parse_config
from polytask.evaluation.run_eval import evaluate_run
from polytask.training import checkpoint as ckpt
from polytask.training.loop import train
from polytask.transfer import STRATEGIES, build_strategies
from tests.unit.toy import toy_config, write_toy_jsonl

OPTIONS = {"contrastive_few_shot": {"num_iterations": 1, "batch_size": 8}, "lora": {"r": 2}, "drop_layers": {"keep": [1]}}


def _raw(name: str, tmp_path: Path, encoder: Path) -> dict:
    raw = toy_config(encoder, write_toy_jsonl(tmp_path / "data"), tmp_path / "run", max_steps=3)
    raw["transfer"] = {"strategy": name, "options": {name: OPTIONS[name]} if name in OPTIONS else {}}
    return raw


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_trains_saves_and_reloads(name: str, tmp_path: Path, tiny_encoder_dir: Path) -> None:
    from polytask.multitask.model import PolytaskModel
    from polytask.runs import load_run, starting_encoder
    from polytask.tasks import build_task
    from polytask.training.run import make_accelerator

    cfg = parse_config(_raw(name, tmp_path, tiny_encoder_dir))
    strategies = build_strategies(cfg.transfer)
    task = build_task(cfg.tasks[0], cfg.train.max_length)
    from polytask.training.setup import prepare_tasks

    data = prepare_tasks(cfg)
    encoder, _ = starting_encoder(cfg)
    model = PolytaskModel(encoder, {"sent": data["sent"].task})
    feats = [data["sent"].task.encode(e, encoder.tokenizer) for e in data["sent"].splits["train"]]
    strategies.prepare(model, {"sent": data["sent"].task}, {"sent": feats}, 0, make_accelerator(cpu=True), progress=False)
    strategies.setup(model, {k: v.detach().clone() for k, v in encoder.state_dict().items()})
    strategies.on_step(model, 0, 8)
    batch = data["sent"].task.collate(feats[:8], 0)
    loss = task.loss(model("sent", batch), batch)
    penalty = strategies.penalty(model)
    if penalty is not None:
        assert torch.isfinite(penalty)
        loss = loss + penalty
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads if g is not None)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)  # frozen stays frozen
    kept = strategies.checkpoint_state(model, model.state_dict())
    assert set(kept) <= set(model.state_dict()) and any(k.startswith("heads.") for k in kept)

    # The whole path: a short run, saved, reloaded twice to the metrics it recorded.
    result = train(cfg)
    assert result.steps == 3
    saved = ckpt.load_meta(tmp_path / "run/checkpoints/best")["metrics"]
    again, _ = evaluate_run(tmp_path / "run")
    assert again["sent"]["accuracy"] == saved["sent/accuracy"]
    assert again["sent"]["loss"] == pytest.approx(saved["sent/loss"], abs=1e-5)
    a, b = load_run(tmp_path / "run").model, load_run(tmp_path / "run").model
    with torch.no_grad():
        assert torch.equal(a("sent", batch), b("sent", batch))
