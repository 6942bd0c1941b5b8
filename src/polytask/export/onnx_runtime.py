"""Running an ONNX export with ONNX Runtime: the session, its tasks and tokenizer.

Loads a folder written by ``polytask export onnx`` (or ``export quantize``): the graph, its
manifest (tasks, labels, input and output names, the run's config) and the tokenizer. The tasks
are rebuilt from the manifest, so decoding is the very code the PyTorch model's runs. The session
answers ``forward_all(batch, names)`` like a ``PolytaskModel``, so ``evaluation.evaluate`` scores
it unchanged (how ``quantize`` compares int8 with fp32) and the serving predictor runs it.
onnxruntime is imported only here, and only when a session is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polytask.config.loader import parse_config
from polytask.errors import ConfigError
from polytask.export.onnx import load_manifest
from polytask.tasks import build_task
from polytask.tasks.base import Task

MISSING = "the ONNX backend and export need onnxruntime, onnx and onnxscript: pip install polytask[onnx]"


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a ConfigError naming the install command."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(MISSING) from None
    return onnxruntime


class OnnxSession:
    """An ONNX export ready to run.

    Args:
        directory: an ONNX export folder (``polytask_onnx.json`` + ``model.onnx`` + ``tokenizer/``).
        device: ``cpu`` (default) or ``cuda`` (needs onnxruntime-gpu).
        num_threads: ONNX Runtime intra-op threads (None: its default, one per physical core).
    """

    training = False  # like a model in eval mode, for evaluation.evaluate

    def __init__(self, directory: str | Path, device: str | None = None, num_threads: int | None = None):
        ort = require_onnxruntime()
        from transformers import AutoTokenizer

        self.directory = Path(directory)
        self.manifest = load_manifest(self.directory)
        self.config = parse_config(self.manifest["config"])
        self.tasks: dict[str, Task] = {}
        for tcfg in self.config.tasks:
            task = build_task(tcfg, self.config.train.max_length)
            task.load_state(self.manifest["task_states"][tcfg.name])
            self.tasks[tcfg.name] = task
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory / self.manifest["tokenizer_dir"], use_fast=True)
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

    @property
    def precision(self) -> str:
        """``fp32`` or ``int8``."""
        return str(self.manifest.get("precision", "fp32"))

    def forward_all(self, batch: dict[str, Any], names: list[str]) -> dict[str, torch.Tensor]:
        """Logits of each task in ``names`` for one padded batch (one graph run)."""
        feeds = {}
        for name in self.input_names:
            value = batch.get(name)
            if value is None:  # e.g. segment ids the tokenizer did not make: all one segment
                value = torch.zeros_like(batch["input_ids"])
            feeds[name] = value.cpu().numpy()  # (B, T) int64
        got = self.session.run([self.outputs[n] for n in names], feeds)
        return {n: torch.from_numpy(g) for n, g in zip(names, got, strict=True)}  # (B, C) or (B, T, C)

    def eval(self) -> OnnxSession:
        return self

    def train(self, mode: bool = True) -> OnnxSession:
        return self
