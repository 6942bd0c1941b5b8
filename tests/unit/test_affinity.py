"""Inter-task affinity (Fifty et al. 2021): the measuring run, its files, the groupings, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import parse_config
from polytask.config.schema import DataConfig, EncoderConfig, TaskConfig, TrainConfig
from polytask.data.loading import load_splits
from polytask.encoders import build_encoder
from polytask.errors import ConfigError
from polytask.multitask.model import PolytaskModel
from polytask.procedures.affinity import (
    grouping_score,
    measure_affinity,
    measure_model_affinity,
    stirling2,
    suggest_groupings,
)
from polytask.tasks import build_task
from tests.unit.toy import toy_config, write_toy_jsonl

runner = CliRunner()


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Toy sentiment data plus a copy of its training file with every label flipped."""
    tmp = tmp_path_factory.mktemp("affinity")
    data = write_toy_jsonl(tmp / "data")
    rows = [json.loads(line) for line in Path(data["train"]).read_text().splitlines()]
    flipped = tmp / "flipped.jsonl"
    flipped.write_text("".join(
        json.dumps({"text": r["text"], "label": "neg" if r["label"] == "pos" else "pos"}) + "\n" for r in rows))
    return {**data, "flipped": str(flipped)}


def two_task_raw(encoder_dir: Path, toy: dict[str, str], out: Path) -> dict[str, Any]:
    raw = toy_config(encoder_dir, toy, out)
    raw["tasks"].append({"name": "flip", "type": "classification", "data": {"train": toy["flipped"]}})
    return raw


# ---- the full run from a config ---------------------------------------------------------------
def test_measure_affinity_writes_matrix_json_and_png(tiny_encoder_dir: Path, toy: dict[str, str], tmp_path: Path) -> None:
    cfg = parse_config(two_task_raw(tiny_encoder_dir, toy, tmp_path / "run"))
    result = measure_affinity(cfg, steps=6, every=2, seed=3, progress=False)
    assert result.tasks == ["sent", "flip"]
    assert len(result.matrix) == 2 and all(len(row) == 2 for row in result.matrix)
    assert result.steps == 6 and result.measurements == 3  # steps 0, 2, 4
    assert result.lookahead_lr == cfg.train.lr
    assert torch.isfinite(torch.tensor(result.matrix)).all()
    # A task's own lookahead step lowers its own loss: the diagonal is positive.
    assert result.matrix[0][0] > 0 and result.matrix[1][1] > 0
    assert [g.groups for g in result.groupings] == [[["sent", "flip"]], [["sent"], ["flip"]]]

    saved = json.loads((tmp_path / "run/affinity.json").read_text())
    assert saved["tasks"] == ["sent", "flip"] and saved["matrix"] == result.matrix
    assert saved["measurements"] == 3 and saved["steps"] == 6 and saved["every"] == 2 and saved["seed"] == 3
    assert len(saved["stderr"]) == 2 and saved["groupings"][0] == {
        "k": 1, "groups": [["sent", "flip"]], "score": pytest.approx((result.matrix[0][1] + result.matrix[1][0]) / 2),
        "exact": True}
    assert saved["config"]["tasks"][1]["name"] == "flip"
    png = (tmp_path / "run/affinity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    # Same seed, same numbers; save=False writes nothing.
    again = measure_affinity(cfg, steps=6, every=2, seed=3, save=False, output_dir=tmp_path / "none", progress=False)
    assert torch.allclose(torch.tensor(again.matrix), torch.tensor(result.matrix), atol=1e-6)
    assert not (tmp_path / "none").exists()


def test_errors_name_the_problem(tiny_encoder_dir: Path, toy: dict[str, str], tmp_path: Path) -> None:
    single = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path))
    with pytest.raises(ConfigError, match=r"tasks: affinity needs at least 2 tasks to compare; the experiment has 1 "
                                          r"\(sent\)\. Add the tasks you want to compare under tasks"):
        measure_affinity(single, steps=2)
    cfg = parse_config(two_task_raw(tiny_encoder_dir, toy, tmp_path))
    with pytest.raises(ConfigError, match="steps: steps must be at least 1; got 0"):
        measure_affinity(cfg, steps=0)
    with pytest.raises(ConfigError, match=r"every: every must be at least 1 \(measure every n-th step\); got 0"):
        measure_affinity(cfg, steps=2, every=0)
    with pytest.raises(ConfigError, match=r"every \(5\) is larger than steps \(2\): only step 0 would be measured; "
                                          "lower every or raise steps"):
        measure_affinity(cfg, steps=2, every=5)
    with pytest.raises(ConfigError, match="lookahead_lr: lookahead_lr must be positive; got -0.1"):
        measure_affinity(cfg, steps=2, lookahead_lr=-0.1)
    with pytest.raises(ConfigError, match="max_groups: max_groups must be at least 1; got 0"):
        measure_affinity(cfg, steps=2, max_groups=0)


# ---- agreement and conflict -------------------------------------------------------------------
def tied_model(encoder_dir: Path, names: list[str]) -> tuple[PolytaskModel, dict]:
    """Two classification tasks whose heads are the same frozen linear map.

    With a head of its own each, flipping a task's labels only mirrors its head: the encoder is
    asked for the same features either way, so "inverted labels" would not conflict at all. One
    shared, frozen read-out makes the encoder the only thing that can serve the tasks, so equal
    labels agree and flipped labels truly conflict.
    """
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(name_or_path=str(encoder_dir)))
    tasks = {n: build_task(TaskConfig(name=n, type="classification", data={"train": "x"}, labels=["neg", "pos"]), 32)
             for n in names}
    model = PolytaskModel(encoder, tasks, dropout=0.0)
    model.heads[names[1]].load_state_dict(model.heads[names[0]].state_dict())
    for p in model.heads.parameters():
        p.requires_grad_(False)
    return model, tasks


def affinity_between(encoder_dir: Path, toy: dict[str, str], second: str) -> list[list[float]]:
    model, tasks = tied_model(encoder_dir, ["a", "b"])
    files = {"a": toy["train"], "b": toy[second]}
    features = {n: [tasks[n].encode(ex, model.encoder.tokenizer) for ex in
                    load_splits(DataConfig(train=files[n], dev=toy["dev"]), token_level=False)["train"]]
                for n in tasks}
    stats = measure_model_affinity(model, tasks, features, TrainConfig(batch_size=16, lr=1e-3, weight_decay=0.0),
                                   steps=4, lookahead_lr=0.005, seed=0)
    assert stats.measurements == 4
    return stats.matrix


def test_agreeing_tasks_have_positive_affinity(tiny_encoder_dir: Path, toy: dict[str, str]) -> None:
    z = affinity_between(tiny_encoder_dir, toy, "train")  # the same labels on the same texts
    assert z[0][1] > 0 and z[1][0] > 0
    assert z[0][0] > 0 and z[1][1] > 0


def test_conflicting_tasks_have_negative_affinity(tiny_encoder_dir: Path, toy: dict[str, str]) -> None:
    z = affinity_between(tiny_encoder_dir, toy, "flipped")  # every label flipped
    assert z[0][1] < 0 and z[1][0] < 0
    assert z[0][0] > 0 and z[1][1] > 0


def test_frozen_encoder_is_refused(tiny_encoder_dir: Path) -> None:
    model, tasks = tied_model(tiny_encoder_dir, ["a", "b"])
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    feats = {"a": [{"input_ids": [101, 102], "attention_mask": [1, 1], "labels": 0}]}
    feats["b"] = feats["a"]
    with pytest.raises(ConfigError, match="every encoder parameter is frozen, so no task can move the shared encoder; "
                                          "unfreeze the encoder to measure affinity"):
        measure_model_affinity(model, tasks, feats, TrainConfig(), steps=1, lookahead_lr=0.1)
    with pytest.raises(ConfigError, match="task 'b' has no training examples; affinity trains on every task"):
        measure_model_affinity(model, tasks, {"a": feats["a"], "b": []}, TrainConfig(), steps=1, lookahead_lr=0.1)


# ---- groupings --------------------------------------------------------------------------------
def test_suggest_groupings_finds_the_obvious_pairs() -> None:
    names = ["a", "b", "c", "d"]
    # a and b help each other, c and d help each other, across the pairs they hurt.
    z = [
        [0.5, 0.4, -0.2, -0.1],
        [0.3, 0.5, -0.1, -0.3],
        [-0.2, -0.2, 0.5, 0.2],
        [-0.1, -0.1, 0.6, 0.5],
    ]
    best = suggest_groupings(z, names, max_groups=3)
    assert [g.k for g in best] == [1, 2, 3]
    assert best[1].groups == [["a", "b"], ["c", "d"]]
    # a gets 0.3 from b, b 0.4 from a, c 0.6 from d, d 0.2 from c.
    assert best[1].score == pytest.approx((0.3 + 0.4 + 0.6 + 0.2) / 4)
    # Three groups keep one pair: the one worth more (c, d: 0.6 + 0.2 > a, b: 0.3 + 0.4).
    assert best[2].groups == [["a"], ["b"], ["c", "d"]] and best[2].score == pytest.approx(0.8 / 4)
    # One group: every task averages what the three others give it.
    assert best[0].score == pytest.approx(sum(z[j][i] for i in range(4) for j in range(4) if i != j) / 3 / 4)
    assert best[0].score == pytest.approx(grouping_score([names], z, names))
    assert all(g.exact for g in best)


def test_suggest_groupings_local_search_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import polytask.procedures.affinity as aff

    assert [stirling2(4, k) for k in (1, 2, 3, 4)] == [1, 7, 6, 1] and stirling2(12, 3) == 86526
    assert sum(1 for _ in aff._partitions(5, 2)) == stirling2(5, 2)
    names = [f"t{i}" for i in range(6)]
    # Three pairs of friends, {0, 1}, {2, 3}, {4, 5}: the search starts from {0, 3}, {1, 4}, {2, 5}.
    z = [[1.0 if i == j else (0.5 if i // 2 == j // 2 else -0.5) for j in range(6)] for i in range(6)]
    exact = suggest_groupings(z, names, 3)[2]
    monkeypatch.setattr(aff, "MAX_EXACT_PARTITIONS", 0)
    searched = suggest_groupings(z, names, 3)[2]
    assert exact.groups == [["t0", "t1"], ["t2", "t3"], ["t4", "t5"]] and exact.score == pytest.approx(0.5)
    assert not searched.exact and searched.groups == exact.groups and searched.score == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"the affinity matrix must be 3x3 \(one row and column per task name\); got 2x2"):
        suggest_groupings([[0, 1], [1, 0]], ["a", "b", "c"])
    with pytest.raises(ValueError, match="max_groups must be at least 1; got 0"):
        suggest_groupings([[0, 1], [1, 0]], ["a", "b"], 0)
    with pytest.raises(ValueError, match="task names must be unique"):
        suggest_groupings([[0, 1], [1, 0]], ["a", "a"])
    with pytest.raises(ValueError, match="unknown task 'x' in groups; known: a, b"):
        grouping_score([["a", "x"]], [[0, 1], [1, 0]], ["a", "b"])
    with pytest.raises(ValueError, match="groups must hold every task exactly once"):
        grouping_score([["a"]], [[0, 1], [1, 0]], ["a", "b"])


# ---- CLI --------------------------------------------------------------------------------------
def test_cli_prints_matrix_and_groupings(tiny_encoder_dir: Path, toy: dict[str, str], tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(two_task_raw(tiny_encoder_dir, toy, tmp_path / "unused")))
    out = tmp_path / "aff"
    res = runner.invoke(app, ["affinity", str(exp), "--steps", "2", "--set", "train.batch_size=4",
                              "--output-dir", str(out), "--max-groups", "2"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "inter-task affinity" in res.output and "source" in res.output
    assert "k=1" in res.output and "sent + flip" in res.output and "k=2" in res.output
    assert (out / "affinity.json").is_file() and (out / "affinity.png").is_file()
    assert json.loads((out / "affinity.json").read_text())["config"]["train"]["batch_size"] == 4
    assert not (tmp_path / "unused").exists()

    single = tmp_path / "single.yaml"
    single.write_text(yaml.safe_dump(toy_config(tiny_encoder_dir, toy, tmp_path / "unused")))
    res = runner.invoke(app, ["affinity", str(single), "--steps", "2"], terminal_width=200)
    assert res.exit_code == 2
    assert "affinity needs at least 2 tasks to compare; the experiment has 1 (sent)" in res.output


# ---- the shipped example ----------------------------------------------------------------------
def test_glue_example_runs_on_a_slice(shared_data: Path, tiny_encoder_dir: Path, tmp_path: Path) -> None:
    from polytask.config import load_config

    example = Path(__file__).resolve().parents[2] / "examples/affinity_glue.yaml"
    cfg = load_config(example, [f"encoder.name_or_path={tiny_encoder_dir}", "train.batch_size=2"]
                      + [f"tasks.{t}.data.limit=8" for t in ("sst2", "cola", "mrpc", "stsb")])
    assert [(t.name, t.type) for t in cfg.tasks] == [
        ("sst2", "classification"), ("cola", "classification"), ("mrpc", "classification"), ("stsb", "regression")]
    result = measure_affinity(cfg, steps=1, output_dir=tmp_path, progress=False)
    assert len(result.matrix) == 4 and all(len(row) == 4 for row in result.matrix)
    assert [g.k for g in result.groupings] == [1, 2, 3]
    assert (tmp_path / "affinity.png").is_file()
