"""Export a run as one ONNX graph (encoder + every task head) for ONNX Runtime.

The graph takes the encoder inputs (``input_ids``, ``attention_mask`` and, when the tokenizer
makes them, ``token_type_ids``; all int64 of shape (batch, tokens), both axes dynamic) and has
one output per task: (batch, classes) logits for sequence-level tasks, (batch, tokens, classes)
for token-level ones. One graph rather than encoder + head files, because a multi-task run then
answers every task from one encoder pass inside ONNX Runtime, as it does in PyTorch; the heads
are a few kilobytes, so nothing is gained by shipping them apart.

The export uses the ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``);
the legacy TorchScript exporter traced shapes into the graph here and gave wrong outputs on
new lengths. Every export is checked against PyTorch on batch sizes and lengths different from
the example it was traced with; the largest absolute logit difference is recorded in the
manifest, and a difference above ``tolerance`` fails the export.

Folder written::

    model.onnx            the graph, weights inside (no external data file)
    polytask_onnx.json    manifest: tasks, labels, input and output names, resolved config,
                          parity check, precision (and, for int8 models, the accuracy cost)
    tokenizer/            the encoder's tokenizer (AutoTokenizer.from_pretrained loads it)
"""

from __future__ import annotations

import logging
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polytask.errors import CheckpointError, ExportError
from polytask.multitask.model import PolytaskModel
from polytask.runs import LoadedRun, load_run
from polytask.training import checkpoint as ckpt

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "polytask_onnx.json"
TOKENIZER_DIR = "tokenizer"
FORMAT = "polytask-onnx"
FORMAT_VERSION = 1
EXAMPLE_SHAPE = (2, 8)  # (batch, tokens) traced at export
PARITY_SHAPES = ((1, 3), (3, 11), (5, 29))  # checked after export: none equals EXAMPLE_SHAPE


@dataclass
class OnnxExport:
    """What ``export_onnx`` wrote: the folder, its manifest and the parity check's result."""

    directory: Path
    manifest: dict[str, Any]

    @property
    def max_abs_diff(self) -> float:
        return float(self.manifest["parity"]["max_abs_diff"])


class _Graph(nn.Module):
    """The traced function: encoder inputs -> one logits tensor per task, in task order."""

    def __init__(self, model: PolytaskModel, names: list[str], input_names: list[str]):
        super().__init__()
        self.model = model
        self.names = names
        self.input_names = input_names

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, T)
        token_type_ids: torch.Tensor | None = None,  # (B, T)
    ) -> tuple[torch.Tensor, ...]:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        logits = self.model.forward_all(batch, self.names)
        return tuple(logits[n] for n in self.names)  # (B, C) or (B, T, C) each


def is_onnx_export(path: str | Path) -> bool:
    """True for a folder written by ``export_onnx`` or ``quantize_onnx``."""
    return (Path(path) / MANIFEST_FILE).is_file()


def output_names(task_names: list[str]) -> dict[str, str]:
    """ONNX output name per task: ``logits_<task>`` with non-word characters made ``_``."""
    out: dict[str, str] = {}
    for i, name in enumerate(task_names):
        cand = "logits_" + re.sub(r"\W", "_", name)
        out[name] = cand if cand not in out.values() else f"{cand}_{i}"
    return out


def encoder_input_names(model: PolytaskModel) -> list[str]:
    """The encoder inputs the graph takes: ids, mask, and segment ids when the tokenizer makes them."""
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in getattr(model.encoder.tokenizer, "model_input_names", []):
        names.append("token_type_ids")
    return names


def random_inputs(
    model: PolytaskModel, input_names: list[str], batch: int, tokens: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random ids with right padding in every other row and a second segment where used.

    Returns ``{input name: (batch, tokens) int64}``.
    """
    gen = torch.Generator().manual_seed(seed)
    vocab = len(model.encoder.tokenizer)
    ids = torch.randint(0, vocab, (batch, tokens), generator=gen)  # (B, T)
    mask = torch.ones(batch, tokens, dtype=torch.long)  # (B, T)
    for row in range(1, batch, 2):  # padded rows keep at least one real token
        mask[row, max(1, tokens - 1 - row) :] = 0
    ids = ids.masked_fill(mask == 0, model.encoder.tokenizer.pad_token_id or 0)
    out = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in input_names:
        types = torch.zeros(batch, tokens, dtype=torch.long)
        if _type_vocab_size(model) > 1:
            types[:, tokens // 2 :] = 1
        out["token_type_ids"] = types * mask
    return out


def _type_vocab_size(model: PolytaskModel) -> int:
    config = getattr(getattr(model.encoder, "model", None), "config", None)
    return int(getattr(config, "type_vocab_size", 1) or 1)


def export_onnx(
    source: str | Path | LoadedRun,
    out_dir: str | Path,
    checkpoint: str = "best",
    tolerance: float = 1e-3,
    opset: int | None = None,
) -> OnnxExport:
    """Export a run (encoder + all heads) to ``out_dir`` and check it against PyTorch.

    Args:
        source: a run directory, a checkpoint folder, or an already loaded run.
        out_dir: the folder to write (replaced if it holds an earlier export).
        checkpoint: ``best`` (falls back to ``last``) or ``last``.
        tolerance: the largest absolute logit difference from PyTorch accepted on the parity
            shapes; above it the export fails and nothing is written.
        opset: ONNX opset (None: the exporter's default).
    Returns:
        the folder and its manifest (``max_abs_diff`` is the parity check's result).
    Raises:
        ExportError: the exporter failed, or the parity check exceeded ``tolerance``.
        ConfigError: onnxruntime, onnx or onnxscript is not installed.
    """
    from polytask.export.onnx_runtime import require_onnxruntime

    ort = require_onnxruntime()
    run = source if isinstance(source, LoadedRun) else load_run(source, checkpoint)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not is_onnx_export(out):
        raise ExportError(f"{out} exists and is not an ONNX export; choose an empty or new folder")
    model = run.model.to("cpu").eval()
    names = list(run.tasks)
    generating = [n for n in names if getattr(model.heads[n], "reads_batch", False)]
    if generating:
        raise ExportError(f"task {generating[0]!r} generates text (seq2seq), which this ONNX export (one forward "
                          "pass per input) does not cover; export it with `polytask export hf` (an "
                          "EncoderDecoderModel folder) instead")
    inputs = encoder_input_names(model)
    outputs = output_names(names)
    tmp = out.with_name(f".tmp-{out.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        graph = _Graph(model, names, inputs).eval()
        example = random_inputs(model, inputs, *EXAMPLE_SHAPE)
        _export(graph, tuple(example[n] for n in inputs), inputs, list(outputs.values()), tmp / MODEL_FILE, opset)
        session = ort.InferenceSession(str(tmp / MODEL_FILE), providers=["CPUExecutionProvider"])
        graph_inputs = [i.name for i in session.get_inputs()]
        diff = parity(graph, inputs, session, list(outputs.values()))
        if not diff <= tolerance:  # also catches NaN
            raise ExportError(
                f"the ONNX model differs from PyTorch by up to {diff:.3g} on new shapes "
                f"{list(PARITY_SHAPES)} (tolerance {tolerance:g}); nothing was written. Report this "
                "with your torch and onnxscript versions, or raise --tolerance if the difference is acceptable"
            )
        tokenizer = model.encoder.tokenizer
        if not hasattr(tokenizer, "save_pretrained"):
            raise ExportError(f"encoder type {run.config.encoder.type!r} has no tokenizer that can be saved")
        tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
        manifest = _manifest(run, graph_inputs, outputs, diff, tolerance, ort.__version__)
        ckpt.write_json(tmp / MANIFEST_FILE, manifest)
        out.parent.mkdir(parents=True, exist_ok=True)
        ckpt.commit_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return OnnxExport(out, manifest)


def _manifest(run: LoadedRun, graph_inputs: list[str], outputs: dict[str, str], diff: float, tolerance: float,
              ort_version: str) -> dict[str, Any]:
    """The export's ``manifest.json``: format, files, inputs/outputs, tasks, config, parity, versions."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_file": MODEL_FILE,
        "tokenizer_dir": TOKENIZER_DIR,
        "precision": "fp32",
        "inputs": graph_inputs,
        "outputs": outputs,
        "tasks": {
            n: {
                "type": t.config.type,
                "token_level": t.token_level,
                "labels": t.labels,
                "output_shape": ["batch", "tokens", "classes"] if t.token_level else ["batch", "classes"],
            }
            for n, t in run.tasks.items()
        },
        "task_states": {n: t.state() for n, t in run.tasks.items()},
        "config": run.config.model_dump(mode="json"),
        "source": {"checkpoint": str(run.checkpoint_dir), "step": run.meta.get("step")},
        "parity": {"max_abs_diff": diff, "tolerance": tolerance, "against": "torch",
                   "shapes": [list(s) for s in PARITY_SHAPES], "example_shape": list(EXAMPLE_SHAPE)},
        "versions": {**ckpt.versions(), "onnxruntime": ort_version},
    }


def _export(
    graph: nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str], path: Path,
    opset: int | None,
) -> None:
    """``torch.onnx.export`` with the dynamo exporter, batch and token axes dynamic, quietly."""
    dyn = torch.export.Dim.DYNAMIC
    shapes = {name: {0: dyn, 1: dyn} for name in inputs}  # keyed by forward's argument names
    kwargs: dict[str, Any] = {"opset_version": opset} if opset else {}
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph, args, dynamo=True, input_names=inputs, output_names=outputs,
                dynamic_shapes=shapes, external_data=False, verbose=False, report=False, **kwargs,
            )
            program.save(str(path), external_data=False)
    except ImportError as exc:
        from polytask.export.onnx_runtime import MISSING

        raise ExportError(f"{MISSING} ({exc})") from None
    except Exception as exc:  # the exporter raises many types; all mean the same to a user
        raise ExportError(
            f"torch.onnx.export (dynamo) failed for this model: {type(exc).__name__}: {_summary(exc)}"
        ) from exc
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


def _summary(exc: Exception) -> str:
    """The exporter's own "Exception summary" section when there is one (its head is boilerplate)."""
    text = str(exc)
    at = text.find("## Exception summary")
    return (text[at + len("## Exception summary") :] if at >= 0 else text).strip()[:1500]


def parity(graph: nn.Module, inputs: list[str], session: Any, outputs: list[str]) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime logits over ``PARITY_SHAPES``."""
    model = graph.model  # type: ignore[attr-defined]
    feeds_names = {i.name for i in session.get_inputs()}
    worst = 0.0
    for seed, (b, t) in enumerate(PARITY_SHAPES, start=1):
        batch = random_inputs(model, inputs, b, t, seed=seed)
        with torch.inference_mode():
            ref = graph(*(batch[n] for n in inputs))
        got = session.run(outputs, {n: batch[n].numpy() for n in inputs if n in feeds_names})
        for r, g in zip(ref, got, strict=True):
            diff = float((r.float() - torch.from_numpy(g).float()).abs().max())
            worst = max(worst, diff) if diff == diff else float("nan")
            if worst != worst:
                return worst
    return worst


def load_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an ONNX export folder; a clear error for anything else."""
    import json

    file = Path(path) / MANIFEST_FILE
    if not file.is_file():
        raise CheckpointError(
            f"{path}: not an ONNX export (no {MANIFEST_FILE}); create one with `polytask export onnx RUN OUT_DIR`"
        )
    manifest = json.loads(file.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: format {manifest.get('format')!r} version {manifest.get('format_version')} is not one "
            f"this polytask reads ({FORMAT} <= {FORMAT_VERSION}); upgrade polytask or re-export"
        )
    return manifest
