"""Tasks on the same inputs share the pass (``multitask.shared_inputs``); heads that read a lower
encoder layer (``tasks[].from_layer``)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from polytask.config import parse_config
from polytask.encoders.base import EncoderOutput, mean_pool
from polytask.errors import ConfigError
from polytask.multitask.shared import collate_stream, find_groups
from polytask.training import loop, schedule
from polytask.training.run import build_run
from tests.unit.toy import FILL, toy_config, write_toy_jsonl

NAMES = ["Alice", "Bob", "Carol", "Dave"]


def _sentences(n: int, seed: int) -> list[tuple[list[str], list[str], str]]:
    """Words, their tags (names are PER) and a sentence label (whether a name comes first)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.sample(FILL, 3)
        pos = rng.randint(0, 3)
        words = words[:pos] + [rng.choice(NAMES)] + words[pos:]
        out.append((words, ["B-PER" if j == pos else "O" for j in range(len(words))], "first" if pos == 0 else "later"))
    return out


def _write(directory: Path, n_train: int = 40, n_ner: int | None = None) -> dict[str, dict[str, str]]:
    """The same sentences as a sentence task (jsonl) and a tagging task (CoNLL); the tagging task
    labels only the first ``n_ner`` training sentences."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, dict[str, str]] = {"sent": {}, "ner": {}}
    for split, n, seed in (("train", n_train, 1), ("dev", 12, 2)):
        rows = _sentences(n, seed)
        sent = directory / f"{split}.jsonl"
        sent.write_text("".join(json.dumps({"text": " ".join(w), "label": y}) + "\n" for w, _t, y in rows))
        tagged = rows[:n_ner] if split == "train" and n_ner is not None else rows
        ner = directory / f"{split}.conll"
        ner.write_text("".join("".join(f"{w}\t{t}\n" for w, t in zip(ws, ts, strict=True)) + "\n"
                               for ws, ts, _y in tagged))
        paths["sent"][split], paths["ner"][split] = str(sent), str(ner)
    return paths


def _config(tmp_path: Path, encoder: Path, multitask: dict | None = None, n_ner: int | None = None, **train_kw):  # noqa: ANN003, ANN202
    paths = _write(tmp_path / "data", n_ner=n_ner)
    raw = toy_config(encoder, paths["sent"], tmp_path / "run", **train_kw)
    raw["encoder"]["dropout"] = 0.0
    raw["tasks"].append({"name": "ner", "type": "token_classification",
                         "data": {"train": paths["ner"]["train"], "dev": paths["ner"]["dev"]}})
    raw["multitask"] = {"shared_inputs": ["sent", "ner"], **(multitask or {})}
    return raw


def _single_losses(run, stream, idx: list[int]) -> dict[str, torch.Tensor]:  # noqa: ANN001
    """Each task's loss on its own collated batch of the rows of ``idx`` it labels."""
    out = {}
    for t in stream.tasks:
        own = [stream.rows[r][t] for r in idx if t in stream.rows[r]]
        if own:
            batch = run.tasks[t].collate([run.feats[t]["train"][i] for i in own], run.pad_id)
            out[t] = run.tasks[t].loss(run.unwrapped(t, batch), batch)
    return out


class _Counting:
    def __init__(self, encoder: torch.nn.Module):
        self.calls = 0
        encoder.register_forward_hook(self)

    def __call__(self, *args) -> None:  # noqa: ANN002
        self.calls += 1


def test_a_shared_pair_runs_the_encoder_once_and_sums_the_losses(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    run = build_run(parse_config(_config(tmp_path, tiny_encoder_dir)))
    try:
        assert list(run.streams) == ["sent+ner"] and list(run.sched_feats) == ["sent+ner"]
        stream = run.streams["sent+ner"]
        assert stream.tasks == ["ner", "sent"]  # token task first: its subwords are the inputs
        assert len(stream.rows) == 40 and all(set(r) == {"sent", "ner"} for r in stream.rows)
        group = schedule.epoch_batches(run.sched_feats, run.cfg.train, 0)[:1]
        counter = _Counting(run.unwrapped.encoder)
        objectives: list[torch.Tensor] = []
        backward = run.engine.backward
        run.engine.backward = lambda x: (objectives.append(x.detach()), backward(x))[1]
        run.unwrapped.eval()  # no dropout: the same numbers in both passes
        loop.train_step(run, group)
        assert counter.calls == 1  # one encoder pass for both tasks' heads and losses
        assert len(objectives) == 1  # one backward of the summed losses
        # The step changed the weights; recompute with the pre-step ones is not possible, so
        # compare the loss of a fresh batch: shared pass == sum of the single-task losses.
        idx = group[0][1]
        with torch.no_grad():
            batch = collate_stream(stream, idx, run.tasks, run.feats, run.pad_id)
            shared = loop._stream_losses(run, batch)
            single = _single_losses(run, stream, idx)
            assert set(shared) == {"sent", "ner"}
            for t in shared:
                torch.testing.assert_close(shared[t], single[t])
            captured: list[torch.Tensor] = []
            run.engine.backward = lambda x: captured.append(x)
            step = loop._Step(run, 1)
            loop._shared_backward(run, loop._Unweighted(), shared, step)
            torch.testing.assert_close(captured[0], single["sent"] + single["ner"])
    finally:
        run.lock.release()


def test_examples_missing_a_label_count_only_for_the_other_task(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    # The tagging task labels 25 of the 40 sentences: the other 15 are rows of the sentence task only.
    run = build_run(parse_config(_config(tmp_path, tiny_encoder_dir, n_ner=25)))
    try:
        stream = run.streams["sent+ner"]
        assert len(stream.rows) == 40
        assert sum("ner" in r for r in stream.rows) == 25 and all("sent" in r for r in stream.rows)
        only_sent = [r for r, row in enumerate(stream.rows) if "ner" not in row][:4]
        mixed = only_sent[:2] + [r for r, row in enumerate(stream.rows) if "ner" in row][:3]
        run.unwrapped.eval()
        with torch.no_grad():
            batch = collate_stream(stream, only_sent, run.tasks, run.feats, run.pad_id)
            assert set(batch["tasks"]) == {"sent"}
            losses = loop._stream_losses(run, batch)
            assert set(losses) == {"sent"}
            torch.testing.assert_close(losses["sent"], _single_losses(run, stream, only_sent)["sent"])
            batch = collate_stream(stream, mixed, run.tasks, run.feats, run.pad_id)
            assert batch["tasks"]["ner"][0].tolist() == [2, 3, 4]  # the rows it labels
            losses, single = loop._stream_losses(run, batch), _single_losses(run, stream, mixed)
            for t in ("sent", "ner"):
                torch.testing.assert_close(losses[t], single[t])
    finally:
        run.lock.release()


@pytest.mark.parametrize("multitask", [{}, {"weighting": {"type": "gradnorm"}}, {"surgery": {"type": "pcgrad"}}])
def test_shared_training_runs_with_weightings_and_surgery(tmp_path: Path, tiny_encoder_dir: Path,
                                                          multitask: dict) -> None:
    cfg = parse_config(_config(tmp_path, tiny_encoder_dir, multitask, n_ner=30, max_steps=4, batch_size=8))
    result = loop.train(cfg)
    assert result.steps == 4
    assert {"sent/accuracy", "ner/f1"} <= set(result.dev)
    losses = [r["loss"] for r in loop.read_metrics(cfg.output_dir) if r["split"] == "train"]
    assert losses and all(x == x for x in losses)  # finite (not NaN)


def test_auto_detection_joins_tasks_on_the_same_file(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    data = write_toy_jsonl(tmp_path / "d")
    raw = toy_config(tiny_encoder_dir, data, tmp_path / "run")
    raw["tasks"].append({"name": "sent2", "type": "classification", "data": {"train": data["train"]}})
    assert find_groups(parse_config(raw)) == [["sent", "sent2"]]
    raw["multitask"] = {"shared_inputs": "off"}
    assert find_groups(parse_config(raw)) == []
    other = write_toy_jsonl(tmp_path / "e")
    raw["multitask"] = {}
    raw["tasks"][1]["data"]["train"] = other["train"]
    assert find_groups(parse_config(raw)) == []  # another file: two datasets, as before
    raw["multitask"] = {"shared_inputs": ["sent", "nope"]}
    with pytest.raises(ConfigError, match="not one of: sent, sent2"):
        find_groups(parse_config(raw))


def test_from_layer_head_reads_the_stated_transformer_layer(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    raw = _config(tmp_path, tiny_encoder_dir, {"shared_inputs": "off"})
    raw["tasks"][1]["from_layer"] = 1
    run = build_run(parse_config(raw))
    try:
        model = run.unwrapped.eval()
        feats = run.feats["ner"]["train"][:4]
        batch = run.tasks["ner"].collate(feats, run.pad_id)
        with torch.no_grad():
            hidden = model.encoder.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                         output_hidden_states=True).hidden_states
            low = EncoderOutput(hidden[1], batch["attention_mask"], mean_pool(hidden[1], batch["attention_mask"]))
            top = EncoderOutput(hidden[2], batch["attention_mask"], mean_pool(hidden[2], batch["attention_mask"]))
            got = model("ner", batch)
            torch.testing.assert_close(got, model.heads["ner"](low))
            assert not torch.allclose(got, model.heads["ner"](top))
            # The sentence task still reads the top layer.
            torch.testing.assert_close(model("sent", batch), model.heads["sent"](top))
    finally:
        run.lock.release()
    raw["tasks"][1]["from_layer"] = 3
    with pytest.raises(ConfigError, match="from_layer is 3, but the encoder has 2 layer"):
        build_run(parse_config(raw))


def test_from_layer_head_reads_the_stated_bilstm_layer(tmp_path: Path) -> None:
    from polytask.config.schema import EncoderConfig
    from polytask.encoders import build_encoder

    texts = [" ".join(w) for w, _t, _y in _sentences(20, 1)]
    enc = build_encoder(EncoderConfig(type="bilstm", options={"embedding_dim": 8, "hidden_size": 6, "num_layers": 3}),
                        texts=lambda: iter(texts)).eval()
    tok = enc.tokenizer(texts[:5], padding=True, return_tensors="pt")
    ids, mask = tok["input_ids"], tok["attention_mask"]
    with torch.no_grad():
        plain = enc(ids, mask)
        enc.keep_layers = True
        layered = enc(ids, mask)
        torch.testing.assert_close(layered.token_states, plain.token_states)  # same network, layer by layer
        torch.testing.assert_close(layered.pooled, plain.pooled)
        assert len(layered.layers) == 4
        # Layer 1 is the first LSTM layer alone: a one-layer LSTM with the l0 weights.
        one = torch.nn.LSTM(8, 6, bidirectional=True, batch_first=True)
        one.load_state_dict({k: v for k, v in enc.lstm.state_dict().items() if "_l0" in k})
        packed = torch.nn.utils.rnn.pack_padded_sequence(enc.embed(ids, mask), mask.sum(1), batch_first=True,
                                                         enforce_sorted=False)
        first, _ = torch.nn.utils.rnn.pad_packed_sequence(one(packed)[0], batch_first=True,
                                                          total_length=ids.shape[1])
        torch.testing.assert_close(layered.layers[1], first)
        assert not torch.allclose(layered.layers[1], layered.layers[3])


def test_refinement_starts_each_task_from_the_joint_encoder(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    from polytask.procedures.refine import refine_config
    from polytask.training import checkpoint as ckpt

    raw = _config(tmp_path, tiny_encoder_dir, {"refine": True}, max_steps=3)
    cfg = parse_config(raw)
    seen: dict[str, dict[str, torch.Tensor]] = {}
    real = build_run

    def spy(sub, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        run = real(sub, *a, **k)
        if sub.transfer.init_from:  # a refinement run: its encoder as it starts
            seen[sub.tasks[0].name] = {n: v.detach().clone() for n, v in run.unwrapped.encoder.state_dict().items()}
        return run

    import polytask.training.loop as L
    L.build_run, saved = spy, L.build_run
    try:
        result = loop.train(cfg)
    finally:
        L.build_run = saved
    assert set(result.refined) == {"sent", "ner"} and set(seen) == {"sent", "ner"}
    joint = ckpt.load_tensors(Path(cfg.output_dir) / "checkpoints/best/model.safetensors")
    fresh = real(refine_config(cfg, "sent", Path(tmp_path / "elsewhere")).model_copy(
        update={"transfer": cfg.transfer, "output_dir": str(tmp_path / "fresh")}))
    fresh.lock.release()
    for task, weights in seen.items():
        for name, value in weights.items():
            torch.testing.assert_close(value, joint[f"encoder.{name}"])  # the joint run's encoder
        assert any(not torch.equal(v, fresh.unwrapped.encoder.state_dict()[n]) for n, v in weights.items())
        assert len(result.refined[task]["dev"]) > 0
        assert Path(result.refined[task]["run_dir"]) == Path(cfg.output_dir) / "refine" / task
    saved_results = __import__("json").loads((Path(cfg.output_dir) / "results.json").read_text())
    assert set(saved_results["refined"]) == {"sent", "ner"}
