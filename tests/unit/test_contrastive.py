"""``contrastive_few_shot`` (SetFit): balanced seeded pairs, an encoder that separates the classes
after the contrastive phase, a whole run combined with ``freeze``, and its error messages."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from polytask.config import TransferConfig, parse_config
from polytask.config.schema import TaskConfig
from polytask.encoders import build_encoder
from polytask.errors import ConfigError
from polytask.multitask.model import PolytaskModel
from polytask.tasks import build_task
from polytask.training import checkpoint as ckpt
from polytask.training.loop import train
from polytask.training.run import make_accelerator
from polytask.training.setup import prepare_tasks
from polytask.transfer import build_strategies
from polytask.transfer.contrastive_few_shot import cosine_similarity_loss, sample_pairs
from tests.unit.toy import toy_config, write_toy_jsonl

FAST = {"num_iterations": 2, "lr": 5e-3, "batch_size": 16, "seed": 3}  # 256 pairs on 64 examples


def strategy(**options: object):  # noqa: ANN201
    return build_strategies(TransferConfig(strategy="contrastive_few_shot",
                                           options={"contrastive_few_shot": options}))


def test_pairs_are_balanced_valid_and_seeded() -> None:
    labels = [0] * 5 + [1] * 3 + [2] * 4
    pairs = sample_pairs(labels, num_iterations=3, seed=7)
    assert len(pairs) == 2 * 3 * len(labels)
    pos = [(i, j) for i, j, y in pairs if y == 1.0]
    neg = [(i, j) for i, j, y in pairs if y == 0.0]
    assert len(pos) == len(neg) == 36
    assert all(labels[i] == labels[j] and i != j for i, j in pos)
    assert all(labels[i] != labels[j] for i, j in neg)
    # Every example is the anchor of one positive and one negative pair per round.
    assert Counter(i for i, _ in pos) == Counter(i for i, _ in neg) == dict.fromkeys(range(12), 3)
    assert sample_pairs(labels, 3, seed=7) == pairs
    assert sample_pairs(labels, 3, seed=8) != pairs
    capped = sample_pairs(labels, 3, seed=7, max_pairs=10)
    assert sorted(y for _, _, y in capped) == [0.0] * 5 + [1.0] * 5
    # A class of one example pairs with itself (keeping the balance); one class is refused.
    assert (2, 2, 1.0) in sample_pairs([0, 0, 1], 1, seed=0)
    with pytest.raises(ValueError, match="needs at least two classes"):
        sample_pairs([1, 1, 1], 1, seed=0)


def test_cosine_similarity_loss_matches_its_formula() -> None:
    u, v = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    # cosines 0 and 1; targets 1 and 1 -> ((0-1)^2 + (1-1)^2) / 2
    assert float(cosine_similarity_loss(u, v, torch.tensor([1.0, 1.0]))) == pytest.approx(0.5)


@pytest.fixture()
def toy(tmp_path: Path, tiny_encoder_dir: Path):  # noqa: ANN201
    data = write_toy_jsonl(tmp_path / "data")
    cfg = parse_config(toy_config(tiny_encoder_dir, data, tmp_path / "run"))
    splits = prepare_tasks(cfg)
    tasks = {n: d.task for n, d in splits.items()}
    encoder = build_encoder(cfg.encoder)
    model = PolytaskModel(encoder, tasks)
    feats = {n: [d.task.encode(ex, encoder.tokenizer) for ex in d.splits["train"]] for n, d in splits.items()}
    return model, tasks, feats, data


def class_margin(model: PolytaskModel, tasks: dict, feats: dict) -> float:
    """Mean cosine of same-class pairs minus mean cosine of different-class pairs (train set)."""
    model.eval()
    with torch.no_grad():
        batch = tasks["sent"].collate(feats["sent"], 0)
        emb = F.normalize(model.encode(batch).pooled, dim=-1)  # (N, H)
    sim, y = emb @ emb.T, batch["labels"]  # (N, N), (N,)
    same = (y[:, None] == y[None]) & ~torch.eye(len(y), dtype=torch.bool)
    return float(sim[same].mean() - sim[y[:, None] != y[None]].mean())


def test_prepare_pulls_classes_apart(toy) -> None:  # noqa: ANN001
    model, tasks, feats, _ = toy
    before = class_margin(model, tasks, feats)
    heads = {k: v.clone() for k, v in model.heads.state_dict().items()}
    strategy(**FAST).prepare(model, tasks, feats, 0, make_accelerator(cpu=True), progress=False)
    after = class_margin(model, tasks, feats)
    # A random tiny encoder maps every text to nearly the same direction (margin ~0.01); after
    # 16 contrastive steps same-class texts are far more alike than different-class ones.
    assert after - before > 0.3, (before, after)
    assert all(torch.equal(v, model.heads.state_dict()[k]) for k, v in heads.items())  # heads untouched
    assert next(model.parameters()).device.type == "cpu"


def test_train_contrastive_then_freeze(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    data = write_toy_jsonl(tmp_path / "data")
    raw = toy_config(tiny_encoder_dir, data, tmp_path / "run", epochs=2, lr=3e-2)
    raw["transfer"] = {"strategy": ["contrastive_few_shot", "freeze"], "options": {"contrastive_few_shot": FAST}}
    result = train(parse_config(raw))
    assert result.steps == 16 and not result.interrupted
    best = ckpt.load_model_state(tmp_path / "run" / "checkpoints" / "best")
    last = ckpt.load_model_state(tmp_path / "run" / "checkpoints" / "last")
    start = build_encoder(parse_config(raw).encoder).state_dict()
    key = "model.embeddings.word_embeddings.weight"
    # The contrastive phase moved the encoder; freeze then held it fixed while the head trained.
    assert not torch.equal(best[f"encoder.{key}"], start[key])
    assert all(torch.equal(best[k], last[k]) for k in best if k.startswith("encoder."))
    # The separated embeddings make the toy task easy for a head over the frozen encoder: measured
    # dev accuracy 1.0, against 0.56 for `freeze` alone with the same settings.
    assert result.best_metric >= 0.9


def test_errors(toy, tiny_encoder_dir: Path) -> None:  # noqa: ANN001
    model, tasks, feats, _ = toy
    reg = build_task(TaskConfig(name="score", type="regression", data={"train": "x"}), 32)
    reg_feats = [{**f, "labels": 0.5} for f in feats["sent"][:4]]
    with pytest.raises(ConfigError, match=r"transfer.strategy: contrastive_few_shot needs single-label classification "
                       r"tasks \(one class index per example\), but task 'score' is regression; drop the strategy"):
        strategy().prepare(model, {"score": reg}, {"score": reg_feats}, 0, make_accelerator(cpu=True), progress=False)
    one_class = [{**f, "labels": 0} for f in feats["sent"][:4]]
    with pytest.raises(ConfigError, match="task 'sent' has only one; add examples of another class"):
        strategy().prepare(model, tasks, {"sent": one_class}, 0, make_accelerator(cpu=True), progress=False)
    with pytest.raises(ConfigError, match=r"transfer.options.contrastive_few_shot: num_iterations must be >= 1; got 0"):
        strategy(num_iterations=0)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) pairs for transfer strategy 'contrastive_few_shot'; "
                       r"allowed: batch_size, epochs, lr, max_pairs, num_iterations, seed, warmup_ratio"):
        strategy(pairs=3)
