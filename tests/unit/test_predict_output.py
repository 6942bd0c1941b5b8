"""``polytask predict`` output: input records kept as given, predictions under one key for one task
or many, token inputs as given, NER entity spans; tasks tokenise batches themselves."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import polytask
from polytask.cli import app
from polytask.data.example import Example
from polytask.serving import predictor as predictor_module
from polytask.tasks.token_classification import entity_spans
from tests.unit.export_runs import train_run, write_all_task_data

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("predict_out")
    data = write_all_task_data(tmp / "data")
    return {
        "single": train_run(tiny_encoder_dir, data, tmp / "single", ["sent"]),
        "multi": train_run(tiny_encoder_dir, data, tmp / "multi", ["sent", "ner"]),
        "tmp": tmp,
    }


def _predict(run: Path, tmp: Path, lines: list[dict], *extra: str) -> tuple[int, str, list[dict]]:
    src, out = tmp / "in.jsonl", tmp / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in lines))
    if out.exists():
        out.unlink()
    res = runner.invoke(app, ["predict", str(run), "-i", str(src), "-o", str(out), *extra])
    rows = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return res.exit_code, res.output, rows


def test_input_fields_are_never_changed(runs: dict[str, Path], tmp_path: Path) -> None:
    given = [{"id": 1, "label": "GOLD", "text": "great fun movie", "extra": {"a": [1, 2]}},
             {"text": "awful boring film", "label": "neg", "id": 2}]
    code, output, rows = _predict(runs["single"], tmp_path, given)
    assert code == 0, output
    for rec, row in zip(given, rows, strict=True):
        assert {k: row[k] for k in rec} == rec  # every field, as given (the gold label stays)
        assert list(row) == [*rec, "prediction"]
        assert set(row["prediction"]) == {"sent"} and row["prediction"]["sent"]["label"] in ("pos", "neg")


def test_key_option_and_a_clash_with_an_input_field(runs: dict[str, Path], tmp_path: Path) -> None:
    code, output, rows = _predict(runs["single"], tmp_path, [{"text": "fun", "prediction": "mine"}])
    assert code == 2
    assert ("input record 1 already has a field 'prediction'; predictions never overwrite input fields: "
            "choose another with --key (e.g. --key prediction_polytask)") in output
    code, output, rows = _predict(runs["single"], tmp_path, [{"text": "fun", "prediction": "mine"}], "--key", "polytask")
    assert code == 0 and rows[0]["prediction"] == "mine" and "sent" in rows[0]["polytask"]


def test_one_task_or_many_share_one_shape_and_token_inputs_come_back_as_given(runs: dict[str, Path], tmp_path: Path) -> None:
    given = [{"tokens": ["Alice", "liked", "the", "movie"], "id": "a"}, {"text": "Bob  saw a film", "id": "b"}]
    code, output, rows = _predict(runs["multi"], tmp_path, given)
    assert code == 0, output
    assert rows[0]["tokens"] == ["Alice", "liked", "the", "movie"] and "text" not in rows[0]
    assert rows[1]["text"] == "Bob  saw a film"
    assert all(set(r["prediction"]) == {"sent", "ner"} for r in rows)
    assert len(rows[0]["prediction"]["ner"]["tags"]) == 4
    code, output, one = _predict(runs["multi"], tmp_path, given, "--task", "ner")
    assert code == 0 and all(set(r["prediction"]) == {"ner"} for r in one)
    assert one[0]["prediction"]["ner"] == rows[0]["prediction"]["ner"]


def test_ner_spans_follow_the_tags(runs: dict[str, Path]) -> None:
    predictor = polytask.load(str(runs["multi"]), device="cpu")
    texts = ["Alice met  Bob and Carol", "the movie was Dave good", "Alice Bob"]
    for text, pred in zip(texts, predictor.predict(texts, task="ner"), strict=True):
        tags = pred["tags"]
        spans = pred["entities"]
        words = text.split()
        # each span is the text of a run of words starting at a B- tag (or an I- after another type)
        starts = [i for i, t in enumerate(tags) if t.startswith("B-") or (t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:]))]
        assert len(spans) == len(starts)
        for span, first in zip(spans, starts, strict=True):
            assert span["entity"] == tags[first][2:]
            assert text[span["start"]:span["end"]] == span["text"] and span["text"].startswith(words[first])
            assert 0 < span["score"] <= 1


def test_entity_spans_group_like_the_transformers_pipeline() -> None:
    text = "Ann  Lee met Bo in New York"
    tags = ["B-PER", "I-PER", "O", "B-PER", "O", "B-LOC", "I-LOC"]
    scores = [0.9, 0.7, 1.0, 0.6, 1.0, 0.8, 0.4]
    assert entity_spans(text, tags, scores) == [
        {"entity": "PER", "start": 0, "end": 8, "text": "Ann  Lee", "score": pytest.approx(0.8)},
        {"entity": "PER", "start": 13, "end": 15, "text": "Bo", "score": 0.6},
        {"entity": "LOC", "start": 19, "end": 27, "text": "New York", "score": pytest.approx(0.6)},
    ]
    # an I- tag after O, or after another type, starts an entity; B- after I- starts a new one
    got = entity_spans(["a", "b", "c", "d"], ["I-X", "I-Y", "B-Y", "I-Y"], [1.0] * 4)
    assert [(s["entity"], s["text"]) for s in got] == [("X", "a"), ("Y", "b"), ("Y", "c d")]


def test_tasks_batch_encode_like_one_by_one(runs: dict[str, Path]) -> None:
    run = polytask.load(str(runs["multi"]), device="cpu")
    tok = run.tokenizer
    texts = [Example(text="great fun movie", label="pos"), Example(text="a dull and boring plot", label="neg")]
    words = [Example(text=["Alice", "liked", "it"], label=["B-PER", "O", "O"]), Example(text=["Bob"], label=["B-PER"])]
    for task, exs in ((run.tasks["sent"], texts), (run.tasks["ner"], words)):
        assert task.encode_batch(exs, tok) == [task.encode(e, tok) for e in exs]
    pairs = [Example(text="a", text_pair="b"), Example(text="c")]  # mixed pairs: one by one
    assert run.tasks["sent"].encode_batch(pairs, tok) == [run.tasks["sent"].encode(e, tok) for e in pairs]


def test_predictor_names_no_concrete_task_class() -> None:
    source = inspect.getsource(predictor_module)
    for name in ("ClassificationTask", "MultilabelTask", "RegressionTask", "TokenClassificationTask", "PLAIN_"):
        assert name not in source


def test_a_subclass_that_changes_encode_is_honoured(runs: dict[str, Path]) -> None:
    from polytask.tasks import ClassificationTask

    class Upper(ClassificationTask):
        def encode(self, example, tokenizer):  # noqa: ANN001, ANN201
            feats = super().encode(example, tokenizer)
            feats["marker"] = 1
            return feats

    run = polytask.load(str(runs["single"]), device="cpu")
    task = Upper(run.tasks["sent"].config)
    task.load_state(run.tasks["sent"].state())
    assert [f["marker"] for f in task.encode_batch([Example(text="x"), Example(text="y")], run.tokenizer)] == [1, 1]
