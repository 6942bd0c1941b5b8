"""``polytask pretrain``: masked-LM pretraining lowers held-out perplexity, writes a model folder
that polytask trains from, and refuses bad input with clear messages."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import parse_config
from polytask.encoders.transformer import TransformerEncoder
from polytask.errors import ConfigError, DataError
from polytask.pretrain import load_pretrain_config, pretrain_mlm, read_corpus
from polytask.training.loop import train
from tests.unit.toy import toy_config, write_toy_jsonl

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pretrain_amazon.yaml"


def corpus(path: Path, n: int = 300) -> Path:
    """Repetitive sentences from a tiny grammar: a small model learns them in a few steps."""
    rng = random.Random(0)
    subj, verb, obj = ["the cat", "a dog", "my bird"], ["sat on", "ran to", "looked at"], ["the mat", "a tree"]
    lines = [f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(obj)} ." for _ in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def small(encoder: Path, text: Path, out: Path, **kw: object) -> dict:
    return {"encoder": str(encoder), "text": str(text), "output_dir": str(out), "batch_size": 16,
            "lr": 3e-3, "warmup_ratio": 0.0, "max_length": 32, "eval_fraction": 0.1, "progress": False,
            "seed": 0, **kw}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("pretrain")
    result = pretrain_mlm(small(tiny_encoder_dir, corpus(tmp / "corpus.txt"), tmp / "dapt", max_steps=20))
    return tmp, result


def test_pretraining_lowers_held_out_perplexity(pretrained, tiny_encoder_dir: Path) -> None:  # noqa: ANN001
    tmp, result = pretrained
    assert result.steps == 20 and result.eval_texts == 30 and result.train_texts == 270
    # A fresh MLM head over a 30k vocabulary starts near uniform; 20 steps on a 9-word grammar
    # must cut perplexity by far more than noise.
    assert result.perplexity_after < 0.5 * result.perplexity_before
    assert any("ships no masked-LM head" in n and "tied to the word embeddings" in n for n in result.notes)
    saved = json.loads((tmp / "dapt" / "pretrain.json").read_text())
    assert saved["perplexity_before"] == pytest.approx(result.perplexity_before)
    assert saved["perplexity_after"] == pytest.approx(result.perplexity_after)
    assert saved["config"]["max_steps"] == 20
    records = [json.loads(line) for line in (tmp / "dapt" / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in records] == ["eval", "train", "train", "eval"]
    names = {p.name for p in (tmp / "dapt" / "model").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not [p for p in (tmp / "dapt").iterdir() if p.name.startswith(".model")]  # no leftovers


def test_output_folder_is_an_encoder_source(pretrained, tiny_encoder_dir: Path) -> None:  # noqa: ANN001
    tmp, _ = pretrained
    model_dir = tmp / "dapt" / "model"
    enc = TransformerEncoder.from_pretrained(str(model_dir))
    trained = load_file(str(model_dir / "model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    start = load_file(str(tiny_encoder_dir / "model.safetensors"))["embeddings.word_embeddings.weight"]
    loaded = enc.model.embeddings.word_embeddings.weight.detach()
    assert torch.equal(loaded, trained) and not torch.equal(loaded, start)

    data = write_toy_jsonl(tmp / "toy")
    cfg = parse_config(toy_config(model_dir, data, tmp / "run", epochs=1))
    result = train(cfg)
    assert result.steps == 8 and 0.0 <= result.dev["sent/accuracy"] <= 1.0
    assert (tmp / "run" / "checkpoints" / "best" / "model.safetensors").is_file()


def test_cli_with_overrides_and_overwrite(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    corpus(tmp_path / "c.txt", 60)
    conf = small(tiny_encoder_dir, Path("c.txt"), tmp_path / "out", max_steps=50)  # text relative to the file
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(conf))
    runner = CliRunner()
    res = runner.invoke(app, ["pretrain", str(tmp_path / "p.yaml"), "--set", "max_steps=2"])
    assert res.exit_code == 0, res.output
    assert "held-out perplexity" in res.output and "after 2 steps" in res.output
    assert json.loads((tmp_path / "out" / "pretrain.json").read_text())["steps"] == 2
    res = runner.invoke(app, ["pretrain", str(tmp_path / "p.yaml"), "--set", "max_steps=2"])
    assert res.exit_code == 2
    assert "already exists; pass overwrite=True (--overwrite) to replace it, or set output_dir" in res.output
    res = runner.invoke(app, ["pretrain", str(tmp_path / "p.yaml"), "--set", "max_steps=1", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out" / "pretrain.json").read_text())["steps"] == 1
    log = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["split"], r["step"]) for r in log] == [("eval", 0), ("train", 1), ("eval", 1)]
    res = runner.invoke(app, ["pretrain", str(tmp_path / "p.yaml"), "--set", "epoch=1"])
    assert res.exit_code == 2 and "unknown key 'epoch'; allowed keys: encoder, text," in res.output


def test_read_corpus_layouts(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first text\n\n  second text  \nthird\n")
    assert read_corpus(tmp_path / "a.txt") == ["first text", "second text", "third"]
    assert read_corpus(tmp_path / "a.txt", limit=2) == ["first text", "second text"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("from b\n")
    (tmp_path / "sub" / "notes.md").write_text("not read\n")
    assert read_corpus(tmp_path) == ["first text", "second text", "third", "from b"]
    (tmp_path / "r.jsonl").write_text('{"review": "nice kettle", "label": 1}\n{"review": "broke fast"}\n')
    assert read_corpus(tmp_path / "r.jsonl", text_column="review") == ["nice kettle", "broke fast"]
    (tmp_path / "r.csv").write_text('id,text\n1,"a, quoted text"\n2,plain\n')
    assert read_corpus(tmp_path / "r.csv") == ["a, quoted text", "plain"]


@pytest.mark.parametrize("reader", ["read_corpus", "stream_corpus"])
def test_corpus_path_errors_of_both_readers(tmp_path: Path, reader: str) -> None:
    from polytask.pretrain.corpus import stream_corpus

    read = {"read_corpus": read_corpus, "stream_corpus": stream_corpus}[reader]
    with pytest.raises(DataError, match=r"nope.txt: text not found; give a .txt file \(one text per line\), a folder"):
        read(tmp_path / "nope.txt")
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    with pytest.raises(DataError, match=r"blank.txt: the corpus is empty \(no non-blank text\)"):
        read(tmp_path / "blank.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no .txt files in this folder"):
        read(tmp_path / "empty")


def test_corpus_errors(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    (tmp_path / "one.txt").write_text("only one\n")
    with pytest.raises(DataError, match="the corpus holds one text; pretraining needs at least 2"):
        pretrain_mlm(small(tiny_encoder_dir, tmp_path / "one.txt", tmp_path / "o"))


def test_encoder_errors(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    text = corpus(tmp_path / "c.txt", 20)

    def run(encoder: Path, **kw: object) -> None:
        pretrain_mlm(small(encoder, text, tmp_path / "out", max_steps=1, **kw))

    with pytest.raises(ConfigError, match=r"encoder: encoder folder not found: .*missing; give a transformers model folder \(config.json"):
        run(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"c.txt is a file, not a folder"):
        run(text)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match=r"plain has no config.json, so it is not a transformers model folder"):
        run(tmp_path / "plain")
    (tmp_path / "a_run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"a_run is a polytask run, not a transformers folder: export its encoder with 'polytask export-hf"):
        run(tmp_path / "a_run")
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=30522).save_pretrained(tmp_path / "gpt2")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "gpt2" / name).write_bytes((tiny_encoder_dir / name).read_bytes())
    with pytest.raises(ConfigError, match=r"cannot load .*gpt2 as a masked language model .*pretrain needs a BERT-style encoder"):
        run(tmp_path / "gpt2")
    with pytest.raises(ConfigError, match=r"max_length: max_length 256 is more than the encoder's 128 positions; set max_length <= 128"):
        run(tiny_encoder_dir, max_length=256)


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing required key 'text'"):
        pretrain_mlm({"encoder": "default"})
    with pytest.raises(ConfigError, match=r"'mlm_probability': Input should be less than 1"):
        pretrain_mlm({"text": "x.txt", "mlm_probability": 1.5})
    with pytest.raises(ConfigError, match="pretrain config file not found"):
        load_pretrain_config(tmp_path / "none.yaml")


def test_example_config_loads() -> None:
    cfg = load_pretrain_config(EXAMPLE, ["limit=10"])
    assert cfg.text.endswith("shared/data/amazon_multidomain/amazon_4domains.jsonl") and Path(cfg.text).is_absolute()
    assert cfg.encoder == "default" and cfg.limit == 10 and cfg.text_column == "text"


@pytest.mark.integration
def test_example_runs_on_amazon_reviews(shared_data: Path, tmp_path: Path) -> None:
    cfg = load_pretrain_config(EXAMPLE, ["limit=40", "max_steps=2", "batch_size=4", "max_length=64",
                                         "progress=false", f"output_dir={tmp_path}"])
    result = pretrain_mlm(cfg)
    assert result.steps == 2 and result.eval_texts == 2 and result.perplexity_after is not None
    assert TransformerEncoder.from_pretrained(str(tmp_path / "model")).hidden_size == 384
