"""Self-training on a tiny model: a round adds only pool examples above the threshold, at most
``per_class`` per class, writes them to the round's folder and retrains; bad input messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import polytask
from polytask.config import parse_config
from polytask.errors import ConfigError, DataError
from polytask.procedures.self_training import read_unlabeled, select_confident, self_train
from tests.unit.toy import FILL, toy_config, toy_texts, write_toy_jsonl, write_toy_ner


def write_pool(path: Path, n: int, seed: int) -> Path:
    # Labels in the pool file are wrong on purpose: self-training must ignore them.
    path.write_text("".join(json.dumps({"text": t, "label": "zzz"}) + "\n" for t, _ in toy_texts(n, seed)))
    return path


def test_select_confident_thresholds_and_caps_per_class() -> None:
    preds = [{"label": y, "probs": {y: p, "other": 1 - p}} for y, p in
             [("a", 0.95), ("a", 0.7), ("b", 0.99), ("a", 0.97), ("b", 0.91), ("a", 0.92), ("b", 0.5)]]
    assert select_confident(preds, 0.9, None) == [0, 2, 3, 4, 5]
    assert select_confident(preds, 0.9, 2) == [0, 2, 3, 4]  # a: 0.97, 0.95; b: 0.99, 0.91 (pool order)
    assert select_confident(preds, 0.9, 1) == [2, 3]
    assert select_confident(preds, 0.999, None) == []


@pytest.fixture(scope="module")
def rounds(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("self_train")
    data = write_toy_jsonl(tmp / "data", n_train=48, n_dev=24)
    raw = toy_config(tiny_encoder_dir, data, tmp / "run", epochs=4)
    raw["tasks"][0]["unlabeled"] = {"path": str(write_pool(tmp / "pool.jsonl", 60, seed=7))}
    cfg = parse_config(raw)
    result = self_train(cfg, output_dir=tmp / "st", rounds=1, threshold=0.6, per_class=10)
    return cfg, result, tmp


def test_a_round_adds_only_examples_above_the_threshold(rounds) -> None:  # noqa: ANN001
    cfg, result, tmp = rounds
    out = tmp / "st"
    assert [r.round for r in result.rounds] == [0, 1]
    first, second = result.rounds
    # What round 0's model says of the pool, computed here independently.
    pool = [json.loads(line)["text"] for line in (tmp / "pool.jsonl").read_text().splitlines()]
    preds = polytask.load(first.run_dir).predict(pool)
    confident = {c: sorted((-p["probs"][c], i) for i, p in enumerate(preds) if p["label"] == c and p["probs"][c] >= 0.6)
                 for c in ("pos", "neg")}
    expected = {c: {pool[i] for _, i in items[:10]} for c, items in confident.items()}
    pseudo = [json.loads(line) for line in (out / "round-1" / "pseudo.jsonl").read_text().splitlines()]
    assert pseudo, "the tiny model should be confident about some of the pool"
    for rec in pseudo:
        assert rec["confidence"] >= 0.6 and rec["round"] == 1 and rec["label"] in ("pos", "neg")
        assert rec["text"] in expected[rec["label"]]
    assert {c: sum(r["label"] == c for r in pseudo) for c in ("pos", "neg")} == {c: len(v) for c, v in expected.items()}
    assert second.added == {c: len(v) for c, v in expected.items() if v}
    assert all(n <= 10 for n in second.added.values())
    assert second.pseudo_total == len(pseudo) and second.pool_left == 60 - len(pseudo)
    # the round trained on labelled train + pseudo-labels, in a run of its own
    train_lines = (out / "round-1" / "train.jsonl").read_text().splitlines()
    assert len(train_lines) == 48 + len(pseudo)
    assert (Path(second.run_dir) / "config.yaml").is_file() and Path(second.run_dir) != Path(first.run_dir)
    saved = yaml.safe_load((Path(second.run_dir) / "config.yaml").read_text())
    assert saved["tasks"][0]["data"]["train"] == str(out / "round-1" / "train.jsonl")
    assert saved["encoder"]["name_or_path"] == cfg.encoder.name_or_path  # from the starting encoder again
    summary = json.loads((out / "summary.json").read_text())
    assert [r["added"] for r in summary["rounds"]] == [{}, second.added]
    assert summary["metric"] == "sent/accuracy" and all(r["dev_metric"] is not None for r in summary["rounds"])


def test_pool_labels_are_ignored_and_bad_pools_are_reported(tmp_path: Path) -> None:
    data = write_toy_jsonl(tmp_path / "data", n_train=8, n_dev=4)
    raw = toy_config(tmp_path, data, tmp_path / "run")

    def cfg_with(pool: str):  # noqa: ANN202
        raw["tasks"][0]["unlabeled"] = {"path": pool}
        return parse_config(raw)

    pool = read_unlabeled(cfg_with(str(write_pool(tmp_path / "pool.jsonl", 5, 1))).tasks[0])
    assert len(pool) == 5 and all(e.label is None for e in pool)
    (tmp_path / "pool.txt").write_text("good fun film\n\nawful plot\n")  # .txt: one text per line
    pool = read_unlabeled(cfg_with(str(tmp_path / "pool.txt")).tasks[0])
    assert [(e.text, e.where) for e in pool] == [("good fun film", f"{tmp_path / 'pool.txt'}:1"),
                                                 ("awful plot", f"{tmp_path / 'pool.txt'}:3")]
    raw["tasks"][0]["unlabeled"] = {"path": str(tmp_path / "pool.txt"), "format": "label_text"}
    assert [e.text for e in read_unlabeled(parse_config(raw).tasks[0])] == ["fun film", "plot"]  # labels dropped
    (tmp_path / "empty.jsonl").write_text("\n  \n")
    with pytest.raises(DataError) as info:
        read_unlabeled(cfg_with(str(tmp_path / "empty.jsonl")).tasks[0])
    assert str(info.value) == (
        f"{tmp_path / 'empty.jsonl'}: the unlabeled file of task 'sent' is empty; tasks.sent.unlabeled.path must "
        "hold texts (one per row; a label column, if present, is ignored)")
    with pytest.raises(DataError, match="the unlabeled file of task 'sent' does not exist"):
        read_unlabeled(cfg_with(str(tmp_path / "missing.jsonl")).tasks[0])
    with pytest.warns(UserWarning) as caught:
        read_unlabeled(cfg_with(data["train"]).tasks[0])
    assert str(caught[0].message) == (
        f"tasks.sent.unlabeled.path is the training file {data['train']}: its texts already have labels, so "
        "pseudo-labelling them adds nothing new; point unlabeled.path at text outside the training set")


def test_self_training_bad_input(tmp_path: Path) -> None:
    data = write_toy_jsonl(tmp_path / "data", n_train=8, n_dev=4)
    raw = toy_config(tmp_path, data, tmp_path / "run")
    with pytest.raises(ConfigError) as info:
        self_train(parse_config(raw))
    assert str(info.value) == ("name the task to self-train with --task; tasks with an unlabeled block: none (add "
                               "tasks[].unlabeled: {path: ...} to the experiment)")
    raw["tasks"][0]["unlabeled"] = {"path": data["train"]}
    with pytest.raises(ConfigError, match="no task named 'x'; the experiment has: sent"):
        self_train(parse_config(raw), task="x")
    raw["tasks"][0]["type"] = "regression"
    with pytest.raises(ConfigError) as info:
        self_train(parse_config(raw))
    assert ("self-training pseudo-labels classification and token classification tasks; task 'sent' is "
            "'regression', whose predictions carry no one class probability to threshold") in str(info.value)
    raw["tasks"][0]["type"] = "classification"
    with pytest.raises(ConfigError, match="threshold is a probability, between 0 and 1; got 1.5"):
        self_train(parse_config(raw), threshold=1.5)
    raw["tasks"][0]["unlabeled"]["self_training"] = {"rounds": 0}
    with pytest.raises(ConfigError, match="'tasks.0.unlabeled.self_training.rounds': Input should be greater than or equal to 1"):
        parse_config(raw)


def test_cli_self_train_reports_rounds(rounds, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    # The CLI is a thin layer: it prints the library's result (the fixture's run is reused).
    import polytask.procedures.self_training as st
    from polytask.cli import app

    cfg, result, tmp = rounds
    monkeypatch.setattr(st, "self_train", lambda *a, **k: result)
    exp = tmp / "exp.yaml"
    exp.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    res = CliRunner().invoke(app, ["self-train", str(exp)])
    assert res.exit_code == 0, res.output
    assert "self-training of sent (sent/accuracy on dev)" in res.output
    assert f"summary written to {tmp / 'st' / 'summary.json'}" in res.output.replace("\n", "")


def test_token_classification_round_pseudo_tags_whole_confident_sentences(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    import random

    from polytask.augment.mention_replacement import mention_spans

    data = write_toy_ner(tmp_path / "data")
    rng = random.Random(3)
    sentences = []
    for _ in range(30):
        words = rng.sample(FILL, 3)
        words.insert(rng.randint(0, 3), rng.choice(["Alice", "Bob", "Carol", "Dave"]))
        sentences.append(words)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"tokens": w}) + "\n" for w in sentences))
    raw = toy_config(tiny_encoder_dir, data, tmp_path / "run", epochs=6, lr=5e-3)
    raw["tasks"][0].update(type="token_classification", unlabeled={"path": str(pool)})
    result = self_train(parse_config(raw), output_dir=tmp_path / "st", rounds=1, threshold=0.5, per_class=8)
    first = result.rounds[0]
    pseudo = [json.loads(line) for line in (tmp_path / "st" / "round-1" / "pseudo.jsonl").read_text().splitlines()]
    assert pseudo and len(pseudo) <= 16  # at most 8 per class (PER, O)
    # The pseudo tags are what round 0's model predicts; every word of the sentence is confident.
    by_words = {tuple(p["tokens"]): p for p in pseudo}
    predicted = polytask.load(first.run_dir).predict([list(w) for w in by_words])
    for (words, rec), pred in zip(by_words.items(), predicted, strict=True):
        assert rec["tags"] == pred["tags"] and len(rec["tags"]) == len(words)
        assert rec["confidence"] >= 0.5
        kinds = [k for *_, k in mention_spans(rec["tags"])]
        assert rec["class"] == (max(dict.fromkeys(kinds), key=kinds.count) if kinds else "O")
    assert sum(result.rounds[1].added.values()) == len(pseudo)
    lines = [json.loads(x) for x in (tmp_path / "st" / "round-1" / "train.jsonl").read_text().splitlines()]
    assert len(lines) == 48 + len(pseudo) and all(len(x["tokens"]) == len(x["tags"]) for x in lines)
