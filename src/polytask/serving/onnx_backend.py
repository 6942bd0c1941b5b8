"""ONNX Runtime backend of the Predictor: same inputs, same batching, same decoded outputs.

Loads a folder written by ``polytask export onnx`` (or ``polytask export quantize``): the graph,
its manifest (tasks, labels, input and output names, the run's config) and the tokenizer. The
tasks are rebuilt from the manifest, so decoding (labels, probabilities, word-level tags) is the
very code the PyTorch predictor runs. onnxruntime is imported only when this backend is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polytask.config.loader import parse_config
from polytask.errors import ConfigError
from polytask.export.onnx import MANIFEST_FILE, export_onnx, is_onnx_export, load_manifest
from polytask.serving.predictor import BasePredictor
from polytask.tasks import build_task
from polytask.tasks.base import Task

MISSING = "the ONNX backend and export need onnxruntime, onnx and onnxscript: pip install polytask[onnx]"
RUN_CACHE_DIR = "onnx"  # inside a checkpoint folder: a new checkpoint is a new folder, never stale

__all__ = ["MANIFEST_FILE", "MISSING", "OnnxPredictor", "is_onnx_export", "require_onnxruntime"]


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a ConfigError naming the install command."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(MISSING) from None
    return onnxruntime


class OnnxPredictor(BasePredictor):
    """A predictor running an exported ONNX graph with ONNX Runtime.

    Args:
        directory: an ONNX export folder (``polytask_onnx.json`` + ``model.onnx`` + ``tokenizer/``).
        device: ``cpu`` (default) or ``cuda`` (needs onnxruntime-gpu).
        batch_size: inputs per forward pass.
        num_threads: ONNX Runtime intra-op threads (None: its default, one per physical core).
    """

    def __init__(
        self, directory: str | Path, device: str | None = None, batch_size: int = 64, num_threads: int | None = None
    ):
        ort = require_onnxruntime()
        from transformers import AutoTokenizer

        self.directory = Path(directory)
        self.manifest = load_manifest(self.directory)
        cfg = parse_config(self.manifest["config"])
        tasks: dict[str, Task] = {}
        for tcfg in cfg.tasks:
            task = build_task(tcfg, cfg.train.max_length)
            task.load_state(self.manifest["task_states"][tcfg.name])
            tasks[tcfg.name] = task
        tokenizer = AutoTokenizer.from_pretrained(self.directory / self.manifest["tokenizer_dir"], use_fast=True)
        super().__init__(tasks, tokenizer, batch_size)
        self.config = cfg
        options = ort.SessionOptions()
        if num_threads is not None:
            if num_threads < 1:
                raise ConfigError(f"num_threads must be 1 or more, got {num_threads}", field="num_threads")
            options.intra_op_num_threads = num_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if device is not None and str(device).startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError(
                    "device 'cuda' needs onnxruntime-gpu (pip install onnxruntime-gpu); this onnxruntime "
                    f"has {', '.join(ort.get_available_providers())}",
                    field="device",
                )
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(
            str(self.directory / self.manifest["model_file"]), sess_options=options, providers=providers
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.outputs: dict[str, str] = self.manifest["outputs"]

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        checkpoint: str = "best",
        device: str | None = None,
        batch_size: int = 64,
        num_threads: int | None = None,
    ) -> OnnxPredictor:
        """Load an export folder; a run directory is exported once into its checkpoint's ``onnx/``."""
        if not is_onnx_export(path):
            from polytask.export.save_load import find_checkpoint

            require_onnxruntime()
            cache = find_checkpoint(path, checkpoint) / RUN_CACHE_DIR
            if not is_onnx_export(cache):
                export_onnx(cache.parent, cache)
            path = cache
        return cls(path, device=device, batch_size=batch_size, num_threads=num_threads)

    @property
    def precision(self) -> str:
        """``fp32`` or ``int8``."""
        return str(self.manifest.get("precision", "fp32"))

    def _logits(self, batch: dict[str, Any], names: list[str]) -> dict[str, torch.Tensor]:
        feeds = {}
        for name in self.input_names:
            value = batch.get(name)
            if value is None:  # e.g. segment ids the tokenizer did not make: all one segment
                value = torch.zeros_like(batch["input_ids"])
            feeds[name] = value.numpy()  # (B, T) int64
        got = self.session.run([self.outputs[n] for n in names], feeds)
        return {n: torch.from_numpy(g) for n, g in zip(names, got, strict=True)}  # (B, C) or (B, T, C)
