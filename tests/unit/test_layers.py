"""Layers that hold: importing a lower layer never pulls in a higher one.

Each check runs in a fresh interpreter (the test process has imported everything already).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.system  # starts other programs

# Lower layers, bottom to top, and what must not be loaded by importing them.
HIGH = ["polytask.serving", "polytask.commands", "polytask.study", "polytask.cli", "fastapi", "uvicorn",
        "onnxruntime"]
LAYERS = {
    "core": (["polytask.config", "polytask.data.loading", "polytask.encoders", "polytask.tasks",
              "polytask.multitask.model", "polytask.multitask.weighting", "polytask.multitask.surgery",
              "polytask.multitask.samplers", "polytask.transfer", "polytask.io"],
             HIGH + ["polytask.training.loop", "polytask.runs", "polytask.export"]),
    "training": (["polytask.runs", "polytask.training.loop", "polytask.training.engine", "polytask.pretrain.mlm",
                  "polytask.procedures.affinity", "polytask.evaluation.evaluate"],
                 HIGH + ["polytask.export"]),
    "export": (["polytask.export.onnx", "polytask.export.quantize", "polytask.export.hf",
                "polytask.export.onnx_runtime"], HIGH),
}


@pytest.mark.parametrize("layer", list(LAYERS))
def test_lower_layers_import_no_higher_layer(layer: str) -> None:
    modules, forbidden = LAYERS[layer]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(k for k in sys.modules if any(k == f or k.startswith(f + '.') for f in {forbidden!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing the {layer} layer loaded {loaded}"
