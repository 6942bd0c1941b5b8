"""The real packaged MiniLM on slices of real data: a few training steps per task type, then
save/load must give identical predictions. Skips when ../shared/data is absent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import polytask
from polytask.config import parse_config
from polytask.evaluation.evaluate import predict_features
from polytask.runs import load_run
from polytask.training.loop import train

pytestmark = pytest.mark.integration

CASES: dict[str, dict[str, Any]] = {
    "sst2": {"type": "classification", "data": {"train": "sst2_sent/train.txt", "dev": "sst2_sent/dev.txt",
                                                "format": "label_text", "label_map": {"0": "neg", "1": "pos"}}},
    "ag_news": {"type": "classification", "data": {
        "train": "ag_news/test.csv", "header": False, "columns": {"text": 2, "label": 0},
        "label_map": {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}}},
    "conll": {"type": "token_classification", "data": {"train": "conll2003/train.txt", "dev": "conll2003/valid.txt",
                                                       "format": "conll"}},
    "stsb": {"type": "regression", "data": {"train": "stsb/sts-train.csv", "dev": "stsb/sts-dev.csv", "format": "tsv",
                                            "header": False, "columns": {"text": 5, "text_pair": 6, "label": 4}}},
    "mrpc": {"type": "classification", "data": {"train": "mrpc/train.tsv", "dev": "mrpc/dev.tsv",
                                                "columns": {"text": "#1 String", "text_pair": "#2 String",
                                                            "label": "Quality"}}},
}


@pytest.mark.parametrize("name", list(CASES))
def test_train_save_load_identical(name: str, shared_data: Path, tmp_path: Path) -> None:
    case = CASES[name]
    data = dict(case["data"])
    for split in ("train", "dev"):
        if split in data:
            data[split] = str(shared_data / data[split])
    data["limit"] = 48
    raw = {
        "name": name,
        "tasks": [{"name": name, "type": case["type"], "data": data, "max_length": 64}],
        "train": {"max_steps": 4, "batch_size": 8, "lr": 1e-4, "eval_every": 4, "progress": False},
    }
    result = train(parse_config(raw), output_dir=tmp_path / "run")
    assert result.steps == 4 and result.best_metric is not None

    first = load_run(tmp_path / "run")
    second = load_run(tmp_path / "run")
    for (k, a), (k2, b) in zip(first.model.state_dict().items(), second.model.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)

    from polytask.data.loading import load_splits

    task = first.tasks[name]
    dev = load_splits(task.config.data, token_level=task.token_level)["dev"][:16]
    tok = first.model.encoder.tokenizer
    feats = [task.encode(ex, tok) for ex in dev]
    p1, _ = predict_features(first.model, {name: task}, feats, tok.pad_token_id)
    p2, _ = predict_features(second.model, {name: second.tasks[name]}, feats, tok.pad_token_id)
    assert p1 == p2
    # The public API answers raw text the same way (alone in its batch: other padding, so float
    # sums may differ in the last bits).
    predictor = polytask.load(str(tmp_path / "run"))
    ex = dev[0]
    raw_input: Any = (ex.text, ex.text_pair) if ex.text_pair else ex.text
    alone, batched = predictor.predict([raw_input])[0], p1[name][0]
    # The predictor adds what a task derives for users (token tasks: entity spans) to what
    # evaluation decodes; everything evaluation decodes must match.
    assert set(batched) <= set(alone) and set(alone) - set(batched) <= {"entities"}
    for key in batched:
        if key == "probs":
            assert alone[key] == pytest.approx(batched[key], abs=1e-5)
        elif key == "score":
            assert alone[key] == pytest.approx(batched[key], abs=1e-5)
        else:
            assert alone[key] == batched[key]
