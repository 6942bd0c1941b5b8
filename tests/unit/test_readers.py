"""Readers: every format and option on small files written here, and every bad-input message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from polytask.config import parse_config
from polytask.config.schema import DataConfig
from polytask.data.example import Example
from polytask.data.loading import load_splits, read_file, resolve_format
from polytask.data.readers import READERS
from polytask.data.splits import seeded_subset, train_dev_split
from polytask.errors import ConfigError, DataError


def cfg(**kw) -> DataConfig:  # noqa: ANN003
    """A data config as a user would write it; ``train`` is required but unused by read_file."""
    kw.setdefault("train", "unused")
    return DataConfig(**kw)


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(p)


def rows(examples: list[Example]) -> list[tuple]:
    return [(e.text, e.text_pair, e.label) for e in examples]


def raises(message: str):  # noqa: ANN201
    """pytest.raises(DataError) matching ``message`` literally (no regex escaping in tests)."""
    return pytest.raises(DataError, match=re.escape(message))


def test_registry_holds_every_format() -> None:
    assert READERS.names() == ["conll", "csv", "folder", "hf", "jsonl", "label_text", "parallel", "squad", "tsv"]


# ---- CSV / TSV --------------------------------------------------------------------------------
def test_csv_header_by_default_names_with_quoting(tmp_path: Path) -> None:
    p = write(tmp_path, "a.csv", 'id,text,label\n1,"hello, world",pos\n\n2,"say ""hi""\nagain",neg\n3,x,pos\n')
    exs = read_file(cfg(), p, token_level=False)
    assert rows(exs) == [("hello, world", None, "pos"), ('say "hi"\nagain', None, "neg"), ("x", None, "pos")]
    # where is the line a row starts on, blank lines and multi-line fields counted
    assert [e.where for e in exs] == [f"{p}:2", f"{p}:4", f"{p}:6"]


def test_csv_sentence_pair_default_names_and_crlf(tmp_path: Path) -> None:
    p = write(tmp_path, "p.csv", "Sentence1,sentence2,Label\r\na,b,1\r\nc,d,0\r\n")
    exs = read_file(cfg(), p, False)
    assert rows(exs) == [("a", "b", "1"), ("c", "d", "0")]
    assert exs[1].where == f"{p}:3"


def test_csv_without_header_by_position_and_label_map(tmp_path: Path) -> None:
    p = write(tmp_path, "ag.csv", '"3","Title","Stocks fell"\n"2","T","A goal"\n')
    c = cfg(header=False, columns={"text": 2, "text_pair": 1, "label": 0}, label_map={"2": "Sports", "3": "Business"})
    assert rows(read_file(c, p, False)) == [("Stocks fell", "Title", "Business"), ("A goal", "T", "Sports")]


def test_label_map_missing_key(tmp_path: Path) -> None:
    p = write(tmp_path, "ag.csv", '"1","T","x"\n"5","T","x"\n')
    c = cfg(header=False, columns={"text": 2, "label": 0}, label_map={"1": "World", "2": "Sports"})
    with raises(f"{p}:2: label '5' is not in data.label_map (keys: 1, 2); add it to the map or fix the data"):
        read_file(c, p, False)


def test_csv_without_header_needs_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "n.csv", "a,b\nc,d\n")
    with raises(f"{p}: cannot tell which column holds the text: the file has no header row; set "
                "data.columns.text and data.columns.label to 0-based positions"):
        read_file(cfg(), p, False)


def test_csv_header_without_known_names(tmp_path: Path) -> None:
    p = write(tmp_path, "h.csv", "review,stars\ngood,5\n")
    with raises(f"{p}: cannot tell which column holds the text (header: review, stars); set data.columns.text"):
        read_file(cfg(), p, False)
    # named columns: the first row is the header
    assert rows(read_file(cfg(columns={"text": "review", "label": "stars"}), p, False)) == [("good", None, "5")]


def test_named_column_missing_from_header(tmp_path: Path) -> None:
    p = write(tmp_path, "h.csv", "sentence,label\nx,1\n")
    with raises(f"{p}:2: no column 'review' in the header (columns: sentence, label); fix data.columns"):
        read_file(cfg(columns={"text": "review", "label": "label"}), p, False)
    with raises(f"{p}:1: column 'review' is named but the file has no header; give data.columns as 0-based positions"):
        read_file(cfg(header=False, columns={"text": "review", "label": 1}), p, False)


def test_header_auto_detection_by_numeric_column(tmp_path: Path) -> None:
    # MRPC-like: positions configured, header detected because 'Quality' sits over 0/1 labels
    mrpc = write(tmp_path, "m.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t7\t8\ta\tb\n0\t9\t10\tc\td\n")
    c = cfg(columns={"text": 3, "text_pair": 4, "label": 0})
    assert rows(read_file(c, mrpc, False)) == [("a", "b", "1"), ("c", "d", "0")]
    # CoLA-like: no header, the first row is data
    cola = write(tmp_path, "c.tsv", "gj04\t1\t\tOur friends won't buy it.\ngj04\t0\t*\tOne more or.\n")
    assert [e.label for e in read_file(cfg(columns={"text": 3, "label": 1}), cola, False)] == ["1", "0"]
    # forced: header: false keeps a first row that looks like a header
    p = write(tmp_path, "f.tsv", "label\ttext\nspam\twin now\n")
    c = cfg(header=False, columns={"text": 1, "label": 0})
    assert rows(read_file(c, p, False)) == [("text", None, "label"), ("win now", None, "spam")]
    # forced: header: true drops a first row that looks like data
    c = cfg(header=True, columns={"text": 3, "label": 1})
    assert [e.text for e in read_file(c, cola, False)] == ["One more or."]


def test_tsv_unbalanced_quotes_extra_columns_and_short_rows(tmp_path: Path) -> None:
    # STS-B style: no header, score in column 4, sentences in 5 and 6, sometimes extra columns.
    p = write(tmp_path, "s.tsv", 'g\tf\t2012\t1\t5.0\tA "quoted man\tA man\n'
                                 'g\tf\t2012\t2\t1.5\tA dog\tA cat\textra\tmore\n')
    c = cfg(header=False, columns={"text": 5, "text_pair": 6, "label": 4})
    assert rows(read_file(c, p, False)) == [('A "quoted man', "A man", "5.0"), ("A dog", "A cat", "1.5")]
    short = write(tmp_path, "short.tsv", "g\tf\t2012\t1\t5.0\tonly one\n")
    with raises(f"{short}:1: row has 6 columns, column 6 is missing; check data.delimiter and data.columns"):
        read_file(c, short, False)


def test_tsv_keeps_quotes_csv_with_tab_delimiter_removes_them(tmp_path: Path) -> None:
    p = write(tmp_path, "q.tsv", 'text\tlabel\n"a\tb"\tx\n')
    assert rows(read_file(cfg(format="tsv", columns={"text": 0, "label": 1}, header=True), p, False)) == [
        ('"a', None, 'b"')
    ]
    assert rows(read_file(cfg(format="csv", delimiter="\t"), p, False)) == [("a\tb", None, "x")]


def test_custom_delimiter_and_forced_header(tmp_path: Path) -> None:
    p = write(tmp_path, "p.csv", "t|l\nfoo|a\n")
    assert rows(read_file(cfg(delimiter="|", header=True, columns={"text": "t", "label": "l"}), p, False)) == [
        ("foo", None, "a")
    ]
    p = write(tmp_path, "semi.csv", "text;label\n\"x;y\";b\n")
    assert rows(read_file(cfg(delimiter=";"), p, False)) == [("x;y", None, "b")]


def test_csv_unclosed_quote(tmp_path: Path) -> None:
    p = write(tmp_path, "u.csv", 'text,label\nok,a\n"never closed,b\nmore,c\n')
    with raises(f"{p}:3: a quoted field opened on this line is never closed and runs to the end of the file"):
        read_file(cfg(), p, False)


def test_bom_is_stripped(tmp_path: Path) -> None:
    # MRPC's train.tsv starts with a UTF-8 BOM before its header.
    p = write(tmp_path, "m.tsv", "\ufeffQuality\t#1 String\t#2 String\n1\ta\tb\n".encode())
    c = cfg(columns={"text": "#1 String", "text_pair": "#2 String", "label": "Quality"})
    assert rows(read_file(c, p, False)) == [("a", "b", "1")]
    # also when another encoding is configured
    c = cfg(encoding="latin-1", columns={"text": "#1 String", "text_pair": "#2 String", "label": "Quality"})
    assert rows(read_file(c, p, False)) == [("a", "b", "1")]


def test_latin1_error_and_explicit_encoding(tmp_path: Path) -> None:
    p = write(tmp_path, "l.csv", "text,label\nfine,a\ncost \xa35,b\n".encode("latin-1"))
    with raises(f"{p}:3: cannot decode byte 0xa3 at offset 23 as utf-8; set data.encoding (e.g. latin-1, "
                "or utf-8,latin-1 to try both in turn)"):
        read_file(cfg(), p, False)
    assert read_file(cfg(encoding="latin-1"), p, False)[1].text == "cost £5"
    assert read_file(cfg(encoding="utf-8,latin-1"), p, False)[1].text == "cost £5"
    with raises(f"{p}: unknown encoding 'klingon' (data.encoding)"):
        read_file(cfg(encoding="klingon"), p, False)


def test_empty_text_label_and_pair(tmp_path: Path) -> None:
    p = write(tmp_path, "e.csv", "text,label\nok,a\n  ,b\n")
    with raises(f"{p}:3: empty text in column 'text'; remove the row or fill it in"):
        read_file(cfg(), p, False)
    p = write(tmp_path, "l.csv", "text,label\nok,\n")
    with raises(f"{p}:2: empty label in column 'label'"):
        read_file(cfg(), p, False)
    p = write(tmp_path, "p.tsv", "a\t \t1\n")
    with raises(f"{p}:1: empty text in column 1"):
        read_file(cfg(header=False, columns={"text": 0, "text_pair": 1, "label": 2}), p, False)


def test_missing_file_and_folder_given_as_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.csv")
    with raises(f"{missing}: file not found; data paths are relative to the experiment file"):
        read_file(cfg(), missing, False)
    with raises(f"{missing}: file not found"):
        load_splits(DataConfig(train=missing), False)
    (tmp_path / "d.csv").mkdir()
    with raises("file not found (it is a folder: set data.format to folder or hf)"):
        read_file(cfg(format="csv"), str(tmp_path / "d.csv"), False)


# ---- JSONL ------------------------------------------------------------------------------------
def test_jsonl_keys_meta_numbers_and_blank_lines(tmp_path: Path) -> None:
    recs = [{"text": "a", "label": "pos", "id": 1}, {"text": "b", "text_pair": "c", "label": 0}, {"text": "d"}]
    p = write(tmp_path, "d.jsonl", json.dumps(recs[0]) + "\n\n" + "\n".join(json.dumps(r) for r in recs[1:]) + "\n")
    exs = read_file(cfg(), p, False)
    assert rows(exs) == [("a", None, "pos"), ("b", "c", "0"), ("d", None, None)]
    assert exs[0].meta == {"id": 1} and [e.where for e in exs] == [f"{p}:1", f"{p}:3", f"{p}:4"]
    p = write(tmp_path, "k.jsonl", json.dumps({"review": "a", "stars": 4.5, "x": 1}) + "\n")
    assert rows(read_file(cfg(columns={"text": "review", "label": "stars"}), p, False)) == [("a", None, "4.5")]


def test_jsonl_errors(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.jsonl", '{"text": "a", "label": 1}\n{"text": \n')
    with raises(f"{bad}:2: not valid JSON (Expecting value at column 10)"):
        read_file(cfg(), bad, False)
    arr = write(tmp_path, "arr.json", '[{"text": "a"}]\n')
    with raises(f"{arr}:1: each line must be a JSON object (the file holds a JSON array: write one object per line)"):
        read_file(cfg(), arr, False)
    pretty = write(tmp_path, "pretty.json", '{\n  "text": "a"\n}\n')
    with raises("this looks like one pretty-printed JSON document, but jsonl needs one object per line"):
        read_file(cfg(), pretty, False)
    p = write(tmp_path, "k.jsonl", '{"review": "a", "label": 1}\n')
    with raises(f"{p}:1: no key 'text' in this record (keys: review, label); set data.columns"):
        read_file(cfg(), p, False)
    p = write(tmp_path, "l.jsonl", '{"text": "a", "y": 1}\n{"text": "b"}\n')
    with raises(f"{p}:2: no key 'y' in this record (keys: text); set data.columns"):
        read_file(cfg(columns={"label": "y"}), p, False)
    p = write(tmp_path, "n.jsonl", '{"text": "a", "y": null}\n')
    with raises(f"{p}:1: empty label in key 'y'"):
        read_file(cfg(columns={"label": "y"}), p, False)
    p = write(tmp_path, "e.jsonl", '{"text": "", "label": "x"}\n')
    with raises(f"{p}:1: empty text in column 'text'"):
        read_file(cfg(), p, False)
    p = write(tmp_path, "t.jsonl", '{"text": 5, "label": "x"}\n')
    with raises(f"{p}:1: the text in key 'text' is a int, not a string"):
        read_file(cfg(), p, False)
    with raises(f"{p}: data.columns.text is a position, but JSON records have keys: give the key name"):
        read_file(cfg(columns={"text": 0}), p, False)


def test_jsonl_token_level_and_list_labels(tmp_path: Path) -> None:
    p = write(tmp_path, "t.jsonl", json.dumps({"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}) + "\n")
    ex = read_file(cfg(), p, True)[0]
    assert ex.text == ["EU", "rejects"] and ex.label == ["B-ORG", "O"]
    p = write(tmp_path, "bad.jsonl", json.dumps({"tokens": ["EU", "rejects"], "tags": ["B-ORG"]}) + "\n")
    with raises(f"{p}:1: 2 tokens in 'tokens' but 1 tags in 'tags'"):
        read_file(cfg(), p, True)
    # multi-label: a list stays a list (mapped element-wise); a raw string is kept for the task
    p = write(tmp_path, "m.jsonl", json.dumps({"text": "x", "label": [1, 2]}) + "\n"
              + json.dumps({"text": "y", "label": []}) + "\n")
    assert [e.label for e in read_file(cfg(), p, False)] == [["1", "2"], []]
    assert read_file(cfg(label_map={"1": "A", "2": "B"}), p, False)[0].label == ["A", "B"]
    with raises(f"{p}:1: label '2' is not in data.label_map (keys: 1)"):
        read_file(cfg(label_map={"1": "A"}), p, False)
    p = write(tmp_path, "s.jsonl", json.dumps({"text": "x", "label": "a,b"}) + "\n")
    assert read_file(cfg(), p, False)[0].label == "a,b"


# ---- CoNLL ------------------------------------------------------------------------------------
def test_conll_docstart_whitespace_lines_and_tabs(tmp_path: Path) -> None:
    # (every token line has two columns: a line with another count is a bad row, tested below)
    text = ("-DOCSTART- -X- -X- O\n\nEU B-ORG\nrejects    O\n   \n"
            "Peter\tB-PER\nBlackburn\tI-PER\n\t\n\n"
            "New York\tB-LOC\nnbsp\u00a0tok\tO\n")
    p = write(tmp_path, "c.txt", text)
    exs = read_file(cfg(), p, True)
    assert [(e.text, e.label) for e in exs] == [
        (["EU", "rejects"], ["B-ORG", "O"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        (["New York", "nbsp\u00a0tok"], ["B-LOC", "O"]),
    ]
    assert [e.where for e in exs] == [f"{p}:3", f"{p}:6", f"{p}:10"]


def test_conll_columns_and_docstart_option(tmp_path: Path) -> None:
    p = write(tmp_path, "c.conll", "#doc\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n")
    exs = read_file(cfg(columns={"tokens": 0, "tags": 1}, docstart="#doc"), p, True)
    assert [(e.text, e.label) for e in exs] == [(["EU", "rejects"], ["NNP", "VBZ"])]


def test_conll_errors(tmp_path: Path) -> None:
    p = write(tmp_path, "c.conll", "EU B-ORG\nrejects\n")
    with raises(f"{p}:2: 1 column(s), but the token column is 0 and the tag column -1; every line needs a token and a tag"):
        read_file(cfg(), p, True)
    p2 = write(tmp_path, "d.conll", "EU NNP B-ORG\n")
    with raises(f"{p2}:1: 3 column(s), but the token column is 0 and the tag column 3"):
        read_file(cfg(columns={"tags": 3}), p2, True)
    with raises(f"{p}: the conll format holds one tag per token: use it with a token_classification task"):
        read_file(cfg(format="conll"), p, False)


# ---- label_text, folder -----------------------------------------------------------------------
def test_label_text(tmp_path: Path) -> None:
    p = write(tmp_path, "s.txt", "1 a great movie\n\n0 dull\n2\n")
    with raises(f"{p}:4: expected 'label text', found only '2'"):
        read_file(cfg(), p, False)
    p = write(tmp_path, "ok.txt", "1 a great movie\n\n0\tdull  film \n")
    exs = read_file(cfg(label_map={"0": "neg", "1": "pos"}), p, False)
    assert rows(exs) == [("a great movie", None, "pos"), ("dull  film", None, "neg")]
    assert exs[1].where == f"{p}:3"


def test_folder_per_label_and_unlabelled(tmp_path: Path) -> None:
    docs = {"pos": {"b.txt": "good", "a.txt": "fine"}, "neg": {"1.md": "bad"}}
    for label, files in docs.items():
        for name, text in files.items():
            write(tmp_path, f"docs/{label}/{name}", text + "\n")
    write(tmp_path, "docs/pos/.hidden", "secret")
    write(tmp_path, "docs/.git/x", "ignored")
    write(tmp_path, "docs/README", "ignored: a file beside label folders")
    exs = read_file(cfg(), str(tmp_path / "docs"), False)
    assert rows(exs) == [("bad", None, "neg"), ("fine", None, "pos"), ("good", None, "pos")]
    assert exs[0].where == str(tmp_path / "docs" / "neg" / "1.md")
    write(tmp_path, "flat/a.txt", "x")
    assert rows(read_file(cfg(), str(tmp_path / "flat"), False)) == [("x", None, None)]


def test_folder_encodings_and_errors(tmp_path: Path) -> None:
    write(tmp_path, "bbc/sport/1.txt", "goal")
    latin = write(tmp_path, "bbc/sport/2.txt", "a \xa315.8m fee".encode("latin-1"))
    with raises(f"{latin}:1: cannot decode byte 0xa3 at offset 2 as utf-8; set data.encoding"):
        read_file(cfg(), str(tmp_path / "bbc"), False)
    exs = read_file(cfg(encoding="utf-8,latin-1"), str(tmp_path / "bbc"), False)
    assert [e.text for e in exs] == ["goal", "a £15.8m fee"]
    empty = write(tmp_path, "bbc/sport/3.txt", " \n")
    with raises(f"{empty}: empty document; remove the file or fill it in"):
        read_file(cfg(encoding="utf-8,latin-1"), str(tmp_path / "bbc"), False)
    with raises(f"{tmp_path / 'none'}: folder not found"):
        read_file(cfg(format="folder"), str(tmp_path / "none"), False)


# ---- Hugging Face datasets --------------------------------------------------------------------
def test_hf_saved_dataset_with_classlabel(tmp_path: Path) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    feats = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"]), "id": Value("int32")})
    ds = Dataset.from_dict({"text": ["bad", "good", "fine"], "label": [0, 1, 1], "id": [7, 8, 9]}, features=feats)
    ds.save_to_disk(str(tmp_path / "single"))
    DatasetDict({"train": ds, "validation": ds.select([0]), "test": ds.select([1, 2]).cast_column(
        "label", ClassLabel(names=["neg", "pos"])).map(lambda r: {"label": -1})}).save_to_disk(str(tmp_path / "dict"))
    assert resolve_format(cfg(), str(tmp_path / "single"), False) == "hf"
    assert resolve_format(cfg(), str(tmp_path / "dict"), False) == "hf"
    exs = read_file(cfg(), str(tmp_path / "single"), False)
    assert rows(exs) == [("bad", None, "neg"), ("good", None, "pos"), ("fine", None, "pos")]
    assert exs[2].meta == {"id": 9} and exs[2].where == f"{tmp_path / 'single'}[train]:3"
    d = str(tmp_path / "dict")
    splits = load_splits(DataConfig(train=d, dev=d, test=d), False)
    assert len(splits["train"]) == 3 and [e.label for e in splits["dev"]] == ["neg"]
    assert [e.label for e in splits["test"]] == [None, None]  # -1: the hub's "no label"
    with raises(f"{d}: no split 'dev' in this dataset (splits: train, validation, test); set data.hf_splits"):
        load_splits(DataConfig(train=d, dev=d, hf_splits={"train": "train", "dev": "dev"}), False)
    with raises(f"{d}[train]: columns of a HF dataset are named, not numbered (data.columns.text)"):
        read_file(cfg(columns={"text": 0}), d, False)
    with raises(f"{d}[train]: no column 'sentence' (columns: text, label, id); set data.columns.text"):
        read_file(cfg(columns={"text": "sentence"}), d, False)


def test_hf_token_level_sequence_of_classlabel(tmp_path: Path) -> None:
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    feats = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=["O", "B-PER"]))})
    Dataset.from_dict({"tokens": [["Ann", "ran"]], "ner_tags": [[1, 0]]}, features=feats).save_to_disk(
        str(tmp_path / "ner"))
    ex = read_file(cfg(format="hf"), str(tmp_path / "ner"), True)[0]
    assert ex.text == ["Ann", "ran"] and ex.label == ["B-PER", "O"]


def test_hf_hub_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    full = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(10)], "label": [i % 2 for i in range(10)]})
    hub = {"train": full, "test": full.select([0, 1])}  # no validation split

    def fake_load_dataset(name, config=None, split=None):  # noqa: ANN001, ANN202
        assert (name, config) == ("org/set", "en")
        if split not in hub:
            raise ValueError(f'Unknown split "{split}". Should be one of {list(hub)}.')
        return hub[split]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr("polytask.hub.offline_reason", lambda timeout=3.0: None)  # "online"
    s = load_splits(DataConfig(hf_name="org/set", hf_config="en"), False)
    assert sorted(s) == ["dev", "test", "train"] and len(s["train"]) == 8 and len(s["dev"]) == 2
    assert s["test"][0].label == "0" and s["test"][0].where == "org/set[test]:1"
    with raises("cannot load Hugging Face dataset 'org/set' split 'validation': Unknown split"):
        load_splits(DataConfig(hf_name="org/set", hf_config="en", hf_splits={"train": "train", "dev": "validation"}),
                    False)

    def offline(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with raises("cannot load Hugging Face dataset 'org/set' split 'train': Couldn't reach the Hugging Face Hub. "
                "Hub datasets need a network or a local cache"):
        load_splits(DataConfig(hf_name="org/set"), False)


def test_hf_hub_dataset_offline_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    called = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: called.append(a))
    start = time.perf_counter()
    with raises("cannot load Hugging Face dataset 'org/never-cached': it is not in the local cache, and the Hub "
                "cannot be reached: HF_HUB_OFFLINE=1 is set (offline mode)"):
        load_splits(DataConfig(hf_name="org/never-cached"), False)
    assert time.perf_counter() - start < 1.0 and not called
    (tmp_path / "org___cached").mkdir()  # a cached copy: the normal (offline) load runs
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_dict(
        {"text": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]}))
    assert len(load_splits(DataConfig(hf_name="org/cached"), False)["train"]) >= 3


# ---- formats ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "token_level", "fmt"), [
    ("x.csv", False, "csv"), ("X.CSV", False, "csv"), ("x.tsv", False, "tsv"), ("x.tab", False, "tsv"),
    ("x.jsonl", False, "jsonl"), ("x.json", False, "jsonl"), ("x.ndjson", True, "jsonl"),
    ("x.conll", True, "conll"), ("x.iob", True, "conll"), ("x.bio", True, "conll"),
    ("x.txt", True, "conll"), ("x.txt", False, "label_text"),
])
def test_format_inference(name: str, token_level: bool, fmt: str) -> None:
    assert resolve_format(cfg(), name, token_level) == fmt


def test_format_inference_folders_and_errors(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    assert resolve_format(cfg(), str(tmp_path / "docs"), False) == "folder"
    assert resolve_format(cfg(format="csv"), "x.weird", False) == "csv"
    odd = write(tmp_path, "x.xlsx", "")
    with raises(f"{odd}: cannot tell the format from the extension '.xlsx'; set data.format to one of: "
                "conll, csv, folder, hf, jsonl, label_text, parallel, squad, tsv"):
        resolve_format(cfg(), odd, False)
    with raises(f"{tmp_path / 'gone'}: file not found; data paths are relative to the experiment file"):
        resolve_format(cfg(), str(tmp_path / "gone"), False)
    with pytest.raises(ConfigError, match=r"'tasks.0.data.format': Input should be 'auto', 'csv'"):
        parse_config({"tasks": [{"name": "a", "type": "classification", "data": {"train": "x", "format": "xlsx"}}]})


# ---- splits, limit ----------------------------------------------------------------------------
def labelled(tmp_path: Path, n: int, labels: callable) -> str:  # type: ignore[valid-type]
    recs = [{"text": f"t{i}", "label": labels(i)} for i in range(n)]
    return write(tmp_path, "d.jsonl", "".join(json.dumps(r) + "\n" for r in recs))


def test_dev_split_is_seeded_and_stratified(tmp_path: Path) -> None:
    p = labelled(tmp_path, 100, lambda i: "a" if i < 80 else "b")
    s1 = load_splits(DataConfig(train=p, dev_fraction=0.2), False)
    s2 = load_splits(DataConfig(train=p, dev_fraction=0.2), False)
    assert sorted(s1) == ["dev", "train"]  # no test key unless configured
    assert [e.text for e in s1["dev"]] == [e.text for e in s2["dev"]]
    assert len(s1["dev"]) == 20 and sum(e.label == "b" for e in s1["dev"]) == 4
    assert not {e.text for e in s1["dev"]} & {e.text for e in s1["train"]}
    assert len(s1["train"]) + len(s1["dev"]) == 100
    s3 = load_splits(DataConfig(train=p, dev_fraction=0.2, split_seed=7), False)
    assert [e.text for e in s3["dev"]] != [e.text for e in s1["dev"]]
    assert sum(e.label == "b" for e in s3["dev"]) == 4


def test_split_falls_back_to_a_plain_shuffle() -> None:
    lists = [Example(text=str(i), label=[str(i)]) for i in range(10)]  # list labels: no strata
    train, dev = train_dev_split(lists, 0.3, seed=1)
    assert len(dev) == 3 and len(train) == 7
    rare = [Example(text=str(i), label="a" if i else "b") for i in range(10)]  # 'b' has one example
    assert train_dev_split(rare, 0.3, 1) == train_dev_split(rare, 0.3, 1)
    assert len(train_dev_split(rare, 0.3, 1)[1]) == 3
    # stratify_labels=False gives the plain shuffle even where strata exist
    many = [Example(text=str(i), label="a" if i % 2 else "b") for i in range(20)]
    assert train_dev_split(many, 0.5, 3, stratify_labels=False) != train_dev_split(many, 0.5, 3)


def test_limit_is_a_nested_seeded_random_subset(tmp_path: Path) -> None:
    p = labelled(tmp_path, 100, lambda i: "a" if i < 50 else "b")  # sorted by label
    s = load_splits(DataConfig(train=p, dev=p, limit=10), False)
    assert len(s["train"]) == 10 and len(s["dev"]) == 10 and {e.label for e in s["train"]} == {"a", "b"}
    texts = [int(e.text[1:]) for e in s["train"]]
    assert texts == sorted(texts) and texts != list(range(10))  # file order, but not the first ten
    bigger = load_splits(DataConfig(train=p, dev=p, limit=30), False)
    assert {e.text for e in s["train"]} <= {e.text for e in bigger["train"]}
    assert seeded_subset(s["train"], 20, 0) is s["train"]
    # the dev split is carved from the full training file before the limit applies
    carved = load_splits(DataConfig(train=p, limit=5, dev_fraction=0.5), False)
    assert len(carved["train"]) == 5 and len(carved["dev"]) == 5
    assert not {e.text for e in carved["train"]} & {e.text for e in carved["dev"]}


def test_test_split_and_empty_or_tiny_files(tmp_path: Path) -> None:
    p = labelled(tmp_path, 10, lambda i: "ab"[i % 2])
    assert sorted(load_splits(DataConfig(train=p, test=p), False)) == ["dev", "test", "train"]
    empty = write(tmp_path, "e.jsonl", "\n\n")
    with raises(f"{empty}: no examples in this test file"):
        load_splits(DataConfig(train=p, test=empty), False)
    one = write(tmp_path, "one.jsonl", '{"text": "a", "label": "x"}\n')
    with raises(f"{one}: too few training examples to hold out a dev set; add data.dev"):
        load_splits(DataConfig(train=one), False)


# ---- corrupt data is refused, bad rows can be skipped (issues 16, 18) ---------------------------
def test_a_control_character_in_a_label_is_an_error_naming_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, "a.jsonl", '{"text": "ok", "label": "1"}\n{"text": "bad", "label": "1\\u0000"}\n')
    with raises(f"{p}:2: label '1\\x00' holds a control character (U+0000 at position 1); labels are plain text"):
        read_file(cfg(), p, False)
    p = write(tmp_path, "a.tsv", "label\ttext\npos\tfine\nneg\x07\tbell\n")
    with raises(f"{p}:3: label 'neg\\x07' holds a control character (U+0007 at position 3)"):
        read_file(cfg(), p, False)
    p = write(tmp_path, "a.txt", "1 fine\n0\x00 nul\n")
    with raises(f"{p}:2: label '0\\x00' holds a control character"):
        read_file(cfg(format="label_text"), p, False)
    p = write(tmp_path, "a.conll", "EU B-ORG\nrejects O\x00\n")
    with raises(f"{p}:2: tag 'O\\x00' holds a control character"):
        read_file(cfg(), p, True)


def test_conll_lines_with_another_column_count_are_bad_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = "EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn NNP I-PER\n\nGerman B-MISC\ncall O\n"
    p = write(tmp_path, "c.conll", text)
    with raises(f"{p}:5: 3 columns, but most lines of this file have 2 (the first such: line 1); an extra or "
                "missing column would shift the tag column"):
        read_file(cfg(), p, True)
    for mode in ("skip", "warn"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="polytask.data"):
            exs = read_file(cfg(on_bad_rows=mode), p, True)
        # the sentence holding the odd line is left out whole, the others are kept
        assert [e.text for e in exs] == [["EU", "rejects"], ["German", "call"]]
        summary = [r.getMessage() for r in caplog.records if ": skipped " in r.getMessage()]
        assert summary == [f"{p}: skipped 1 bad row(s) (data.on_bad_rows: {mode}) on line(s) 5; the first: "
                           f"{p}:5: 3 columns, but most lines of this file have 2 (the first such: line 1); an "
                           "extra or missing column would shift the tag column (fix the line, or set "
                           "data.on_bad_rows: skip to leave its sentence out)"]
        per_row = [r for r in caplog.records if "row skipped" in r.getMessage()]
        assert len(per_row) == (1 if mode == "warn" else 0)


def test_a_stray_bom_line_in_conll_is_a_sentence_break(tmp_path: Path) -> None:
    p = write(tmp_path, "c.conll", "\ufeffEU B-ORG\nrejects O\n\ufeff\nPeter B-PER\n \ufeff \nx O\n")
    exs = read_file(cfg(), p, True)
    assert [e.text for e in exs] == [["EU", "rejects"], ["Peter"], ["x"]]
    assert [e.where for e in exs] == [f"{p}:1", f"{p}:4", f"{p}:6"]


def test_label_only_lines_can_be_skipped_with_their_numbers_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = write(tmp_path, "reviews.txt", "1 great stuff\n0\n1 works well\n0 \n0 broke at once\n")
    with raises(f"{p}:2: expected 'label text', found only '0'"):
        read_file(cfg(format="label_text"), p, False)
    with caplog.at_level("WARNING", logger="polytask.data"):
        exs = read_file(cfg(format="label_text", on_bad_rows="skip"), p, False)
    assert rows(exs) == [("great stuff", None, "1"), ("works well", None, "1"), ("broke at once", None, "0")]
    assert any(r.getMessage().startswith(f"{p}: skipped 2 bad row(s) (data.on_bad_rows: skip) on line(s) 2, 4;")
               for r in caplog.records)
    # CSV and JSONL rows too; a file where every row is bad still fails with the first error
    p = write(tmp_path, "a.csv", "text,label\nfine,pos\nmissing,\nalso fine,neg\n")
    assert rows(read_file(cfg(on_bad_rows="warn"), p, False)) == [("fine", None, "pos"), ("also fine", None, "neg")]
    p = write(tmp_path, "a.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n{"text": "c", "label": "y"}\n')
    assert [e.text for e in read_file(cfg(on_bad_rows="skip"), p, False)] == ["a", "c"]
    p = write(tmp_path, "b.csv", "text,label\nx,\ny,\n")
    with raises(f"{p}:2: empty label in column 'label'"):
        read_file(cfg(on_bad_rows="skip"), p, False)
    with pytest.raises(ConfigError, match="on_bad_rows"):
        parse_config({"name": "x", "tasks": [{"name": "t", "type": "classification",
                                               "data": {"train": "a.csv", "on_bad_rows": "ignore"}}]})


def test_a_file_that_looks_like_another_format_gets_a_hint(tmp_path: Path) -> None:
    p = write(tmp_path, "ner.txt", "EU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\nBlackburn I-PER\n")
    with raises(f"{p}: format label_text holds one label per line, for sequence-level tasks, and this task "
                "tags tokens; this file looks like CoNLL (a token and its tag per line, a blank line between "
                "sentences): set data.format: conll"):
        read_file(cfg(format="label_text"), p, True)
    p = write(tmp_path, "ner2.txt", "EU B-ORG\nrejects O\n\nPeter\nBlackburn I-PER\n")
    with raises(f"{p}:4: expected 'label text', found only 'Peter' (format label_text: the label, a space or "
                "tab, then the text); this file looks like CoNLL"):
        read_file(cfg(format="label_text"), p, False)
    p = write(tmp_path, "data.jsonl", "text,label\nhello,pos\nbye,neg\n")
    with raises(f"{p}:1: not valid JSON (Expecting value at column 1); this file looks like comma-separated "
                "columns: set data.format: csv"):
        read_file(cfg(), p, False)
