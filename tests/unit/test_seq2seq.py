"""The seq2seq task: parallel files, warm-started decoder, generation, save/load, export, multi-task."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
import torch

import polytask
from polytask.config import parse_config
from polytask.config.schema import DataConfig, TaskConfig
from polytask.data.example import Example
from polytask.data.loading import read_file
from polytask.errors import ConfigError, DataError
from polytask.training.loop import train
from tests.unit.toy import write_toy_jsonl

WORDS = {"hund": "dog", "katze": "cat", "mann": "man", "frau": "woman", "haus": "house", "baum": "tree"}
INPUTS = ["ein hund und katze", "ein haus und baum und mann", "eine frau"]


def write_pairs(directory: Path, n_train: int = 48, n_dev: int = 8) -> Path:
    """``train.de``/``train.en`` and ``dev.*``: word-by-word 'translations' a tiny model can learn."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for split, n in (("train", n_train), ("dev", n_dev)):
        src, tgt = [], []
        for _ in range(n):
            ws = rng.sample(list(WORDS), 2)
            src.append("ein " + " und ".join(ws))
            tgt.append("a " + " and ".join(WORDS[w] for w in ws))
        (directory / f"{split}.de").write_text("\n".join(src) + "\n", encoding="utf-8")
        (directory / f"{split}.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    return directory


def s2s_task(data: Path, **options) -> dict:  # noqa: ANN003
    return {"name": "mt", "type": "seq2seq",
            "data": {"train": str(data / "train"), "dev": str(data / "dev"), "parallel": {"source": "de", "target": "en"}},
            "options": {"num_beams": 2, "max_target_length": 12, **options}}


def s2s_config(encoder: Path, data: Path, out: Path, epochs: int = 4, **options) -> dict:  # noqa: ANN003
    return {"name": "s2s", "output_dir": str(out), "encoder": {"name_or_path": str(encoder)},
            "tasks": [s2s_task(data, **options)],
            "train": {"epochs": epochs, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, "seed": 0,
                      "progress": False, "eval_batch_size": 16}}


def parallel_config(**kw) -> DataConfig:  # noqa: ANN003
    return DataConfig(train="x", parallel={"source": "de", "target": "en"}, **kw)


# ---- the reader ---------------------------------------------------------------------------------
def test_parallel_reader_pairs_lines_and_names_bad_ones(tmp_path: Path) -> None:
    (tmp_path / "a.de").write_text("ein hund\neine katze\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("a dog\na cat\n", encoding="utf-8")
    exs = read_file(parallel_config(), tmp_path / "a", token_level=False)
    assert [(e.text, e.label, e.where) for e in exs] == [
        ("ein hund", "a dog", f"{tmp_path / 'a.de'}:1"), ("eine katze", "a cat", f"{tmp_path / 'a.de'}:2")]
    assert read_file(parallel_config(), tmp_path / "a.de", token_level=False)[1].label == "a cat"  # source file given

    (tmp_path / "b.de").write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    (tmp_path / "b.en").write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"b\.de has 3 lines, .*b\.en has 2"):
        read_file(parallel_config(), tmp_path / "b", token_level=False)

    (tmp_path / "c.de").write_text("eins\nzwei\ndrei\n", encoding="utf-8")
    (tmp_path / "c.en").write_text("one\n  \nthree\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.en:2: empty target sentence"):
        read_file(parallel_config(), tmp_path / "c", token_level=False)
    kept = read_file(parallel_config(on_bad_rows="skip"), tmp_path / "c", token_level=False)
    assert [e.label for e in kept] == ["one", "three"]
    with pytest.raises(DataError, match="needs data.parallel"):
        read_file(DataConfig(train="x", format="parallel"), tmp_path / "c", token_level=False)


@pytest.mark.integration
def test_parallel_reader_on_multi30k(shared_data: Path) -> None:
    exs = read_file(parallel_config(), shared_data / "multi30k" / "val", token_level=False)
    assert len(exs) == 1014
    de = (shared_data / "multi30k/val.de").read_text(encoding="utf-8").splitlines()
    en = (shared_data / "multi30k/val.en").read_text(encoding="utf-8").splitlines()
    assert [(e.text, e.label) for e in exs[:50]] == list(zip(de[:50], en[:50], strict=True))
    assert exs[-1].where.endswith("val.de:1014")


# ---- the task -----------------------------------------------------------------------------------
def test_bad_targets_and_long_ones(tmp_path: Path, tiny_encoder_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from transformers import AutoTokenizer

    from polytask.tasks import build_task

    cfg = TaskConfig(name="mt", type="seq2seq", data={"train": "x"}, options={"max_target_length": 5})
    task = build_task(cfg, 32)
    task.fit_labels([])
    with pytest.raises(DataError, match="f:3: empty target text in train"):
        task.check([Example("ein hund", label="a dog"), Example("eine katze", label=" ", where="f:3")], "train")
    with pytest.raises(DataError, match="no label in dev"):
        task.check([Example("ein hund", where="f:1")], "dev")
    task.check([Example("ein hund")], "predict")
    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    long = [Example("x", label="one two three four five six", where=f"f:{i}") for i in (1, 2)]
    feats = [task.encode(e, tok) for e in [*long, Example("y", label="one", where="f:3")]]
    assert [len(f["labels"]) for f in feats] == [4, 4, 2]
    assert feats[0]["labels"][-1] == tok.sep_token_id and feats[0]["decoder_input_ids"][0] == tok.cls_token_id
    with caplog.at_level(logging.WARNING, logger="polytask.data"):
        batch = task.collate(feats, tok.pad_token_id)
        task.collate(feats, tok.pad_token_id)
    warnings = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "2 target(s) longer than max_target_length=5" in warnings[0], warnings
    assert batch["labels"][2].tolist()[2:] == [-100, -100]  # padding is ignored by the loss
    with pytest.raises(ConfigError, match="metric 'rougeL' is not computed with metrics: translation"):
        build_task(TaskConfig(name="mt", type="seq2seq", data={"train": "x"}, metric="rougeL"), 32).fit_labels([])
    with pytest.raises(ConfigError, match="num_beams"):
        build_task(TaskConfig(name="mt", type="seq2seq", data={"train": "x"}, options={"num_beams": 0}), 32)


def test_decoder_is_warm_started_from_the_encoder(tiny_encoder_dir: Path) -> None:
    from polytask.encoders.transformer import TransformerEncoder
    from polytask.tasks.seq2seq import build_decoder

    enc = TransformerEncoder.from_pretrained(str(tiny_encoder_dir))
    warm = build_decoder(enc, warm=True)
    cold = build_decoder(enc, warm=False)
    src = enc.model.state_dict()
    got = warm.base_model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in src.items())  # every encoder tensor copied
    assert any("crossattention" in k for k in got) and not any("crossattention" in k for k in src)
    assert warm.config.is_decoder and warm.config.add_cross_attention
    # The LM head reads the decoder's own (copied) word embeddings.
    assert warm.get_output_embeddings().weight.data_ptr() == warm.get_input_embeddings().weight.data_ptr()
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(cold.base_model.state_dict()[key], src[key])
    scratch = TransformerEncoder.from_pretrained(f"scratch:{tiny_encoder_dir}")
    assert not torch.equal(scratch.model.state_dict()[key], src[key])  # the architecture, random weights


def test_generation_is_deterministic_and_survives_save_load_and_export(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    from transformers import AutoTokenizer, EncoderDecoderModel

    from polytask.export.hf import export_hf

    data = write_pairs(tmp_path / "data")
    first = train(parse_config(s2s_config(tiny_encoder_dir, data, tmp_path / "a")))
    second = train(parse_config(s2s_config(tiny_encoder_dir, data, tmp_path / "b")))
    assert first.dev == second.dev and {"mt/bleu", "mt/chrf", "mt/loss"} <= set(first.dev)
    pa, pb = polytask.load(str(tmp_path / "a")), polytask.load(str(tmp_path / "b"))
    texts = [r["text"] for r in pa.predict(INPUTS)]
    assert texts == [r["text"] for r in pb.predict(INPUTS)]  # same seed, same generations
    assert set(pa.predict(INPUTS[:1])[0]) == {"text"} and any(texts)
    # Reloaded run = the in-memory model of the saved checkpoint; batch size does not matter.
    pa.batch_size = 1
    assert [r["text"] for r in pa.predict(INPUTS)] == texts

    out = export_hf(tmp_path / "a", tmp_path / "hf")
    model = EncoderDecoderModel.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    batch = tok(INPUTS, padding=True, return_tensors="pt")
    ids = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)] == texts

    from polytask.errors import ExportError
    from polytask.export.onnx import export_onnx

    with pytest.raises(ExportError, match=r"task .mt. generates text .* export it with .polytask export hf."):
        export_onnx(tmp_path / "a", tmp_path / "onnx")


def test_seq2seq_and_classification_share_the_encoder(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    data = write_pairs(tmp_path / "data")
    sent = write_toy_jsonl(tmp_path / "sent")
    raw = s2s_config(tiny_encoder_dir, data, tmp_path / "run", epochs=2)
    raw["tasks"].append({"name": "sent", "type": "classification", "data": {"train": sent["train"], "dev": sent["dev"]}})
    result = train(parse_config(raw))
    assert {"mt/bleu", "sent/accuracy", "average"} <= set(result.dev)
    predictor = polytask.load(str(tmp_path / "run"))
    rows = predictor.predict(["ein hund und katze", "great fun movie"])
    assert set(rows[0]) == {"mt", "sent"}
    assert isinstance(rows[0]["mt"]["text"], str) and rows[1]["sent"]["label"] in ("pos", "neg")
    again = polytask.load(str(tmp_path / "run")).predict(["ein hund und katze", "great fun movie"])
    assert again == rows

    # serve answers with the generated text (in-process app, no server started).
    from fastapi.testclient import TestClient

    from polytask.serving.server import Limits, create_app

    with TestClient(create_app(predictor, Limits())) as client:
        r = client.post("/predict", json={"text": "ein hund und katze", "tasks": "mt"})
        assert r.status_code == 200 and r.json()["predictions"][0] == rows[0]["mt"]

    # init_from: the classification+seq2seq run's encoder starts a new seq2seq run.
    from polytask.runs import starting_encoder

    raw2 = s2s_config(tiny_encoder_dir, data, tmp_path / "run2", epochs=1)
    raw2["transfer"] = {"init_from": str(tmp_path / "run")}
    encoder, report = starting_encoder(parse_config(raw2))
    trained = predictor.model.encoder.model.state_dict()
    assert report is not None and report.loaded
    assert all(torch.equal(v, trained[k]) for k, v in encoder.model.state_dict().items())
    assert "mt/bleu" in train(parse_config(raw2)).dev
