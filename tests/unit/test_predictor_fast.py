"""The fast Predictor: length-sorted batches in input order, one encoder pass per batch for every
sequence task, batched tokenisation identical to each task's encode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import polytask
from polytask.config import parse_config
from polytask.data.example import Example
from polytask.errors import ConfigError
from polytask.serving.predictor import Predictor, load_predictor
from polytask.training.loop import train
from tests.unit.toy import toy_config, write_toy_jsonl, write_toy_ner

TEXTS = [
    "great",
    "the movie was a boring and dull plot with awful story and a bad film",
    "lovely fun",
    "sad story",
    "the plot was superb and the film was happy and nice and brilliant all the way",
    "ugly",
    "a film",
    "poor plot and terrible movie",
    "nice story Alice",
]


@pytest.fixture(scope="module")
def three_task_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    """Two sequence tasks and one token task sharing the tiny encoder, trained one epoch."""
    tmp = tmp_path_factory.mktemp("fast_predictor")
    sent = write_toy_jsonl(tmp / "sent")
    ner = write_toy_ner(tmp / "ner")
    raw = toy_config(tiny_encoder_dir, sent, tmp / "run", epochs=1, max_steps=4)
    raw["tasks"].append({"name": "sent2", "type": "classification", "data": {"train": sent["train"], "dev": sent["dev"]}})
    raw["tasks"].append({"name": "ner", "type": "token_classification", "data": {"train": ner["train"], "dev": ner["dev"]}})
    train(parse_config(raw))
    return tmp / "run"


@pytest.fixture()
def predictor(three_task_run: Path) -> Predictor:
    return polytask.load(str(three_task_run), device="cpu")


def _close(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert set(x) == set(y)
        for task in x:
            if "tags" in x[task]:
                assert x[task]["tags"] == y[task]["tags"]
                continue
            assert x[task]["label"] == y[task]["label"]
            for lab, p in x[task]["probs"].items():
                assert p == pytest.approx(y[task]["probs"][lab], abs=1e-5)


def test_sorted_batches_come_back_in_input_order_equal_to_batch_size_one(predictor: Predictor) -> None:
    predictor.batch_size = 4  # several batches, each holding inputs of different positions
    batched = predictor.predict(TEXTS)
    predictor.batch_size = 1
    alone = [predictor.predict([t])[0] for t in TEXTS]
    _close(batched, alone)
    # The order really is the input order: the token task's tag count follows each text.
    assert [len(r["ner"]["tags"]) for r in batched] == [len(t.split()) for t in TEXTS]
    # and the classification outputs are not all the same (a shuffled order would go unseen)
    assert len({round(r["sent"]["probs"]["pos"], 6) for r in batched}) > 3


def test_one_multitask_call_equals_one_call_per_task(predictor: Predictor) -> None:
    predictor.batch_size = 3
    together = predictor.predict(TEXTS)
    for name in ("sent", "sent2", "ner"):
        alone = predictor.predict(TEXTS, task=name)
        _close([{name: r[name]} for r in together], [{name: r} for r in alone])


def test_sequence_tasks_share_one_encoder_pass_per_batch(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    encoder = predictor.model.encoder
    original = encoder.forward

    def counting(input_ids, attention_mask, token_type_ids=None):  # noqa: ANN001, ANN202
        calls.append(tuple(input_ids.shape))
        return original(input_ids, attention_mask, token_type_ids)

    monkeypatch.setattr(encoder, "forward", counting)
    predictor.batch_size = 4
    predictor.predict(TEXTS)  # 9 texts: 3 batches for sent+sent2 together, 3 for ner
    assert len(calls) == 6
    calls.clear()
    predictor.predict(TEXTS, task=["sent", "sent2"])
    assert len(calls) == 3
    # longest first, and each batch padded only to its own longest input
    widths = [t for _, t in calls]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]


def test_batched_tokenisation_equals_each_tasks_encode(predictor: Predictor) -> None:
    tok = predictor.tokenizer
    for name, examples in (
        ("sent", [Example(text=t) for t in TEXTS]),
        ("sent", [Example(text=t, text_pair="a second text") for t in TEXTS]),
        ("ner", [Example(text=t.split()) for t in TEXTS]),
    ):
        task = predictor.tasks[name]
        assert predictor._features(task, examples) == [task.encode(e, tok) for e in examples]
    # some inputs with a pair and some without: per-example encoding, still identical
    mixed = [Example(text="fun film", text_pair="a plot"), Example(text="dull film")]
    task = predictor.tasks["sent"]
    assert predictor._features(task, mixed) == [task.encode(e, tok) for e in mixed]


def test_pairs_and_word_lists_predict_like_single_calls(predictor: Predictor) -> None:
    pairs = [("great film", "a plot"), ("awful", "the story was dull and bad and poor")]
    predictor.batch_size = 8
    _close([{"s": r} for r in predictor.predict(pairs, task="sent")],
           [{"s": predictor.predict([p], task="sent")[0]} for p in pairs])
    words = [["Alice", "was", "happy"], ["the", "film"]]
    assert [len(r["tags"]) for r in predictor.predict(words, task="ner")] == [3, 2]


def test_empty_input_list_and_thread_setting(three_task_run: Path) -> None:
    before = torch.get_num_threads()
    try:
        p = load_predictor(three_task_run, backend="torch", num_threads=1, batch_size=5)
        assert torch.get_num_threads() == 1 and p.batch_size == 5
        assert p.predict([]) == []
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="num_threads must be 1 or more, got 0"):
        load_predictor(three_task_run, backend="torch", num_threads=0)
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'; choose one of: auto, torch, onnx"):
        load_predictor(three_task_run, backend="tensorrt")
