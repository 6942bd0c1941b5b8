"""Export a run as Hugging Face folders that ``transformers.pipeline`` and sentence-transformers load.

Per task, a transformers model with its head:

- ``token_classification``: a standard ``AutoModelForTokenClassification`` (dropout + linear over
  token states is exactly polytask's head), with ``id2label``/``label2id``;
- ``extractive_qa``: a standard ``AutoModelForQuestionAnswering`` (its ``qa_outputs`` linear
  layer over token states is polytask's start/end head);
- ``classification`` / ``multilabel`` / ``regression``: ``AutoModelForSequenceClassification``
  with ``problem_type`` ``single_label_classification`` / ``multi_label_classification`` /
  ``regression``. Polytask pools by mean (or first token), which no standard transformers
  sequence-classification class does (BERT pools ``tanh(dense([CLS]))``), so the folder carries a
  small model file (``modeling_polytask.py``, see ``polytask.export.hf_modeling``) and loads with
  ``trust_remote_code=True``. Its weights keep the encoder family's names, so ``AutoModel`` and
  ``SentenceTransformer`` load the encoder from the same folder without it.

Each folder is checked against polytask's own logits on sample inputs before the export returns
(as the ONNX export is). A single-task run is written to ``out_dir`` itself; a multi-task run
writes ``out_dir/encoder`` (the shared encoder, sentence-transformers files) and ``out_dir/<task>``
per task. Every folder gets a model card (``README.md``, see ``polytask.export.model_card``).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polytask.errors import CheckpointError
from polytask.export import hf_modeling
from polytask.runs import LoadedRun, load_run

PROBLEM_TYPES = {
    "classification": "single_label_classification",
    "multilabel": "multi_label_classification",
    "regression": "regression",
}
"""transformers ``problem_type`` of each sequence-level task type (token tasks have none)."""

SPAN_TYPES = ("extractive_qa",)
"""Task types exported as ``AutoModelForQuestionAnswering`` (a start/end linear head on tokens)."""

SEQ2SEQ = "seq2seq"  # exported as an EncoderDecoderModel (encoder + the task's decoder)
MANIFEST = "polytask_export.json"
PARITY_TOLERANCE = 1e-4  # largest |exported - polytask| logit accepted by the export's own check
SAMPLE_TEXTS = ["a short text", "a somewhat longer sentence, to check padding and pooling against"]


@dataclass
class HfExport:
    """What ``export_hf_folders`` wrote.

    Attributes:
        directory: the export's root folder.
        encoder_dir: the folder ``AutoModel`` / ``SentenceTransformer`` load the encoder from.
        tasks: each task's folder (what ``pipeline(model=...)`` takes).
        remote_code: tasks whose folder needs ``trust_remote_code=True``.
        max_abs_diff: per task, the largest logit difference found by the parity check.
    """

    directory: Path
    encoder_dir: Path
    tasks: dict[str, Path] = field(default_factory=dict)
    remote_code: list[str] = field(default_factory=list)
    max_abs_diff: dict[str, float] = field(default_factory=dict)


def export_hf(
    run_dir: str | Path, out_dir: str | Path, checkpoint: str = "best", base_encoder: str | None = None
) -> Path:
    """Write the run as transformers folders (see the module docstring); returns ``out_dir``.

    ``AutoModel.from_pretrained(out_dir)`` loads the fine-tuned encoder for a single-task run, as
    it did before task heads were exported (a multi-task run: ``out_dir/encoder``).

    Args:
        run_dir: the run directory (or a checkpoint folder).
        out_dir: the folder to write.
        checkpoint: ``best`` or ``last``.
        base_encoder: for a lora run whose base model moved, where it is now (see ``load_run``).
    """
    return export_hf_folders(run_dir, out_dir, checkpoint, base_encoder).directory


def export_hf_folders(
    run_dir: str | Path, out_dir: str | Path, checkpoint: str = "best", base_encoder: str | None = None
) -> HfExport:
    """``export_hf`` with the details: folders per task, which need remote code, parity found."""
    run = load_run(run_dir, checkpoint, merge=True, base_encoder=base_encoder)
    hf_model = getattr(run.model.encoder, "model", None)
    if hf_model is None or not hasattr(hf_model, "save_pretrained"):
        raise CheckpointError(
            f"{run_dir}: only transformer runs export to transformers; this run's encoder is "
            f"{run.config.encoder.type!r} (a polytask word encoder with no transformers "
            "architecture). Serve it with polytask.load(...) or `polytask export onnx`"
        )
    leftover = [n for n, _ in hf_model.named_parameters() if ".lora_" in n]
    if leftover:  # merge_adapters replaces every adapted layer; this would be a polytask bug
        raise CheckpointError(f"{run_dir}: adapters left after merging ({leftover[:3]}); please report this")
    for name, task in run.tasks.items():
        if name in run.model.towers:
            raise CheckpointError(
                f"{run_dir}: task {name!r} has task_layers (private layers between the encoder and "
                "its head), which no transformers architecture holds; export a run without them"
            )
        if not task.token_level and task.registry_name not in (*PROBLEM_TYPES, *SPAN_TYPES, SEQ2SEQ):
            raise CheckpointError(
                f"{run_dir}: task {name!r} of type {task.registry_name!r} has no transformers head; "
                f"exportable types: {', '.join([*PROBLEM_TYPES, 'token_classification', *SPAN_TYPES, SEQ2SEQ])}"
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    single = len(run.tasks) == 1
    result = HfExport(directory=out, encoder_dir=out if single else out / "encoder")
    if not single:
        _save_encoder(run, result.encoder_dir)
    for name, task in run.tasks.items():
        folder = out if single else out / name
        folder.mkdir(parents=True, exist_ok=True)
        if task.registry_name == SEQ2SEQ:
            _save_seq2seq_model(run, name, folder)
            _save_tokenizer(run, name, folder)
            result.tasks[name] = folder
            result.max_abs_diff[name] = _check_generation(run, name, folder)
            continue
        if task.token_level:
            _save_token_model(run, name, folder)
        elif task.registry_name in SPAN_TYPES:
            _save_span_model(run, name, folder)
        else:
            _save_sequence_model(run, name, folder)
            result.remote_code.append(name)
        _save_tokenizer(run, name, folder)
        result.tasks[name] = folder
        result.max_abs_diff[name] = _check_parity(run, name, folder)
    if not (single and run.tasks[next(iter(run.tasks))].registry_name == SEQ2SEQ):
        # A single seq2seq folder is an EncoderDecoderModel, not a sentence encoder.
        write_sentence_transformers_files(result.encoder_dir, run)
    from polytask.export.model_card import write_model_cards

    write_model_cards(run, result)
    (out / MANIFEST).write_text(json.dumps({
        "tasks": {n: str(p.relative_to(out)) or "." for n, p in result.tasks.items()},
        "encoder": str(result.encoder_dir.relative_to(out)) or ".",
        "trust_remote_code": result.remote_code,
        "max_abs_diff": result.max_abs_diff,
    }, indent=2) + "\n")
    return result


# ---- writers ------------------------------------------------------------------------------------
def _base(run: LoadedRun) -> nn.Module:
    return run.model.encoder.model


def _save_encoder(run: LoadedRun, folder: Path) -> None:
    _base(run).save_pretrained(folder, safe_serialization=True)
    run.model.encoder.tokenizer.save_pretrained(folder)


def _save_tokenizer(run: LoadedRun, task: str, folder: Path) -> None:
    """The tokenizer, its ``model_max_length`` set to the task's, so truncation cuts where polytask's does."""
    tok = run.model.encoder.tokenizer
    before = tok.model_max_length
    try:
        tok.model_max_length = run.tasks[task].max_length
        tok.save_pretrained(folder)
    finally:
        tok.model_max_length = before


def _label_maps(labels: list[str]) -> tuple[dict[int, str], dict[str, int]]:
    return dict(enumerate(labels)), {lab: i for i, lab in enumerate(labels)}


def _head_linear(run: LoadedRun, task: str) -> nn.Linear:
    out = getattr(run.model.heads[task], "out", None)
    if not isinstance(out, nn.Linear):
        raise CheckpointError(f"task {task!r}: its head is not polytask's linear head; it cannot be exported")
    return out


def _task_config(run: LoadedRun, task: str) -> Any:
    """A copy of the encoder's transformers config with the task's labels and polytask's settings."""
    config = _base(run).config.__class__.from_dict(_base(run).config.to_dict())
    t = run.tasks[task]
    labels = t.labels or ["score"]
    config.id2label, config.label2id = _label_maps(labels)
    config.num_labels = len(labels)
    config.polytask_task = task
    config.polytask_task_type = t.registry_name
    config.polytask_pooling = run.config.encoder.pooling
    config.polytask_dropout = float(run.config.encoder.dropout)
    return config


def _save_token_model(run: LoadedRun, task: str, folder: Path) -> None:
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_config(_task_config(run, task))
    _save_linear_head_model(run, task, folder, model, "classifier", "token classifier")


def _save_span_model(run: LoadedRun, task: str, folder: Path) -> None:
    """An ``AutoModelForQuestionAnswering``: the encoder plus ``qa_outputs`` = polytask's head."""
    from transformers import AutoModelForQuestionAnswering

    config = _task_config(run, task)
    config.id2label, config.label2id = _label_maps(["start", "end"])
    config.num_labels = 2
    t = run.tasks[task]
    config.polytask_qa_options = asdict(t.options) if is_dataclass(t.options) else {}
    model = AutoModelForQuestionAnswering.from_config(config)
    _save_linear_head_model(run, task, folder, model, "qa_outputs", "question-answering head")


def _save_linear_head_model(run: LoadedRun, task: str, folder: Path, model: nn.Module, attr: str, what: str) -> None:
    """Fill a transformers model whose head is one linear layer (``model.<attr>``) with the run's
    encoder and ``task``'s head, check the encoder loaded, and save it to ``folder``."""
    head = getattr(model, attr, None)
    if not isinstance(head, nn.Linear):
        raise CheckpointError(
            f"task {task!r}: transformers' {what} for {model.config.model_type!r} is not a single "
            f"linear layer ({attr}), so polytask's head does not fit it"
        )
    base = getattr(model, model.base_model_prefix)
    base.load_state_dict(_base(run).state_dict(), strict=False)
    _check_loaded(base, _base(run), task)
    head.load_state_dict(_head_linear(run, task).state_dict())
    model.save_pretrained(folder, safe_serialization=True)


def _check_loaded(target: nn.Module, source: nn.Module, task: str) -> None:
    """Every tensor of ``target`` (but a pooler polytask never trains) came from ``source``."""
    have = set(source.state_dict())
    missing = [k for k in target.state_dict() if k not in have and not k.startswith("pooler.")]
    if missing:
        raise CheckpointError(f"task {task!r}: the encoder's weights do not fill transformers' model ({missing[:3]})")


def _save_sequence_model(run: LoadedRun, task: str, folder: Path) -> None:
    base = _base(run)
    base_cls = type(base)
    accepts_pooler = "add_pooling_layer" in inspect.signature(base_cls.__init__).parameters
    source = hf_modeling.render(base_cls.__name__, type(base.config).__name__, base_cls.base_model_prefix, accepts_pooler)
    (folder / hf_modeling.MODEL_FILE).write_text(source, encoding="utf-8")
    config = _task_config(run, task)
    config.problem_type = PROBLEM_TYPES[run.tasks[task].registry_name]
    module = f"{Path(hf_modeling.MODEL_FILE).stem}.{hf_modeling.CLASS_NAME}"
    config.auto_map = {"AutoModelForSequenceClassification": module}
    config.architectures = [hf_modeling.CLASS_NAME]
    cls = _import_model_class(folder)
    model = cls(config)
    getattr(model, cls.base_model_prefix).load_state_dict(base.state_dict())
    model.classifier.load_state_dict(_head_linear(run, task).state_dict())
    model.save_pretrained(folder, safe_serialization=True)
    # save_pretrained keeps config attributes; make sure the hook transformers reads is there.
    cfg_path = folder / "config.json"
    saved = json.loads(cfg_path.read_text())
    saved["auto_map"] = config.auto_map
    saved["architectures"] = config.architectures
    cfg_path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")


def _seq2seq_model(run: LoadedRun, task: str) -> nn.Module:
    """An ``EncoderDecoderModel`` of the run's encoder and the task's decoder, with the task's
    generation settings as its ``generation_config``."""
    from transformers import EncoderDecoderModel, GenerationConfig

    head = run.model.heads[task]
    model = EncoderDecoderModel(encoder=_base(run), decoder=head.decoder)
    gen = head.generation_kwargs()
    model.config.decoder_start_token_id = gen["decoder_start_token_id"]
    model.config.pad_token_id = gen["pad_token_id"]
    model.config.eos_token_id = gen["eos_token_id"]
    model.config.polytask_task = task
    model.config.polytask_task_type = SEQ2SEQ
    model.generation_config = GenerationConfig(**gen)
    return model


def _save_seq2seq_model(run: LoadedRun, task: str, folder: Path) -> None:
    _seq2seq_model(run, task).save_pretrained(folder, safe_serialization=True)


def _check_generation(run: LoadedRun, task: str, folder: Path) -> float:
    """The exported folder, loaded by ``EncoderDecoderModel.from_pretrained``, must generate
    polytask's texts on sample inputs (returns 0.0; CheckpointError otherwise)."""
    from transformers import EncoderDecoderModel

    exported = EncoderDecoderModel.from_pretrained(folder).eval()
    t = run.tasks[task]
    tok = run.model.encoder.tokenizer
    batch = tok(SAMPLE_TEXTS, padding=True, truncation=True, max_length=t.max_source_length, return_tensors="pt")
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
    with torch.inference_mode():
        ours = run.model(task, dict(inputs)).texts()
        ids = exported.generate(**inputs)
    theirs = [s.strip() for s in tok.batch_decode(ids.tolist(), skip_special_tokens=True)]
    if ours != theirs:
        raise CheckpointError(f"task {task!r}: the exported model generates {theirs!r} where polytask generates "
                              f"{ours!r}; please report this")
    return 0.0


def _import_model_class(folder: Path) -> type:
    """The class in ``folder/modeling_polytask.py``, imported from that file (no module cache)."""
    path = folder / hf_modeling.MODEL_FILE
    name = f"_polytask_export_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return getattr(module, hf_modeling.CLASS_NAME)


def write_sentence_transformers_files(folder: Path, run: LoadedRun) -> None:
    """``modules.json``, ``sentence_bert_config.json`` and ``1_Pooling/config.json``: the encoder
    plus polytask's pooling, so ``SentenceTransformer(folder)`` gives polytask's pooled vectors
    (no normalisation module: polytask's heads read the unnormalised vector)."""
    pooling = run.config.encoder.pooling
    hidden = int(run.model.encoder.hidden_size)
    max_len = max(t.max_length for t in run.tasks.values())
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_len, "do_lower_case": False}, indent=2) + "\n"
    )
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }, indent=2) + "\n")


# ---- parity -------------------------------------------------------------------------------------
def _check_parity(run: LoadedRun, task: str, folder: Path) -> float:
    """Largest |exported - polytask| logit on sample inputs; CheckpointError above the tolerance."""
    from transformers import AutoModelForQuestionAnswering, AutoModelForTokenClassification

    t = run.tasks[task]
    tok = run.model.encoder.tokenizer
    span = t.registry_name in SPAN_TYPES
    if span:
        exported = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
        batch = tok(["what is it?", "where?"], SAMPLE_TEXTS, padding=True, truncation="only_second",
                    max_length=t.max_length, return_tensors="pt")
    elif t.token_level:
        exported = AutoModelForTokenClassification.from_pretrained(folder).eval()
        batch = tok([s.split() for s in SAMPLE_TEXTS], is_split_into_words=True, padding=True,
                    truncation=True, max_length=t.max_length, return_tensors="pt")
    else:
        exported = _import_model_class(folder).from_pretrained(folder).eval()
        batch = tok(SAMPLE_TEXTS, padding=True, truncation=True, max_length=t.max_length, return_tensors="pt")
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.inference_mode():
        ours = run.model(task, dict(inputs)).float()  # (B, C) or (B, T, C)
        out = exported(**inputs)
        theirs = torch.stack([out.start_logits, out.end_logits], -1).float() if span else out.logits.float()
    if t.token_level or span:  # compare real tokens only: padded positions are never read
        keep = inputs["attention_mask"].bool()
        ours, theirs = ours[keep], theirs[keep]
    diff = float((ours - theirs).abs().max())
    if not diff <= PARITY_TOLERANCE:
        raise CheckpointError(
            f"task {task!r}: the exported model's logits differ from polytask's by {diff:.2e} "
            f"(tolerance {PARITY_TOLERANCE:g}); please report this"
        )
    return diff
