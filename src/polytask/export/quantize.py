"""Dynamic int8 quantisation of an exported ONNX model, with its accuracy cost measured.

Dynamic quantisation (Jacob et al., CVPR 2018, https://arxiv.org/abs/1712.05877, for the integer
arithmetic; ONNX Runtime's ``quantize_dynamic`` for the recipe) stores the weights of MatMul/Gemm
layers as int8 and quantises activations on the fly per batch, so no calibration data is needed.
The file is about 4x smaller and the matrix products run in int8 on CPUs with VNNI/AVX2.

Quantisation changes outputs, so the cost is measured, not assumed: the fp32 and the int8 graph
are both scored on the run's dev split (or a given labelled file) through the same ONNX
Runtime predictor, and both metrics and their difference go into the int8 model's manifest.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from polytask.errors import DataError
from polytask.export.onnx import (
    MANIFEST_FILE,
    MODEL_FILE,
    ExportError,
    export_onnx,
    is_onnx_export,
    load_manifest,
)
from polytask.training import checkpoint as ckpt


def quantize_onnx(
    source: str | Path,
    out_dir: str | Path,
    data: str | Path | None = None,
    task: str | None = None,
    checkpoint: str = "best",
    batch_size: int = 64,
    max_drop: float | None = None,
    per_channel: bool = False,
) -> dict[str, Any]:
    """Write an int8 copy of an ONNX export (or of a run, exported first) and score both.

    Args:
        source: an ONNX export folder, or a run directory (exported to a temporary folder first).
        out_dir: the folder for the int8 export (same layout as ``export_onnx``'s).
        data: a labelled file read with the task's data settings; default: each task's dev split
            (its test split when it has no dev split).
        task: the task to score (default: every task; required with ``data`` for a multi-task run).
        checkpoint: ``best`` or ``last``, for a run directory.
        batch_size: inputs per forward pass while scoring.
        max_drop: fail (writing nothing) when a task's main metric gets worse by more than this.
        per_channel: one scale per output channel instead of per tensor (more accurate, a
            little slower on some CPUs).
    Returns:
        the int8 manifest; ``manifest["quantization"]["eval"][task]`` holds ``metric``, ``fp32``,
        ``int8`` and ``difference`` (int8 minus fp32) plus every metric of both.
    """
    from polytask.export.onnx_runtime import OnnxSession, require_onnxruntime

    require_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not is_onnx_export(out):
        raise ExportError(f"{out} exists and is not an ONNX export; choose an empty or new folder")
    with tempfile.TemporaryDirectory(prefix="polytask-quantize-") as scratch:
        if is_onnx_export(source):
            fp32_dir = Path(source)
        else:
            fp32_dir = export_onnx(source, Path(scratch) / "fp32", checkpoint).directory
        manifest = load_manifest(fp32_dir)
        if manifest.get("precision") != "fp32":
            raise ExportError(
                f"{fp32_dir} holds a {manifest.get('precision')} model; quantize the fp32 export "
                "(`polytask export onnx RUN DIR`) or the run itself"
            )
        fp32 = OnnxSession(fp32_dir)
        names = _task_names(fp32, task, data)
        sets = {n: _examples(fp32.tasks[n], data) for n in names}

        tmp = out.with_name(f".tmp-{out.name}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint on the root logger
            try:
                quantize_dynamic(
                    str(fp32_dir / manifest["model_file"]), str(tmp / MODEL_FILE),
                    weight_type=QuantType.QInt8, per_channel=per_channel,
                )
            finally:
                root.setLevel(level)
            shutil.copytree(fp32_dir / manifest["tokenizer_dir"], tmp / manifest["tokenizer_dir"])
            int8_manifest = {**manifest, "model_file": MODEL_FILE, "precision": "int8"}
            ckpt.write_json(tmp / MANIFEST_FILE, int8_manifest)
            int8 = OnnxSession(tmp)
            report: dict[str, Any] = {}
            for n in names:
                split, examples = sets[n]
                report[n] = _compare(fp32, int8, n, split, examples, batch_size)
            int8_manifest["quantization"] = {
                "method": "onnxruntime.quantization.quantize_dynamic",
                "weight_type": "int8",
                "per_channel": per_channel,
                "source": str(source),
                "size_bytes": {"fp32": (fp32_dir / manifest["model_file"]).stat().st_size,
                               "int8": (tmp / MODEL_FILE).stat().st_size},
                "eval": report,
            }
            if max_drop is not None:
                for n, r in report.items():
                    drop = -r["difference"] if r["greater_is_better"] else r["difference"]
                    if drop > max_drop:
                        raise ExportError(
                            f"int8 quantisation costs task {n!r} {drop:.4f} {r['metric']} "
                            f"({r['fp32']:.4f} -> {r['int8']:.4f}), more than --max-drop {max_drop:g}; "
                            "nothing was written. Try --per-channel, or keep the fp32 export"
                        )
            ckpt.write_json(tmp / MANIFEST_FILE, int8_manifest)
            del int8  # the session holds the file open on some platforms
            out.parent.mkdir(parents=True, exist_ok=True)
            ckpt.commit_dir(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return int8_manifest


def _task_names(session: Any, task: str | None, data: str | Path | None) -> list[str]:
    names = list(session.tasks)
    if task is not None:
        if task not in session.tasks:
            raise DataError(f"unknown task {task!r}; this run has: {', '.join(names)}")
        return [task]
    if data is not None and len(names) > 1:
        raise DataError(f"--data needs --task for a multi-task run (tasks: {', '.join(names)})")
    return names


def _examples(task: Any, data: str | Path | None) -> tuple[str, list]:
    """(split name, labelled examples) to score ``task`` on."""
    from polytask.data.loading import load_splits, read_file

    if data is not None:
        cfg = task.config.data.model_copy(update={"train": str(data), "dev": None, "test": None, "limit": None})
        examples = read_file(cfg, str(data), task.token_level, split="test")
        split = "eval"
    else:
        splits = load_splits(task.config.data, token_level=task.token_level)
        split = "dev" if splits.get("dev") else "test" if splits.get("test") else ""
        if not split:
            raise DataError(
                f"task {task.name!r} has no dev or test split to measure the int8 accuracy on; "
                "pass a labelled file with --data"
            )
        examples = splits[split]
    task.check(examples, split)
    return split, examples


def _compare(fp32: Any, int8: Any, name: str, split: str, examples: list, batch_size: int) -> dict[str, Any]:
    from polytask.evaluation.evaluate import evaluate_task

    task = fp32.tasks[name]
    metric = task.config.metric or task.default_metric
    scores = {}
    pad = fp32.tokenizer.pad_token_id or 0
    features = [task.encode(ex, fp32.tokenizer) for ex in examples]
    for label, session in (("fp32", fp32), ("int8", int8)):
        scores[label], _ = evaluate_task(session, task, examples, fp32.tokenizer, pad, batch_size,
                                         torch.device("cpu"), features=features)
        scores[label].pop("loss", None)
    if metric not in scores["fp32"]:
        metric = next(iter(scores["fp32"]))
    return {
        "split": split,
        "n_examples": len(examples),
        "metric": metric,
        "greater_is_better": task.greater_is_better,
        "fp32": scores["fp32"][metric],
        "int8": scores["int8"][metric],
        "difference": scores["int8"][metric] - scores["fp32"][metric],
        "fp32_metrics": scores["fp32"],
        "int8_metrics": scores["int8"],
    }
