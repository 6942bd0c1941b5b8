"""ONNX export (parity on new shapes), the ONNX Runtime predictor, int8 quantisation, errors.

One toy two-task run (classification + token classification on the tiny encoder) is trained,
exported and quantised once per module: the dynamo exporter takes seconds even for a tiny model.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import polytask
from polytask.cli import app
from polytask.config import parse_config
from polytask.errors import CheckpointError, ConfigError, DataError
from polytask.export import onnx as onnx_export
from polytask.export.onnx import MANIFEST_FILE, ExportError, export_onnx, random_inputs
from polytask.export.quantize import quantize_onnx
from polytask.serving.onnx_backend import OnnxPredictor, require_onnxruntime
from polytask.serving.predictor import Predictor, load_predictor
from polytask.training.loop import train
from tests.unit.toy import toy_config, toy_texts, write_toy_jsonl, write_toy_ner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

INT8_BUDGET = 0.05  # the int8 model may lose at most this much dev accuracy on the toy task
TEXTS = [t for t, _ in toy_texts(10, seed=7)] + ["Alice was happy", "a dull film with Bob and a very long boring story"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("onnx_run")
    sent = write_toy_jsonl(tmp / "sent")
    ner = write_toy_ner(tmp / "ner")
    raw = toy_config(tiny_encoder_dir, sent, tmp / "run", epochs=2)
    raw["tasks"].append({"name": "ner", "type": "token_classification", "data": {"train": ner["train"], "dev": ner["dev"]}})
    train(parse_config(raw))
    return tmp / "run"


@pytest.fixture(scope="module")
def exported(toy_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(toy_run, tmp_path_factory.mktemp("onnx_out") / "fp32").directory


@pytest.fixture(scope="module")
def quantized(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("onnx_q") / "int8"
    return out, quantize_onnx(exported, out)


def test_export_writes_graph_manifest_tokenizer_and_matches_torch_on_new_shapes(toy_run: Path, exported: Path) -> None:
    import onnxruntime as ort

    manifest = json.loads((exported / MANIFEST_FILE).read_text())
    assert {p.name for p in exported.iterdir()} == {"model.onnx", MANIFEST_FILE, "tokenizer"}
    assert manifest["outputs"] == {"sent": "logits_sent", "ner": "logits_ner"}
    assert manifest["tasks"]["sent"]["labels"] == ["neg", "pos"]
    assert manifest["tasks"]["ner"]["token_level"] and manifest["precision"] == "fp32"
    assert manifest["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert 0 <= manifest["parity"]["max_abs_diff"] < 1e-4
    assert [2, 8] not in manifest["parity"]["shapes"]

    # Independently of the export's own check: shapes it never saw, padding and two segments.
    model = Predictor.from_run(toy_run).model
    session = ort.InferenceSession(str(exported / "model.onnx"))
    names = manifest["inputs"]
    for seed, (b, t) in enumerate([(4, 19), (1, 2), (7, 40)]):
        batch = random_inputs(model, names, b, t, seed=100 + seed)
        with torch.inference_mode():
            ref = model.forward_all(batch, ["sent", "ner"])
        got = session.run(["logits_sent", "logits_ner"], {n: batch[n].numpy() for n in names})
        assert got[0].shape == (b, 2) and got[1].shape == (b, t, 3)
        for r, g in zip((ref["sent"], ref["ner"]), got, strict=True):
            assert (r - torch.from_numpy(g)).abs().max() < 1e-4


def test_onnx_predictor_decodes_the_same_as_torch(toy_run: Path, exported: Path) -> None:
    torch_p = polytask.load(str(toy_run), device="cpu")
    onnx_p = polytask.load(str(exported))  # an export folder is recognised by its manifest
    assert isinstance(onnx_p, OnnxPredictor) and onnx_p.precision == "fp32"
    for batch_size in (1, 5):
        torch_p.batch_size = onnx_p.batch_size = batch_size
        a, b = torch_p.predict(TEXTS), onnx_p.predict(TEXTS)
        for x, y in zip(a, b, strict=True):
            assert x["ner"]["tags"] == y["ner"]["tags"]
            assert x["sent"]["label"] == y["sent"]["label"]
            assert x["sent"]["probs"]["pos"] == pytest.approx(y["sent"]["probs"]["pos"], abs=1e-5)
    assert onnx_p.predict(["fun film"], task="sent")[0].keys() == {"label", "probs"}
    assert onnx_p.task_names(None) == ["sent", "ner"]


def test_load_with_onnx_backend_reuses_the_export_in_the_checkpoint(toy_run: Path, exported: Path) -> None:
    cache = toy_run / "checkpoints" / "best" / "onnx"
    shutil.copytree(exported, cache)
    (cache / "marker").write_text("x")  # a fresh export would replace the folder
    p = load_predictor(toy_run, backend="onnx")
    assert isinstance(p, OnnxPredictor) and p.directory == cache and (cache / "marker").exists()
    with pytest.raises(ConfigError, match="is an ONNX export; load it with backend='onnx'"):
        load_predictor(exported, backend="torch")


def test_int8_model_is_smaller_and_within_the_accuracy_budget(exported: Path, quantized: tuple[Path, dict]) -> None:
    out, manifest = quantized
    q = manifest["quantization"]
    assert manifest["precision"] == "int8" and json.loads((out / MANIFEST_FILE).read_text()) == manifest
    assert q["size_bytes"]["int8"] < q["size_bytes"]["fp32"]
    sent = q["eval"]["sent"]
    assert sent["split"] == "dev" and sent["n_examples"] == 32 and sent["metric"] == "accuracy"
    assert sent["fp32"] > 0.8, "the toy run did not learn; the budget check below would mean nothing"
    assert sent["int8"] >= sent["fp32"] - INT8_BUDGET
    assert sent["difference"] == pytest.approx(sent["int8"] - sent["fp32"])
    assert q["eval"]["ner"]["metric"] == "f1"
    int8 = polytask.load(str(out))
    assert int8.precision == "int8" and int8.predict(["great fun"], task="sent")[0]["label"] == "pos"


def test_quantize_cli_prints_both_metrics_and_max_drop_fails(exported: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["export", "quantize", str(exported), str(tmp_path / "q"), "--task", "sent"])
    assert res.exit_code == 0, res.output
    assert "int8 accuracy cost" in res.output and "accuracy" in res.output and "int8 model written to" in res.output
    with pytest.raises(ExportError, match=r"int8 quantisation costs task 'sent' .* more than --max-drop -1; nothing was written"):
        quantize_onnx(exported, tmp_path / "q2", task="sent", max_drop=-1.0)
    assert not (tmp_path / "q2").exists()
    with pytest.raises(DataError, match="--data needs --task for a multi-task run"):
        quantize_onnx(exported, tmp_path / "q3", data=tmp_path / "x.jsonl")


def test_parity_failure_writes_nothing(toy_run: Path, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Reuse the exported graph instead of exporting again; pretend the outputs disagree.
    monkeypatch.setattr(onnx_export, "_export", lambda g, a, i, o, path, opset: shutil.copy(exported / "model.onnx", path))
    monkeypatch.setattr(onnx_export, "parity", lambda *a: 0.5)
    with pytest.raises(ExportError, match=r"differs from PyTorch by up to 0\.5 on new shapes .* \(tolerance 0\.001\); nothing was written"):
        export_onnx(toy_run, tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not (tmp_path / ".tmp-bad").exists()


def test_export_errors_name_the_folder(toy_run: Path, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="busy exists and is not an ONNX export; choose an empty or new folder"):
        export_onnx(toy_run, tmp_path / "busy")
    with pytest.raises(CheckpointError, match=r"not an ONNX export \(no polytask_onnx.json\); create one with `polytask export onnx RUN OUT_DIR`"):
        OnnxPredictor(tmp_path / "busy")
    res = CliRunner().invoke(app, ["export", "onnx", str(tmp_path / "nope"), str(tmp_path / "o")])
    assert res.exit_code == 2 and "no such run directory" in res.output


def test_missing_onnxruntime_names_the_extra(exported: Path, toy_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    msg = r"need onnxruntime, onnx and onnxscript: pip install polytask\[onnx\]"
    with pytest.raises(ConfigError, match=msg):
        require_onnxruntime()
    with pytest.raises(ConfigError, match=msg):
        polytask.load(str(exported))
    with pytest.raises(ConfigError, match=msg):
        export_onnx(toy_run, tmp_path / "x")
    res = CliRunner().invoke(app, ["export", "quantize", str(exported), str(tmp_path / "q")])
    assert res.exit_code == 2 and "pip install polytask[onnx]" in res.output
