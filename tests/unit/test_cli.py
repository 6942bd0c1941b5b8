"""The command line, end to end on a tiny model: train, predict, evaluate, export-hf, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from polytask.cli import app
from tests.unit.toy import toy_config, write_toy_jsonl

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    data = write_toy_jsonl(tmp / "data")
    exp = tmp / "exp.yaml"
    exp.write_text(yaml.safe_dump(toy_config(tiny_encoder_dir, data, tmp / "run", epochs=2)))
    res = runner.invoke(app, ["train", str(exp), "--set", "train.epochs=1"])
    assert res.exit_code == 0, res.output
    assert "finished: best sent/accuracy=" in res.output
    saved = yaml.safe_load((tmp / "run/config.yaml").read_text())
    assert saved["train"]["epochs"] == 1  # the override is in the resolved config
    return tmp


def test_predict_jsonl_csv_and_text(trained: Path) -> None:
    run = trained / "run"
    inputs = {
        "in.jsonl": '{"text": "great fun movie", "id": 7}\n{"text": "awful boring film", "id": 8}\n',
        "in.csv": "id,text\n1,great fun movie\n2,awful boring film\n",
        "in.txt": "great fun movie\n\nawful boring film\n",
    }
    for name, content in inputs.items():
        (trained / name).write_text(content)
        out = trained / f"{name}.preds.jsonl"
        res = runner.invoke(app, ["predict", str(run), "--input", str(trained / name), "--output", str(out)])
        assert res.exit_code == 0, res.output
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["text"] for r in rows] == ["great fun movie", "awful boring film"]
        preds = [r["prediction"]["sent"] for r in rows]
        assert all(p["label"] in ("pos", "neg") and abs(sum(p["probs"].values()) - 1) < 1e-5 for p in preds)
        if name == "in.jsonl":
            assert [r["id"] for r in rows] == [7, 8]
        elif name == "in.csv":
            assert [r["id"] for r in rows] == ["1", "2"]  # CSV fields are strings, given back as read


def test_evaluate_with_data_file(trained: Path) -> None:
    out = trained / "eval.json"
    res = runner.invoke(app, ["evaluate", str(trained / "run"), "--data", str(trained / "data/dev.jsonl"), "--output", str(out)])
    assert res.exit_code == 0, res.output
    metrics = json.loads(out.read_text())["sent"]
    assert metrics["n_examples"] == 32 and 0 <= metrics["accuracy"] <= 1 and "macro_f1" in metrics


def test_export_hf_matches_the_run_encoder(trained: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    import polytask

    out = trained / "hf"
    res = runner.invoke(app, ["export-hf", str(trained / "run"), str(out)])
    assert res.exit_code == 0, res.output
    hf = AutoModel.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    predictor = polytask.load(str(trained / "run"), device="cpu")
    batch = tok(["great fun movie"], return_tensors="pt")
    with torch.no_grad():
        ours = predictor.model.encoder(batch["input_ids"], batch["attention_mask"]).token_states
        theirs = hf(**batch).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_bad_inputs_give_one_clear_error(trained: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  - name: a\n    type: classification\n    data: {train: x.jsonl}\ntrain: {lrr: 1}\n")
    res = runner.invoke(app, ["train", str(bad)])
    assert res.exit_code == 2
    assert "unknown key 'train.lrr'" in res.output and "Traceback" not in res.output

    res = runner.invoke(app, ["predict", str(trained / "run"), "--input", str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "input file not found" in res.output

    (tmp_path / "empty.jsonl").write_text('{"text": "fine"}\n{"text": "  "}\n')
    res = runner.invoke(app, ["predict", str(trained / "run"), "--input", str(tmp_path / "empty.jsonl"), "--output", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "empty.jsonl:2: empty text" in res.output

    res = runner.invoke(app, ["predict", str(trained / "run"), "--input", str(trained / "in.txt"), "--output", str(tmp_path / "o.jsonl"), "--task", "nope"])
    assert res.exit_code == 2 and "unknown task 'nope'; this run has: sent" in res.output

    res = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert res.exit_code == 2 and "no checkpoint found" in res.output
