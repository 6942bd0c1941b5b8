"""Knowledge distillation: a smaller student trained on a finished run's outputs.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015
(https://arxiv.org/abs/1503.02531): the student matches the teacher's class distribution softened
by a temperature T,

    L_kd = T^2 * mean_i KL( softmax(t_i / T) || softmax(s_i / T) )

(the T^2 keeps the gradient's scale independent of T), per token for tagging tasks (at the
first subword of each word, where the tags are read), sigmoid targets for multi-label tasks,
and MSE on the scores for regression (Tang et al. 2019, "Distilling Task-Specific Knowledge from
BERT into Simple Neural Networks", https://arxiv.org/abs/1903.12136, distil into BiLSTMs with a
logit MSE). ``hidden`` adds TinyBERT's hidden-state matching (Jiao et al., Findings of EMNLP
2020, https://arxiv.org/abs/1909.10351) on the encoder's final token states, for students that
share the teacher's tokenizer and width; ``hard`` is the task's own loss on the labels. The
weighted sum of the chosen terms is each batch's loss.

The teacher's outputs on the transfer set (every task's labelled training split) are computed
once and stored as safetensors in ``cache_dir`` (default ``<run>/teacher_outputs``), keyed by the
teacher checkpoint and the texts, so later epochs and later runs read them back. The student is
an ordinary experiment config (a transformer with fewer layers, e.g. ``transfer.strategy:
drop_layers``, any HF encoder, or ``bilstm`` / ``cnn`` over GloVe) and trains through the usual
``build_run`` and loop, with the distillation loss as ``run.objective``; the result is an
ordinary run folder (plus ``distill.json``), so predict, evaluate, serve, export and compare
treat it like any other.

Not built here: attention matching (MiniLM), augmented copies and ``unlabeled`` text in the
transfer set, and teachers that are transformers folders rather than polytask runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationError

from polytask.config.loader import (
    apply_overrides,
    format_validation_error,
    parse_config,
    read_yaml_mapping,
)
from polytask.config.schema import ExperimentConfig, Strict
from polytask.errors import CheckpointError, ConfigError

DISTILL_FILE = "distill.json"
CACHE_DIR = "teacher_outputs"


class DistillLosses(Strict):
    """Weights of the loss terms (0 leaves a term out).

    Args:
        kd: soft targets with temperature (classification, multi-label, token classification).
        mse: squared error to the teacher's score (regression).
        hidden: squared error to the teacher's final token states (same tokenizer and width).
        hard: the task's own loss on the gold labels.
    """

    kd: float = Field(1.0, ge=0)
    mse: float = Field(1.0, ge=0)
    hidden: float = Field(0.0, ge=0)
    hard: float = Field(0.0, ge=0)


class DistillConfig(Strict):
    """``polytask distill distill.yaml``.

    Args:
        teacher: a finished polytask run folder (relative to the distill file).
        student: the student's experiment file (relative to the distill file) or the experiment
            itself as a mapping; it must declare every task of the teacher, with the same types.
        checkpoint: which of the teacher's checkpoints: ``best`` or ``last``.
        losses: the weights of ``kd``, ``mse``, ``hidden`` and ``hard``.
        temperature: T of the soft targets.
        output_dir: the student run folder (default: the student config's ``output_dir``).
        cache_dir: where the teacher's outputs are stored (default ``<output_dir>/teacher_outputs``).
    """

    teacher: str
    student: str | dict[str, Any]
    checkpoint: Literal["best", "last"] = "best"
    losses: DistillLosses = Field(default_factory=DistillLosses)
    temperature: float = Field(2.0, gt=0)
    output_dir: str | None = None
    cache_dir: str | None = None


def load_distill_config(path: str | os.PathLike, overrides: list[str] | None = None) -> tuple[DistillConfig,
                                                                                            ExperimentConfig]:
    """Read a distill file (``key=value`` overrides apply to it: ``temperature=4``, ``student.train.lr=...``
    for an inline student) and its student experiment; relative paths resolve against its folder."""
    path = Path(path)
    raw = apply_overrides(read_yaml_mapping(path, "distill config file"), overrides or [])
    return parse_distill_config(raw, source=str(path), base_dir=path.parent)


def parse_distill_config(raw: dict[str, Any], source: str | None = None,
                         base_dir: str | os.PathLike | None = None) -> tuple[DistillConfig, ExperimentConfig]:
    """The validated distill config and student experiment from a mapping."""
    from polytask.config.loader import load_config

    try:
        dcfg = DistillConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc).replace("experiment config", "distill config"),
                          source=source) from None
    base = Path(base_dir) if base_dir is not None else Path()
    if not Path(dcfg.teacher).is_absolute():
        dcfg.teacher = str(base / dcfg.teacher)
    if isinstance(dcfg.student, str):
        student_path = Path(dcfg.student) if Path(dcfg.student).is_absolute() else base / dcfg.student
        if not student_path.is_file():
            raise ConfigError(f"student experiment file not found: {student_path}", field="student", source=source)
        student = load_config(student_path)
    else:
        student = parse_config(dcfg.student, source=source, base_dir=base)
    if dcfg.output_dir is not None:
        student = student.model_copy(update={"output_dir": dcfg.output_dir})
    return dcfg, student


# ---- the losses ---------------------------------------------------------------------------------
def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft-target loss: T^2 * mean over rows of KL(softmax(t/T) || softmax(s/T)).

    Args:
        student: (N, C) student logits.
        teacher: (N, C) teacher logits (no gradient flows into them).
        temperature: T.
    Returns:
        () the loss; 0 when the two agree (up to a constant per row).
    """
    if student.shape[0] == 0:
        return student.sum() * 0.0
    t = F.log_softmax(teacher.detach().float() / temperature, dim=-1)  # (N, C)
    s = F.log_softmax(student.float() / temperature, dim=-1)  # (N, C)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2


def soft_bce_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-label soft targets: BCE against sigmoid(t/T) minus its minimum (the target's entropy),
    so it is 0 when the logits agree. (N, C), (N, C) -> ()."""
    target = torch.sigmoid(teacher.detach().float() / temperature)
    s = student.float() / temperature
    bce = F.binary_cross_entropy_with_logits(s, target, reduction="none")
    floor = F.binary_cross_entropy_with_logits(teacher.detach().float() / temperature, target, reduction="none")
    return (bce - floor).sum(-1).mean() * temperature**2


def hidden_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between token states over the real tokens. (B, T, H), (B, T, H), (B, T) -> ()."""
    m = mask.unsqueeze(-1).float()  # (B, T, 1)
    diff = (student.float() - teacher.float()) ** 2 * m
    return diff.sum() / (m.sum() * student.shape[-1]).clamp_min(1.0)


# ---- the teacher ---------------------------------------------------------------------------------
def load_teacher(path: str | Path, checkpoint: str = "best") -> Any:
    """The teacher run (``runs.load_run``); it must have finished training."""
    from polytask import runs

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"teacher {path}: no such run folder (distill.yaml's 'teacher' must name a finished "
                              "polytask run)")
    run_dir = path
    if not (path / runs.RESULTS_FILE).is_file() and (path.parent.parent / runs.RESULTS_FILE).is_file():
        run_dir = path.parent.parent  # a checkpoint folder inside a run
    results = run_dir / runs.RESULTS_FILE
    if not results.is_file():
        raise CheckpointError(
            f"teacher {path}: the run has not finished (no {runs.RESULTS_FILE}); finish it first "
            f"(polytask train <config> --resume --set output_dir={run_dir}) or name a finished run")
    if json.loads(results.read_text(encoding="utf-8")).get("interrupted"):
        raise CheckpointError(f"teacher {path}: the run was interrupted before it finished; resume it with "
                              "polytask train --resume, then distill")
    return runs.load_run(path, checkpoint=checkpoint)


@dataclass
class TeacherOutputs:
    """The teacher's outputs on one task's transfer set, one row range per example.

    ``logits[offsets[i]:offsets[i+1]]`` are example i's rows (one for a sentence task, one per
    word for a tagging task), columns in the student's label order; ``hidden`` likewise per token.
    """

    logits: torch.Tensor  # (rows, C)
    offsets: torch.Tensor  # (N + 1,)
    hidden: torch.Tensor | None = None  # (tokens, H) float16
    hidden_offsets: torch.Tensor | None = None  # (N + 1,)

    def rows(self, i: int) -> torch.Tensor:
        return self.logits[self.offsets[i]:self.offsets[i + 1]]

    def states(self, i: int) -> torch.Tensor:
        assert self.hidden is not None and self.hidden_offsets is not None
        return self.hidden[self.hidden_offsets[i]:self.hidden_offsets[i + 1]]


def _forward_teacher(model: Any, task: str, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """One teacher batch: (logits, final token states)."""
    enc = model.encode(batch)
    return model.head_forward(task, enc), enc.token_states


def _cache_key(teacher: Any, task: str, examples: list, hidden: bool) -> str:
    from polytask.training import checkpoint as ckpt

    h = hashlib.sha256()
    weights = Path(teacher.checkpoint_dir) / ckpt.MODEL_FILE
    stat = weights.stat()
    h.update(json.dumps([str(weights.resolve()), stat.st_size, stat.st_mtime_ns, task, hidden,
                         teacher.tasks[task].labels, teacher.config.train.max_length]).encode())
    for ex in examples:
        h.update(json.dumps([ex.text, ex.text_pair]).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def teacher_outputs(teacher: Any, task: str, examples: list, cache_dir: Path, device: torch.device,
                    batch_size: int = 64, hidden: bool = False) -> TeacherOutputs:
    """The teacher's outputs on ``examples`` (teacher label order), read from ``cache_dir`` when a
    previous call stored them, else computed once in no-grad eval mode and stored there."""
    from safetensors.torch import load_file, save_file

    from polytask.evaluation.evaluate import move
    from polytask.io import write_with

    path = cache_dir / f"{task}-{_cache_key(teacher, task, examples, hidden)}.safetensors"
    if path.is_file():
        saved = load_file(str(path))
        return TeacherOutputs(saved["logits"], saved["offsets"], saved.get("hidden"), saved.get("hidden_offsets"))
    ttask, model = teacher.tasks[task], teacher.model
    tok = model.encoder.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    feats = ttask.encode_batch(examples, tok)
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))  # little padding
    rows: list[torch.Tensor | None] = [None] * len(feats)
    states: list[torch.Tensor | None] = [None] * len(feats)
    model.to(device).eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = move(ttask.collate([feats[i] for i in idx], pad_id), device)
            logits, token_states = _forward_teacher(model, task, batch)
            for b, i in enumerate(idx):
                if ttask.token_level:  # the rows where tags are read (labels != -100)
                    rows[i] = logits[b][batch["labels"][b] != -100].float().cpu()
                else:
                    rows[i] = logits[b].float().reshape(1, -1).cpu()
                if hidden:
                    states[i] = token_states[b][batch["attention_mask"][b].bool()].half().cpu()
    model.cpu()
    counts = torch.tensor([0] + [r.shape[0] for r in rows])
    out = TeacherOutputs(torch.cat(rows), counts.cumsum(0))
    tensors = {"logits": out.logits.contiguous(), "offsets": out.offsets}
    if hidden:
        out.hidden = torch.cat(states).contiguous()
        out.hidden_offsets = torch.tensor([0] + [s.shape[0] for s in states]).cumsum(0)
        tensors.update(hidden=out.hidden, hidden_offsets=out.hidden_offsets)
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda tmp: save_file(tensors, str(tmp)))
    return out


# ---- the objective ---------------------------------------------------------------------------------
class DistillObjective:
    """One task's distillation loss, called by the loop in place of the task's own loss.

    Args:
        task: the student's task.
        targets: the teacher's outputs, columns already in the student's label order.
        losses: the weights of the terms.
        temperature: T.
        states: for ``hidden``: a callable returning the student's latest final token states.
    """

    def __init__(self, task: Any, targets: TeacherOutputs, losses: DistillLosses, temperature: float,
                 states: Any = None):
        self.task, self.targets, self.losses, self.temperature, self.states = task, targets, losses, temperature, states

    def __call__(self, logits: torch.Tensor, batch: dict[str, Any], idx: list[int]) -> torch.Tensor:
        w, task = self.losses, self.task
        total = logits.sum() * 0.0
        if w.hard:
            total = total + w.hard * task.loss(logits, batch)
        if task.registry_name == "regression":
            if w.mse:
                teacher = torch.cat([self.targets.rows(i) for i in idx]).to(logits.device).squeeze(-1)  # (B,)
                total = total + w.mse * F.mse_loss(logits.float().squeeze(-1), teacher)
        elif w.kd:
            student, teacher = self._pairs(logits, batch, idx)
            fn = soft_bce_loss if task.registry_name == "multilabel" else kd_loss
            total = total + w.kd * fn(student, teacher.to(logits.device), self.temperature)
        if w.hidden:
            total = total + w.hidden * self._hidden(batch, idx)
        return total

    def _pairs(self, logits: torch.Tensor, batch: dict[str, Any], idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.task.token_level:
            return logits, torch.cat([self.targets.rows(i) for i in idx])  # (B, C) each
        students, teachers = [], []
        for b, i in enumerate(idx):  # the first word rows both have (truncation may differ)
            s = logits[b][batch["labels"][b] != -100]  # (words, C)
            t = self.targets.rows(i)
            n = min(s.shape[0], t.shape[0])
            students.append(s[:n])
            teachers.append(t[:n])
        return torch.cat(students), torch.cat(teachers)

    def _hidden(self, batch: dict[str, Any], idx: list[int]) -> torch.Tensor:
        states = self.states()  # (B, T, H)
        mask = batch["attention_mask"]
        teacher = torch.zeros_like(states)
        keep = torch.zeros_like(mask)
        for b, i in enumerate(idx):
            t = self.targets.states(i).to(states.device, states.dtype)  # (L_i, H)
            n = min(t.shape[0], int(mask[b].sum()))
            teacher[b, :n] = t[:n]
            keep[b, :n] = 1
        return hidden_loss(states, teacher, keep * mask)


# ---- the checks ---------------------------------------------------------------------------------
def check_pairing(teacher: Any, student: ExperimentConfig) -> None:
    """Refuse a student that cannot learn from this teacher, before the student's model loads."""
    tasks = {t.name: t for t in student.tasks}
    missing = [name for name in teacher.tasks if name not in tasks]
    if missing:
        raise ConfigError(
            f"the teacher has task {missing[0]!r}, which the student config does not declare; a multi-task teacher "
            f"distils into a student with every one of its tasks ({', '.join(teacher.tasks)})", field="student.tasks")
    extra = [name for name in tasks if name not in teacher.tasks]
    if extra:
        raise ConfigError(f"the student's task {extra[0]!r} is not one of the teacher's ({', '.join(teacher.tasks)})",
                          field="student.tasks")
    for name, tcfg in tasks.items():
        if tcfg.type != teacher.config.tasks[[t.name for t in teacher.config.tasks].index(name)].type:
            raise ConfigError(f"task {name!r} is {tcfg.type!r} in the student but "
                              f"{teacher.tasks[name].registry_name!r} in the teacher", field=f"student.tasks.{name}.type")
        if getattr(tcfg, "augment", None) is not None or tcfg.unlabeled is not None:
            raise ConfigError(f"task {name!r}: augment and unlabeled are not used as distillation transfer sets yet; "
                              f"remove them from the student config", field=f"student.tasks.{name}")


def check_hidden(teacher: Any, student_encoder: Any) -> None:
    """``hidden`` compares token states: the student needs the teacher's tokenizer and width."""
    t_enc = teacher.model.encoder
    why = None
    if student_encoder.hidden_size != t_enc.hidden_size:
        why = f"the student's width is {student_encoder.hidden_size}, the teacher's {t_enc.hidden_size}"
    elif type(student_encoder.tokenizer) is not type(t_enc.tokenizer) or \
            student_encoder.tokenizer.get_vocab() != t_enc.tokenizer.get_vocab():
        why = "the student's tokenizer differs from the teacher's"
    if why:
        raise ConfigError(
            f"losses.hidden matches token states, which needs the teacher's tokenizer and hidden width: {why}. "
            "Set losses.hidden: 0 (kd, mse and hard work with any student), or use a student built from the "
            "teacher (e.g. transfer.init_from the teacher with drop_layers)", field="losses.hidden")


def _label_columns(teacher_task: Any, student_task: Any) -> list[int] | None:
    tl, sl = teacher_task.labels, student_task.labels
    if tl is None or sl is None:
        return None
    if set(tl) != set(sl):
        raise ConfigError(
            f"task {student_task.name!r}: the student's labels ({', '.join(sorted(sl)[:8])}) are not the teacher's "
            f"({', '.join(sorted(tl)[:8])}); soft targets need the same label set", field=f"student.tasks.{student_task.name}")
    return [tl.index(label) for label in sl]


# ---- the procedure ---------------------------------------------------------------------------------
def distill(config: DistillConfig, student: ExperimentConfig, resume: bool = False, overwrite: bool = False,
            callbacks: list[Any] | None = None) -> Any:
    """Train ``student`` on the teacher's outputs; returns the run's ``TrainResult``.

    Args:
        config: the distill config (teacher, losses, temperature, cache).
        student: the student's experiment.
        resume: continue the student run where it stopped (the cached teacher outputs are reused).
        overwrite: replace an existing student run in the output folder.
        callbacks: as for ``polytask.train``.
    """
    from polytask.io import write_json
    from polytask.training.loop import train_run
    from polytask.training.run import build_run

    teacher = load_teacher(config.teacher, config.checkpoint)
    check_pairing(teacher, student)
    run = build_run(student, resume=resume, overwrite=overwrite, callbacks=callbacks)
    try:
        states = None
        if config.losses.hidden:
            check_hidden(teacher, run.unwrapped.encoder)
            if run.strategies.fixed_encoder:
                raise ConfigError("losses.hidden trains the student's encoder toward the teacher's states, but the "
                                  "student's transfer strategy freezes it; set losses.hidden: 0 or unfreeze",
                                  field="losses.hidden")
            captured: dict[str, torch.Tensor] = {}

            def keep_states(_module: Any, _inputs: Any, output: Any) -> None:
                captured["states"] = output.token_states

            run.unwrapped.encoder.register_forward_hook(keep_states)
            states = lambda: captured["states"]  # noqa: E731
        cache_dir = Path(config.cache_dir) if config.cache_dir else run.run_dir / CACHE_DIR
        for name, td in run.data.items():
            out = teacher_outputs(teacher, name, td.splits["train"], cache_dir, run.accelerator.device,
                                  student.train.eval_batch_size, hidden=bool(config.losses.hidden))
            cols = _label_columns(teacher.tasks[name], td.task)
            if cols is not None:
                out.logits = out.logits[:, cols]
            run.objective[name] = DistillObjective(td.task, out, config.losses, config.temperature, states)
        if run.main:
            write_json(run.run_dir / DISTILL_FILE, {
                "teacher": str(Path(config.teacher).resolve()), "teacher_checkpoint": str(teacher.checkpoint_dir),
                "losses": config.losses.model_dump(), "temperature": config.temperature, "cache_dir": str(cache_dir)})
    except BaseException:
        if run.lock is not None:
            run.lock.release()
        raise
    return train_run(run, resume)
