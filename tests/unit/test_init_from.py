"""transfer.init_from: a new task starts from the encoder of an earlier run, with a fresh head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polytask.config import parse_config
from polytask.errors import CheckpointError, ConfigError
from polytask.training import checkpoint as ckpt
from polytask.training.loop import train
from tests.unit.toy import toy_config, write_toy_jsonl, write_toy_ner


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("src")
    data = write_toy_jsonl(tmp / "data")
    train(parse_config(toy_config(tiny_encoder_dir, data, tmp / "run", epochs=1)))
    return tmp / "run"


def target_config(tmp_path: Path, source: str, **train_kw) -> dict:  # noqa: ANN003
    # A different task (token tagging) on the source run's encoder; encoder.name_or_path points
    # nowhere useful on purpose: the source run's encoder files are what must be used.
    paths = write_toy_ner(tmp_path / "ner")
    raw = toy_config(Path("/nonexistent"), paths, tmp_path / "target", **train_kw)
    raw["tasks"] = [{"name": "ner", "type": "token_classification", "data": {"train": paths["train"], "dev": paths["dev"]}}]
    raw["transfer"] = {"init_from": source}
    return raw


def test_encoder_comes_from_the_source_run_and_heads_are_new(tmp_path: Path, source_run: Path) -> None:
    raw = target_config(tmp_path, str(source_run), max_steps=1, lr=1e-12, warmup_steps=0)
    train(parse_config(raw))
    report = json.loads((tmp_path / "target/init_from.json").read_text())
    src_state = ckpt.load_model_state(source_run / "checkpoints/best")
    enc_keys = sorted(k for k in src_state if k.startswith("encoder."))
    assert sorted(report["loaded"]) == enc_keys
    assert sorted(report["skipped"]) == ["heads.sent.out.bias", "heads.sent.out.weight"]
    assert sorted(report["new"]) == ["heads.ner.out.bias", "heads.ner.out.weight"]
    assert report["mismatched"] == []
    # After one step at lr 1e-12 the encoder still equals the source's best checkpoint.
    target = ckpt.load_model_state(tmp_path / "target/checkpoints/last")
    for k in enc_keys:
        assert torch.allclose(target[k], src_state[k], atol=1e-8), k


def test_init_from_errors(tmp_path: Path, source_run: Path, tiny_encoder_dir: Path) -> None:
    with pytest.raises(CheckpointError, match="no such run directory"):
        train(parse_config(target_config(tmp_path, str(tmp_path / "missing"))))
    raw = target_config(tmp_path, str(source_run))
    raw["encoder"]["type"] = "bilstm"
    with pytest.raises(ConfigError, match=r"that run's encoder is 'transformer', this experiment's is 'bilstm'; set encoder.type to match"):
        train(parse_config(raw))

    # A tokenizer larger than the embeddings, then a source whose weights and encoder files differ.
    from transformers import AutoTokenizer, BertConfig, BertModel

    small_vocab = tmp_path / "small_vocab"
    BertModel(BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=64), add_pooling_layer=False).save_pretrained(small_vocab)
    AutoTokenizer.from_pretrained(tiny_encoder_dir).save_pretrained(small_vocab)
    bad = toy_config(small_vocab, write_toy_jsonl(tmp_path / "d1"), tmp_path / "sv", max_steps=1)
    with pytest.raises(ConfigError, match=r"the tokenizer has 30522 tokens but the model's embeddings hold 200"):
        train(parse_config(bad))

    other = tmp_path / "wide_bert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=48, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=64), add_pooling_layer=False).save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_encoder_dir).save_pretrained(other)
    wide = tmp_path / "wide_run"
    wide_raw = toy_config(other, write_toy_jsonl(tmp_path / "d2"), wide, max_steps=1)
    train(parse_config(wide_raw))
    # Swap the source's weights for the tiny model's shapes under the wide run's encoder files:
    state = ckpt.load_model_state(source_run / "checkpoints/best")
    meta = ckpt.load_meta(wide / "checkpoints/best")
    ckpt.save_checkpoint(tmp_path / "mixed", state, {k: v for k, v in meta.items() if k not in ("format_version", "versions")},
                         wide / "checkpoints/best/encoder")
    with pytest.raises(ConfigError, match=r"init_from .*mixed: its encoder weights do not fit its encoder architecture \(1 of \d+ tensors fit; encoder.model.embeddings"):
        train(parse_config(target_config(tmp_path, str(tmp_path / "mixed"))))
