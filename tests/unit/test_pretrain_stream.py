"""``pretrain`` with ``stream: true``: the corpus is read lazily through ``datasets``, tokenised as
it is needed, and gives the same sequences and the same errors as the in-memory path."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import pytest
from datasets import IterableDataset
from transformers import AutoTokenizer

from polytask.encoders.transformer import TransformerEncoder
from polytask.errors import ConfigError, DataError
from polytask.pretrain import pretrain_mlm, read_corpus
from polytask.pretrain.corpus import iter_texts, stream_corpus
from polytask.pretrain.mlm import stream_batches, stream_sequences, to_sequences
from tests.unit.test_pretrain import corpus, small

# Texts of very different lengths; the long one overflows max_length into several sequences.
TEXTS = ["a short one .", "the cat sat on the mat and then " * 12, "  spaces around  ", "x", "a dog ran to a tree ."]


def test_stream_is_lazy_past_an_undecodable_file(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    # The eager reader decodes every file first and fails on b.txt; the stream yields a.txt's
    # texts without ever opening b.txt (it tokenises 256 texts at a time: a.txt holds more).
    words = ["first", "second", "third"] + [f"w{i}" for i in range(297)]
    (tmp_path / "a.txt").write_text("".join(f"{w} text\n" for w in words))
    (tmp_path / "b.txt").write_bytes(b"bad \xff\xfe bytes\n")
    with pytest.raises(DataError, match="b.txt:1: cannot decode byte 0xff"):
        read_corpus(tmp_path)
    texts = stream_corpus(tmp_path)
    assert isinstance(texts, IterableDataset)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder_dir))
    seqs = [row["input_ids"] for row in islice(stream_sequences(texts, tokenizer, 16), 3)]
    assert seqs == to_sequences(["first text", "second text", "third text"], tokenizer, 16)
    # Reading on does reach b.txt, and says so in a DataError.
    with pytest.raises(DataError, match=r"cannot decode byte 0xff as utf-8; set encoding"):
        list(iter_texts(texts, tmp_path, "utf-8"))


def test_stream_is_lazy_within_a_large_jsonl_file(tmp_path: Path) -> None:
    # 11 MB of valid records, then a broken line: the stream reads 10 MB chunks, so the first
    # texts come out while the eager reader fails on the last line.
    good = "".join(json.dumps({"text": f"review number {i} of a kettle"}) + "\n" for i in range(260_000))
    path = tmp_path / "big.jsonl"
    path.write_text(good + "{not json at all\n")
    assert path.stat().st_size > 11 << 20
    with pytest.raises(DataError, match=r"big.jsonl:260001: not valid JSON"):
        read_corpus(path)
    first = list(iter_texts(stream_corpus(path).take(3), path, "utf-8"))
    assert first == ["review number 0 of a kettle", "review number 1 of a kettle", "review number 2 of a kettle"]


def test_stream_reads_the_same_texts_as_the_list_path(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("\ufefffirst text\n\n  second text  \nthird\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("from b\n")
    (tmp_path / "r.jsonl").write_text('{"review": "nice kettle", "label": 1}\n{"review": "broke fast"}\n')
    (tmp_path / "r.csv").write_text('id,text\n1,"a, quoted text"\n2,plain\n')
    (tmp_path / "r.tsv").write_text('sentence\tlabel\nan "unbalanced quote\t1\n')

    def streamed(path: Path, **kw: object) -> list[str]:
        return list(iter_texts(stream_corpus(path, **kw), path, "utf-8"))

    for path, kw in [(tmp_path / "a.txt", {}), (tmp_path / "a.txt", {"limit": 2}), (tmp_path, {}),
                     (tmp_path / "r.jsonl", {"text_column": "review"}), (tmp_path / "r.csv", {}),
                     (tmp_path / "r.tsv", {})]:
        assert streamed(path, **kw) == read_corpus(path, **kw), path
    assert streamed(tmp_path / "a.txt") == ["first text", "second text", "third"]


def test_streamed_tokenisation_matches_the_list_path(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder_dir))
    (tmp_path / "c.txt").write_text("\n".join(TEXTS) + "\n")
    expected = to_sequences(read_corpus(tmp_path / "c.txt"), tokenizer, 16)
    assert len(expected) > len(TEXTS)  # the long text did overflow
    texts = stream_corpus(tmp_path / "c.txt")
    assert [r["input_ids"] for r in stream_sequences(texts, tokenizer, 16)] == expected
    shuffled = [r["input_ids"] for r in stream_sequences(texts, tokenizer, 16, shuffle_buffer=4, seed=1)]
    assert shuffled != expected and sorted(shuffled) == sorted(expected)
    batches = list(stream_batches(iter(expected), batch_size=2, seed=0, window_batches=2))
    assert sorted(s for b in batches for s in b) == sorted(expected) and all(len(b) <= 2 for b in batches)


def test_streamed_pretrain_run(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    text = corpus(tmp_path / "c.txt", 120)
    result = pretrain_mlm(small(tiny_encoder_dir, text, tmp_path / "out", stream=True, max_steps=3,
                                eval_texts=20, shuffle_buffer=50))
    assert result.stream and result.steps == 3 and result.eval_texts == 20 and result.train_texts is None
    assert 0 < result.train_sequences <= 3 * 16  # bucketing may give a short batch
    assert result.perplexity_before is not None and result.perplexity_after is not None
    assert any("streaming" in n and "the first 20 texts held out" in n for n in result.notes)
    saved = json.loads((tmp_path / "out" / "pretrain.json").read_text())
    assert saved["stream"] is True and saved["config"]["stream"] is True and saved["steps"] == 3
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["split"], r["step"]) for r in records] == [("eval", 0), ("train", 3), ("eval", 3)]
    enc = TransformerEncoder.from_pretrained(str(tmp_path / "out" / "model"))
    assert enc.hidden_size == 32


def test_streamed_run_loops_over_a_short_corpus(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    # 10 training texts, batch 16: every step is a new pass over the stream.
    text = corpus(tmp_path / "c.txt", 12)
    result = pretrain_mlm(small(tiny_encoder_dir, text, tmp_path / "out", stream=True, max_steps=3, eval_texts=2))
    assert result.steps == 3 and result.train_sequences == 30


def test_stream_errors(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    text = corpus(tmp_path / "c.txt", 20)
    with pytest.raises(ConfigError, match=r"max_steps: stream: true needs max_steps: a streamed corpus has no known length"):
        pretrain_mlm(small(tiny_encoder_dir, text, tmp_path / "o", stream=True))
    with pytest.raises(DataError, match=r"c.txt: the corpus holds 20 texts, all held out by eval_texts \(200\)"):
        pretrain_mlm(small(tiny_encoder_dir, text, tmp_path / "o", stream=True, max_steps=1))
    (tmp_path / "one.txt").write_text("only one\n")
    with pytest.raises(DataError, match="the corpus holds one text; pretraining needs at least 2"):
        pretrain_mlm(small(tiny_encoder_dir, tmp_path / "one.txt", tmp_path / "o", stream=True, max_steps=1))
    with pytest.raises(ConfigError, match=r"encoding: stream reads each file with one encoding, not 'utf-8,latin-1'"):
        stream_corpus(text, encoding="utf-8,latin-1")
    with pytest.raises(ConfigError, match=r"'shuffle_buffer': Input should be greater than or equal to 0"):
        pretrain_mlm(small(tiny_encoder_dir, text, tmp_path / "o", stream=True, max_steps=1, shuffle_buffer=-1))


def test_stream_corpus_errors_match_the_list_path(tmp_path: Path) -> None:
    # Missing, blank and empty-folder paths: test_pretrain.test_corpus_path_errors_of_both_readers.
    (tmp_path / "r.jsonl").write_text('{"review": "nice kettle"}\n')
    with pytest.raises(DataError, match=r"r.jsonl:1: no key 'text' in this record \(keys: review\)"):
        read_corpus(tmp_path / "r.jsonl")
    with pytest.raises(DataError, match=r"r.jsonl:1: no key 'text' in this record \(keys: review\); set text_column"):
        stream_corpus(tmp_path / "r.jsonl")
    (tmp_path / "r.csv").write_text("id,body\n1,nice\n")
    with pytest.raises(DataError, match=r"r.csv: cannot tell which column holds the text \(header: id, body\)"):
        read_corpus(tmp_path / "r.csv")
    with pytest.raises(DataError, match=r"r.csv:1: cannot tell which column holds the text \(header: id, body\); set text_column"):
        stream_corpus(tmp_path / "r.csv")
    with pytest.raises(DataError, match=r"r.csv:1: no column 'review' in the header \(columns: id, body\); fix text_column"):
        stream_corpus(tmp_path / "r.csv", text_column="review")
    (tmp_path / "gap.csv").write_text("id,text\n1,fine\n2,\n")
    for read in (read_corpus, lambda p: list(iter_texts(stream_corpus(p), p, "utf-8"))):
        with pytest.raises(DataError, match=r"gap.csv:3: empty text in column 'text'; remove the row or fill it in"):
            read(tmp_path / "gap.csv")
