"""The ``lora`` transfer strategy: which weights train, merged = unmerged, adapters-only
checkpoints, exact resume, loading and exporting a LoRA run, and the errors a user can hit."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from polytask.config import TransferConfig, load_config, parse_config
from polytask.config.schema import EncoderConfig, TaskConfig
from polytask.encoders import build_encoder
from polytask.encoders.base import Encoder, EncoderOutput
from polytask.errors import CheckpointError, ConfigError
from polytask.export.hf import export_hf
from polytask.multitask.model import PolytaskModel
from polytask.runs import load_run, starting_encoder
from polytask.tasks import build_task
from polytask.training import checkpoint as ckpt
from polytask.training import logging as tlog
from polytask.training.loop import read_metrics, train
from polytask.transfer import STRATEGIES, build_strategies
from polytask.transfer.base import Strategy
from polytask.transfer.freeze import Freeze, FreezeConfig
from polytask.transfer.lora import Lora, LoraConfig, merge_adapters
from tests.unit.toy import toy_config, toy_texts, write_toy_jsonl

REPO = Path(__file__).resolve().parents[2]
EPOCHS, STEPS_PER_EPOCH = 2, 4  # 32 toy training examples, batch 8


def lora(**options: Any):  # noqa: ANN201
    return build_strategies(TransferConfig(strategy="lora", options={"lora": options} if options else {}))


@pytest.fixture()
def model(tiny_encoder_dir: Path) -> PolytaskModel:
    enc = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir)))
    task = build_task(TaskConfig(name="t", type="classification", data={"train": "x"}, labels=["a", "b"]), 32)
    return PolytaskModel(enc, {"t": task})


def batch_of(model: PolytaskModel, texts: list[str]) -> dict[str, torch.Tensor]:
    enc = model.encoder.tokenizer(texts, padding=True, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def randomise_adapters(model: torch.nn.Module, seed: int = 0) -> None:
    """B starts at zero (LoRA = base model); give every adapter a real update."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


# --- options, combinations, encoder type ---------------------------------------------------


def test_registered_with_peft_defaults() -> None:
    assert STRATEGIES.get("lora") is Lora and Lora.saves_full_model is False
    o = lora().members[0].options
    assert (o.r, o.alpha, o.dropout, o.target_modules, o.bias, o.train_layer_norms) == (
        8, 16.0, 0.1, "all-linear", "none", False)


def test_option_errors() -> None:
    with pytest.raises(ConfigError, match=r"transfer.options.lora: r must be a whole number >= 1; got 0"):
        lora(r=0)
    with pytest.raises(ConfigError, match=r"transfer.options.lora: bias must be one of none, all, lora_only; got 'some'"):
        lora(bias="some")
    with pytest.raises(ConfigError, match=r"target_modules must be 'all-linear' or a non-empty list of module names"):
        lora(target_modules=[])
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\); got 1.0"):
        lora(dropout=1.0)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) rank for transfer strategy 'lora'; allowed: alpha, bias"):
        lora(rank=4)


@pytest.mark.parametrize("other", ["full", "freeze", "gradual_unfreeze", "l2_sp"])
def test_refused_combinations(other: str) -> None:
    cfg = SimpleNamespace(encoder=SimpleNamespace(type="transformer"),
                          transfer=TransferConfig(strategy=["lora", other]))
    with pytest.raises(ConfigError, match=rf"transfer.strategy: lora cannot be combined with {other}: .* Remove {other} "
                                          r"\(lora combines with strategies that only set learning rates"):
        Lora.check_config(cfg)
    Lora.check_combination(["discriminative_lr", "lora"])  # only sets the optimiser's groups: allowed


class PreparingStrategy(Strategy):
    """A strategy with a ``prepare`` phase (like a contrastive warm-up), by import path."""

    def prepare(self, *args: Any, **kwargs: Any) -> None: ...


def test_strategies_with_a_prepare_phase_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"lora cannot be combined with tests.unit.test_lora:PreparingStrategy: "
                                          r"tests.unit.test_lora:PreparingStrategy changes the encoder before "
                                          r"training, and a lora checkpoint rebuilds the encoder from its source"):
        Lora.check_combination(["lora", "tests.unit.test_lora:PreparingStrategy"])


def test_non_transformer_encoder_is_refused_from_config_and_at_setup() -> None:
    cfg = SimpleNamespace(encoder=SimpleNamespace(type="bilstm"), transfer=TransferConfig(strategy="lora"))
    with pytest.raises(ConfigError, match=r"transfer.strategy: lora needs a transformer encoder \(encoder.type: "
                                          r"transformer\), but encoder.type is 'bilstm'; choose another transfer.strategy"):
        Lora.check_config(cfg)

    class BagOfEmbeddings(Encoder):  # stands in for any non-transformer encoder (BiLSTM, CNN...)
        hidden_size = 8

        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(10, 8)

        def forward(self, input_ids, attention_mask, token_type_ids=None) -> EncoderOutput:  # noqa: ANN001
            states = self.emb(input_ids)  # (B, T, H)
            return EncoderOutput(states, attention_mask, states.mean(1))

        def layer_groups(self) -> list[list[torch.nn.Parameter]]:
            return [list(self.parameters())]

        def save_files(self, directory: Path) -> None: ...

        @classmethod
        def from_files(cls, directory: Path, **kwargs: Any) -> Encoder:
            return cls()

    task = build_task(TaskConfig(name="t", type="classification", data={"train": "x"}, labels=["a", "b"]), 32)
    model = PolytaskModel(BagOfEmbeddings(), {"t": task})
    with pytest.raises(ConfigError, match=r"lora needs a transformer encoder \(encoder.type: transformer\), "
                                          r"but the encoder is BagOfEmbeddings"):
        lora().setup(model)
    assert all(".lora_" not in n for n, _ in model.named_parameters())


def test_train_refuses_lora_on_a_bilstm_before_reading_any_data(tmp_path: Path) -> None:
    missing = {"train": str(tmp_path / "no-such-train.jsonl"), "dev": str(tmp_path / "no-such-dev.jsonl")}
    raw = toy_config(tmp_path, missing, tmp_path / "run")
    raw["encoder"] = {"type": "bilstm"}
    raw["transfer"] = {"strategy": "lora"}
    with pytest.raises(ConfigError, match=r"lora needs a transformer encoder .* encoder.type is 'bilstm'"):
        train(parse_config(raw))
    assert not (tmp_path / "run").exists()


def test_target_modules_that_match_nothing(model: PolytaskModel) -> None:
    with pytest.raises(ConfigError, match=r"transfer.options.lora.target_modules: cannot add LoRA adapters to "
                                          r"BertModel: .*Set target_modules to names of its linear layers"):
        lora(target_modules=["q_lin"]).setup(model)


def test_a_strategy_changing_requires_grad_is_caught_before_the_first_step(model: PolytaskModel) -> None:
    # The config-level refusal (check_config) is the first line; this guard covers a list that
    # reached setup anyway: freeze after lora freezes the adapters.
    members = [Lora(LoraConfig()), Freeze(FreezeConfig())]
    for m in members:
        m.setup(model)
    with pytest.raises(ConfigError, match=r"another strategy in transfer.strategy changed which encoder weights train "
                                          r"\(0 base weights unfrozen, 24 adapter weights frozen\)"):
        members[0].on_step(model, 0, 8)


# --- what trains, merging ---------------------------------------------------------------------


def test_only_adapters_and_heads_train(model: PolytaskModel) -> None:
    s = lora()
    s.setup(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapters = {n for n in trainable if n.startswith("encoder.")}
    # 2 layers x 6 linear layers (query, key, value, attention out, intermediate, output) x (A, B)
    assert len(adapters) == 24 and all(".lora_A.default." in n or ".lora_B.default." in n for n in adapters)
    assert {n for n in trainable if not n.startswith("encoder.")} == {n for n, _ in model.named_parameters()
                                                                        if n.startswith("heads.")}
    state = s.checkpoint_state(model, model.state_dict())
    assert set(state) == trainable
    # A (r, in), B (out, r): e.g. query of the hidden-32 model at r=8
    q = "encoder.model.encoder.layer.0.attention.self.query"
    assert state[f"{q}.lora_A.default.weight"].shape == (8, 32)
    assert state[f"{q}.lora_B.default.weight"].shape == (32, 8)
    assert not state[f"{q}.lora_B.default.weight"].any()  # B = 0: training starts at the base model


def test_bias_and_layer_norm_options_train_and_save_those_too(model: PolytaskModel) -> None:
    s = lora(bias="all", train_layer_norms=True, target_modules=["query", "value"])
    s.setup(model)
    trainable = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert len([n for n in trainable if ".lora_" in n]) == 2 * 2 * 2  # 2 layers x (query, value) x (A, B)
    assert "model.embeddings.LayerNorm.weight" in trainable
    assert "model.encoder.layer.1.intermediate.dense.bias" in trainable
    assert "model.encoder.layer.1.intermediate.dense.weight" not in trainable
    state = s.checkpoint_state(model, model.state_dict())
    assert {k for k in state if k.startswith("encoder.")} == {f"encoder.{n}" for n in trainable}


def test_merged_equals_unmerged(model: PolytaskModel) -> None:
    plain_keys = set(model.state_dict())
    lora(r=4).setup(model)
    randomise_adapters(model)
    model.eval()
    batch = batch_of(model, ["a good movie", "the plot was dull and the film was too long"])
    with torch.no_grad():
        base_layer = model.encoder.model.encoder.layer[0].attention.self.query.base_layer.weight.clone()
        before = model("t", batch)  # (B, C)
        states_before = model.encode(batch).token_states  # (B, T, H)
        assert merge_adapters(model.encoder.model) == 12
        after = model("t", batch)
        states_after = model.encode(batch).token_states
    assert set(model.state_dict()) == plain_keys  # a plain BertModel again
    assert not torch.equal(model.encoder.model.encoder.layer[0].attention.self.query.weight, base_layer)
    torch.testing.assert_close(states_after, states_before, atol=1e-5, rtol=0)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    assert (states_before - model.encoder.model(**{k: batch[k] for k in ("input_ids", "attention_mask")})
            .last_hidden_state).abs().max() < 1e-5


# --- a toy run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> dict[str, Any]:
    """One LoRA toy run, shared by the tests below; keeps the in-training model for comparison."""
    tmp = tmp_path_factory.mktemp("lora_run")
    data = write_toy_jsonl(tmp / "data", n_train=8 * STEPS_PER_EPOCH, n_dev=16)
    raw = toy_config(tiny_encoder_dir, data, tmp / "run", epochs=EPOCHS, lr=1e-2, log_every=STEPS_PER_EPOCH)
    raw["transfer"] = {"strategy": "lora"}
    seen: list[PolytaskModel] = []
    original = Lora.setup

    def spy(self, model, anchor=None):  # noqa: ANN001, ANN202
        original(self, model, anchor)
        seen.append(model)

    Lora.setup = spy  # module-scoped fixture: no monkeypatch fixture; restored below
    try:
        result = train(parse_config(raw))
    finally:
        Lora.setup = original
    return {"run": tmp / "run", "raw": raw, "data": data, "result": result, "model": seen[0]}


def test_base_weights_stay_bit_identical_and_the_loss_falls(trained: dict[str, Any], tiny_encoder_dir: Path) -> None:
    pretrained = load_file(str(tiny_encoder_dir / "model.safetensors"))
    live = trained["model"].encoder.model.state_dict()
    compared = 0
    for name, tensor in pretrained.items():
        key = name if name in live else name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(live[key], tensor), name
        compared += 1
    assert compared == len(pretrained) > 30
    assert trained["result"].steps == STEPS_PER_EPOCH * EPOCHS
    losses = [r["loss"] for r in read_metrics(trained["run"]) if r["split"] == "train"]
    assert losses[-1] < losses[0]


def test_checkpoint_holds_only_adapters_and_heads(trained: dict[str, Any], tmp_path: Path) -> None:
    for name in ("best", "last"):
        state = ckpt.load_model_state(trained["run"] / "checkpoints" / name)
        encoder_keys = [k for k in state if k.startswith("encoder.")]
        assert len(encoder_keys) == 24 and all(".lora_" in k for k in encoder_keys)
        assert {k for k in state if not k.startswith("encoder.")} == {"heads.sent.out.weight", "heads.sent.out.bias"}
        assert any(state[k].any() for k in encoder_keys if ".lora_B." in k)  # trained: B no longer zero
    full = tmp_path / "full.safetensors"
    save_file({k: v.contiguous() for k, v in trained["model"].state_dict().items()}, str(full))
    small = (trained["run"] / "checkpoints/best/model.safetensors").stat().st_size
    assert small * 50 < full.stat().st_size, (small, full.stat().st_size)


def test_loaded_run_reproduces_the_dev_metrics(trained: dict[str, Any]) -> None:
    from polytask.evaluation.run_eval import evaluate_run

    meta = ckpt.load_meta(trained["run"] / "checkpoints/best")
    results, _ = evaluate_run(trained["run"])  # merged model, rebuilt from the base + adapters
    assert results["sent"]["accuracy"] == meta["metrics"]["sent/accuracy"]
    assert results["sent"]["loss"] == pytest.approx(meta["metrics"]["sent/loss"], abs=1e-5)
    final = json.loads((trained["run"] / "results.json").read_text())["dev"]
    last = evaluate_run(trained["run"], checkpoint="last", output=trained["run"] / "eval-last.json")[0]
    assert last["sent"]["accuracy"] == final["sent/accuracy"]


def test_load_merges_by_default_and_equals_the_unmerged_model(trained: dict[str, Any]) -> None:
    merged, unmerged = load_run(trained["run"]), load_run(trained["run"], merge=False)
    assert not [n for n, _ in merged.model.named_parameters() if ".lora_" in n]
    assert len([n for n, _ in unmerged.model.named_parameters() if ".lora_" in n]) == 24
    texts = [t for t, _ in toy_texts(6, seed=9)]
    batch = batch_of(merged.model, texts)
    with torch.no_grad():
        a, b = merged.model("sent", batch), unmerged.model("sent", batch)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # the in-training model (unmerged, same weights as `last`) agrees as well
    last = load_run(trained["run"], checkpoint="last")
    live = trained["model"].eval()
    with torch.no_grad():
        torch.testing.assert_close(last.model("sent", batch), live("sent", batch), atol=1e-5, rtol=0)


def test_predictor_answers_like_training(trained: dict[str, Any]) -> None:
    import polytask

    meta = ckpt.load_meta(trained["run"] / "checkpoints/best")
    dev = [json.loads(line) for line in Path(trained["data"]["dev"]).read_text().splitlines()]
    preds = polytask.load(str(trained["run"])).predict([r["text"] for r in dev])
    accuracy = sum(p["label"] == r["label"] for p, r in zip(preds, dev, strict=True)) / len(dev)
    assert accuracy == meta["metrics"]["sent/accuracy"]


def test_export_hf_writes_a_plain_merged_model(trained: dict[str, Any], tmp_path: Path) -> None:
    from transformers import AutoModel

    out = export_hf(trained["run"], tmp_path / "hf")
    assert not [k for k in load_file(str(out / "model.safetensors")) if "lora" in k]
    exported = AutoModel.from_pretrained(out).eval()
    merged = load_run(trained["run"]).model
    unmerged = load_run(trained["run"], merge=False).model
    batch = batch_of(merged, [t for t, _ in toy_texts(4, seed=3)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        got = exported(**inputs).last_hidden_state  # (B, T, H)
        torch.testing.assert_close(got, merged.encoder.model(**inputs).last_hidden_state, atol=1e-6, rtol=0)
        torch.testing.assert_close(got, unmerged.encoder.model(**inputs).last_hidden_state, atol=1e-5, rtol=0)


def test_missing_or_wrong_base_encoder_errors(trained: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"this lora run saved only part of its weights; its base encoder "
                                              r"'.*nowhere' \(encoder.name_or_path\) cannot be loaded .*Put the base "
                                              r"model back there, or pass load_run\(..., base_encoder="):
        load_run(trained["run"], base_encoder=str(tmp_path / "nowhere"))

    from transformers import AutoTokenizer, BertConfig, BertModel

    other = tmp_path / "other_bert"  # same tokenizer, another width
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128)
    BertModel(config, add_pooling_layer=False).save_pretrained(other)
    AutoTokenizer.from_pretrained(trained["run"] / "encoder").save_pretrained(other)
    with pytest.raises(CheckpointError, match=r"the saved weights do not fit the model built from '.*other_bert'.*"
                                              r"the base model must be the one the run was trained from"):
        load_run(trained["run"], base_encoder=str(other))


def test_starting_encoder_from_a_lora_run_is_its_merged_encoder(trained: dict[str, Any], tmp_path: Path) -> None:
    # transfer.init_from a LoRA run: its checkpoint has no base weights; the trained encoder is
    # the base + merged adapters.
    raw = {**trained["raw"], "output_dir": str(tmp_path / "next"), "transfer": {"init_from": str(trained["run"])}}
    encoder = starting_encoder(parse_config(raw))[0].eval()
    reference = load_run(trained["run"], merge=False).model.encoder
    assert not [n for n, _ in encoder.named_parameters() if ".lora_" in n]
    batch = batch_of(load_run(trained["run"]).model, ["good fun film", "a dull plot"])
    with torch.no_grad():
        torch.testing.assert_close(encoder(**batch).pooled, reference(**batch).pooled, atol=1e-5, rtol=0)


def test_training_from_a_lora_run_starts_at_its_merged_encoder(trained: dict[str, Any], tmp_path: Path) -> None:
    raw = {**trained["raw"], "output_dir": str(tmp_path / "next"),
           "transfer": {"init_from": str(trained["run"]), "strategy": "freeze"}}
    raw["train"] = {**raw["train"], "max_steps": 1}
    train(parse_config(raw))
    report = json.loads((tmp_path / "next/init_from.json").read_text())
    encoder_keys = [k for k in load_run(tmp_path / "next").model.state_dict() if k.startswith("encoder.")]
    assert sorted(report["loaded"]) == sorted(encoder_keys)  # every encoder tensor came from the source
    assert report["skipped"] and all(not k.startswith("encoder.") for k in report["skipped"])
    assert not [k for k in report["new"] if k.startswith("encoder.")]
    # Frozen: the new run's encoder is still the source's merged encoder.
    batch = batch_of(load_run(trained["run"]).model, ["good fun film", "a dull plot"])
    with torch.no_grad():
        torch.testing.assert_close(load_run(tmp_path / "next").model.encoder.eval()(**batch).pooled,
                                   load_run(trained["run"]).model.encoder(**batch).pooled, atol=1e-5, rtol=0)


def test_resume_equals_uninterrupted(trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = ckpt.load_model_state(trained["run"] / "checkpoints/last")
    original = tlog.Progress.update

    def interrupt(self, step, **kw):  # noqa: ANN001, ANN003, ANN202
        original(self, step, **kw)
        if step == 3:  # mid-epoch
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    monkeypatch.setattr(tlog.Progress, "update", interrupt)
    raw = {**trained["raw"], "output_dir": str(tmp_path / "b")}
    first = train(parse_config(raw))
    assert first.interrupted and first.steps == 3
    monkeypatch.setattr(tlog.Progress, "update", original)
    second = train(parse_config(raw), resume=True)
    assert not second.interrupted and second.steps == STEPS_PER_EPOCH * EPOCHS
    got = ckpt.load_model_state(tmp_path / "b/checkpoints/last")
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v), k
    a_dev = [r for r in read_metrics(trained["run"]) if r["split"] == "dev"][-1]
    b_dev = [r for r in read_metrics(tmp_path / "b") if r["split"] == "dev"][-1]
    assert a_dev["sent/loss"] == b_dev["sent/loss"]


# --- the shipped example, and the real MiniLM ---------------------------------------------------


def test_example_config_loads_and_passes_the_lora_checks() -> None:
    cfg = load_config(REPO / "examples/lora_sst2.yaml")
    assert cfg.transfer.strategy == "lora"
    Lora.check_config(cfg)
    (member,) = build_strategies(cfg.transfer).members
    assert isinstance(member, Lora) and member.options.r == 8


@pytest.mark.integration
def test_real_minilm_on_sst2(shared_data: Path, tmp_path: Path) -> None:
    """All-MiniLM-L6-v2 on 32 SST-2 sentences: adapters-only checkpoint size, load, export."""
    data = {"train": str(shared_data / "sst2_sent/train.txt"), "dev": str(shared_data / "sst2_sent/dev.txt"),
            "format": "label_text", "label_map": {"0": "neg", "1": "pos"}, "limit": 32}
    raw = {
        "name": "lora_sst2_small",
        "tasks": [{"name": "sst2", "type": "classification", "data": data, "max_length": 64}],
        "transfer": {"strategy": "lora"},
        "train": {"max_steps": 2, "batch_size": 16, "lr": 1e-3, "eval_every": 2, "progress": False},
    }
    result = train(parse_config(raw), output_dir=tmp_path / "run")
    assert result.steps == 2
    size = (tmp_path / "run/checkpoints/best/model.safetensors").stat().st_size
    assert size < 3_000_000, size  # 0.33 M adapter weights + a head, in float32: ~1.3 MB (full: ~90 MB)
    merged = load_run(tmp_path / "run")
    unmerged = load_run(tmp_path / "run", merge=False)
    batch = batch_of(merged.model, ["a gorgeous, witty film", "it never finds its footing"])
    with torch.no_grad():
        torch.testing.assert_close(merged.model("sst2", batch), unmerged.model("sst2", batch), atol=1e-5, rtol=0)
    out = export_hf(tmp_path / "run", tmp_path / "hf")
    assert (out / "model.safetensors").stat().st_size > 80_000_000  # a whole merged MiniLM
