"""``polytask export hf`` / ``push``: pipeline-ready folders for every task type, sentence-transformers
files, model cards, the old ``export-hf`` name, and an offline push that fails at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import polytask
from polytask.cli import app
from polytask.errors import CheckpointError
from polytask.export.hf import export_hf, export_hf_folders
from polytask.export.push import HubError, push_run
from tests.unit.export_runs import train_run, write_all_task_data

runner = CliRunner()
TEXTS = ["great fun movie", "the awful plot and a boring dull film story", "Alice liked the movie"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("export_hf")
    data = write_all_task_data(tmp / "data")
    return {
        "multi": train_run(tiny_encoder_dir, data, tmp / "multi", ["sent", "tags", "score", "ner"]),
        "single": train_run(tiny_encoder_dir, data, tmp / "single", ["sent"]),
        "cls": train_run(tiny_encoder_dir, data, tmp / "cls", ["sent"], encoder={"pooling": "cls"}),
        "tmp": tmp,
    }


@pytest.fixture(scope="module")
def multi(runs: dict[str, Path]):
    return export_hf_folders(runs["multi"], runs["tmp"] / "hf-multi")


def test_every_task_type_gives_polytasks_predictions_through_pipeline(runs, multi) -> None:
    from transformers import pipeline

    predictor = polytask.load(str(runs["multi"]), device="cpu")
    ours = predictor.predict(TEXTS)
    assert set(multi.tasks) == {"sent", "tags", "score", "ner"} and multi.remote_code == ["sent", "tags", "score"]

    clf = pipeline("text-classification", model=str(multi.tasks["sent"]), trust_remote_code=True, top_k=None)
    for got, want in zip(clf(TEXTS, truncation=True), ours, strict=True):
        assert {d["label"]: d["score"] for d in got} == pytest.approx(want["sent"]["probs"], abs=1e-5)
        assert got[0]["label"] == want["sent"]["label"]

    tagger = pipeline("text-classification", model=str(multi.tasks["tags"]), trust_remote_code=True, top_k=None)
    for got, want in zip(tagger(TEXTS, truncation=True), ours, strict=True):
        assert {d["label"]: d["score"] for d in got} == pytest.approx(want["tags"]["probs"], abs=1e-5)
        assert sorted(d["label"] for d in got if d["score"] >= 0.5) == sorted(want["tags"]["labels"])

    scorer = pipeline("text-classification", model=str(multi.tasks["score"]), trust_remote_code=True, function_to_apply="none")
    for got, want in zip(scorer(TEXTS, truncation=True), ours, strict=True):
        assert got["label"] == "score" and got["score"] == pytest.approx(want["score"]["score"], abs=1e-5)

    ner = pipeline("token-classification", model=str(multi.tasks["ner"]), aggregation_strategy="first")
    for text, got, want in zip(TEXTS, ner(TEXTS), ours, strict=True):
        spans = want["ner"]["entities"]
        assert [(d["entity_group"], d["start"], d["end"]) for d in got] == [(s["entity"], s["start"], s["end"]) for s in spans]
        assert [float(d["score"]) for d in got] == pytest.approx([s["score"] for s in spans], abs=1e-5)
        assert all(s["text"] == text[s["start"]:s["end"]] for s in spans)


def test_config_names_labels_and_problem_types(multi) -> None:
    configs = {n: json.loads((p / "config.json").read_text()) for n, p in multi.tasks.items()}
    assert configs["sent"]["id2label"] == {"0": "neg", "1": "pos"} and configs["sent"]["label2id"] == {"neg": 0, "pos": 1}
    assert configs["sent"]["problem_type"] == "single_label_classification"
    assert configs["tags"]["problem_type"] == "multi_label_classification"
    assert configs["score"]["problem_type"] == "regression" and configs["score"]["id2label"] == {"0": "score"}
    assert configs["ner"]["architectures"] == ["BertForTokenClassification"]  # standard, no remote code
    assert not (multi.tasks["ner"] / "modeling_polytask.py").exists()
    assert configs["sent"]["auto_map"] == {"AutoModelForSequenceClassification": "modeling_polytask.PolytaskForSequenceClassification"}
    assert max(multi.max_abs_diff.values()) < 1e-5


def test_cls_pooling_run_matches_too(runs) -> None:
    from transformers import pipeline

    out = export_hf_folders(runs["cls"], runs["tmp"] / "hf-cls")
    ours = polytask.load(str(runs["cls"]), device="cpu").predict(TEXTS)
    clf = pipeline("text-classification", model=str(out.directory), trust_remote_code=True, top_k=None)
    for got, want in zip(clf(TEXTS, truncation=True), ours, strict=True):
        assert {d["label"]: d["score"] for d in got} == pytest.approx(want["probs"], abs=1e-5)
    assert json.loads((out.directory / "1_Pooling/config.json").read_text())["pooling_mode_cls_token"] is True


@pytest.mark.parametrize("which", ["multi", "single"])
def test_sentence_transformers_loads_polytasks_pooled_vectors(runs, multi, which: str) -> None:
    from sentence_transformers import SentenceTransformer

    folder = multi.encoder_dir if which == "multi" else export_hf(runs["single"], runs["tmp"] / "hf-single")
    st = SentenceTransformer(str(folder), device="cpu")
    got = st.encode(TEXTS, convert_to_tensor=True)  # (B, H)
    predictor = polytask.load(str(runs[which]), device="cpu")
    batch = predictor.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = predictor.model.encoder(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).pooled
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert json.loads((Path(folder) / "modules.json").read_text())[1]["path"] == "1_Pooling"


def test_model_card_names_tasks_labels_metrics_and_versions(runs, multi) -> None:
    import transformers

    meta = json.loads((runs["multi"] / "checkpoints/best/meta.json").read_text())
    card = (multi.tasks["sent"] / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert "pipeline_tag: text-classification" in card
    assert "| sent | classification | single_label_classification | neg, pos |" in card
    assert f"| sent | dev | accuracy | {meta['metrics']['sent/accuracy']:.4f} |" in card
    assert f"| sent | dev | macro_f1 | {meta['metrics']['sent/macro_f1']:.4f} |" in card
    assert f"- transformers {transformers.__version__}" in card
    assert "## Intended use" in card and "## Limitations" in card and "trust_remote_code=True" in card
    assert "train: `" in card and "## Training config" in card
    ner_card = (multi.tasks["ner"] / "README.md").read_text()
    assert "pipeline_tag: token-classification" in ner_card and "| ner | dev | f1 |" in ner_card
    enc_card = (multi.encoder_dir / "README.md").read_text()
    assert "SentenceTransformer" in enc_card and "| tags | multilabel | multi_label_classification |" in enc_card


def test_word_encoder_run_is_a_clear_error(runs, tmp_path: Path) -> None:
    import yaml

    from polytask.config.loader import parse_config
    from polytask.training.loop import train

    raw = yaml.safe_load((runs["single"] / "config.yaml").read_text())
    raw["encoder"] = {"type": "bilstm", "options": {"embedding_dim": 8, "hidden_size": 6, "num_layers": 1}}
    raw["output_dir"] = None
    train(parse_config(raw), output_dir=tmp_path / "bilstm")
    with pytest.raises(CheckpointError, match=(
            r"only transformer runs export to transformers; this run's encoder is 'bilstm' \(a polytask word "
            r"encoder with no transformers architecture\). Serve it with polytask.load\(...\) or `polytask export onnx`")):
        export_hf(tmp_path / "bilstm", tmp_path / "out")
    res = runner.invoke(app, ["export", "hf", str(tmp_path / "bilstm"), str(tmp_path / "out")])
    assert res.exit_code == 2 and "only transformer runs export to transformers" in res.output


def test_cli_export_hf_and_its_old_name(runs) -> None:
    out = runs["tmp"] / "hf-cli"
    res = runner.invoke(app, ["export", "hf", str(runs["single"]), str(out)])
    assert res.exit_code == 0, res.output
    assert f'pipeline("text-classification", model="{out}", trust_remote_code=True)' in res.output
    assert "trust_remote_code: polytask pools by the mean of token states" in res.output
    res = runner.invoke(app, ["export-hf", str(runs["single"]), str(runs["tmp"] / "hf-old")])
    assert res.exit_code == 0 and (runs["tmp"] / "hf-old/config.json").is_file()
    res = runner.invoke(app, ["export-hf", "--help"])
    assert "Old name of" in res.output
    res = runner.invoke(app, ["export", "hf", str(runs["tmp"] / "nope"), str(out)])
    assert res.exit_code == 2 and "no such run directory" in res.output


def test_push_offline_fails_at_once(runs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(HubError, match=r"cannot push: HF_HUB_OFFLINE=1 is set \(offline mode\)"):
        push_run(runs["single"], "me/toy")
    assert time.perf_counter() - start < 1.0
    res = runner.invoke(app, ["push", str(runs["single"]), "me/toy"])
    assert res.exit_code == 2 and "cannot push: HF_HUB_OFFLINE=1 is set" in res.output

    from tests.conftest import go_online_without_a_route

    go_online_without_a_route(monkeypatch)
    with pytest.raises(HubError, match=r"cannot push: no route to huggingface.co:443 .*Network is unreachable"):
        push_run(runs["single"], "me/toy")
    with pytest.raises(HubError, match=r"repository id 'toy' must look like user/name"):
        push_run(runs["single"], "toy")


def test_push_dry_run_shows_the_folder_it_would_upload(runs) -> None:
    folder = runs["tmp"] / "push"
    res = runner.invoke(app, ["push", str(runs["multi"]), "me/toy", "--folder", str(folder), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "would go to me/toy" in res.output
    files = push_run(runs["multi"], "me/toy", folder=folder, dry_run=True).files
    for f in ("encoder/modules.json", "encoder/1_Pooling/config.json", "encoder/README.md", "sent/README.md",
              "sent/modeling_polytask.py", "sent/model.safetensors", "ner/config.json", "ner/tokenizer.json",
              "polytask_export.json"):
        assert f in files and f"  {f}" in res.output


@pytest.mark.integration
def test_minilm_run_exports_with_exact_pipeline_parity(tmp_path: Path) -> None:
    """The packaged all-MiniLM-L6-v2 (6 layers, real tokenizer), a few steps on toy data."""
    from transformers import pipeline

    data = write_all_task_data(tmp_path / "data")
    run = train_run("default", data, tmp_path / "run", ["sent", "ner"], max_steps=4)
    out = export_hf_folders(run, tmp_path / "hf")
    texts = ["A gorgeous, witty, seductive movie.", "It never finds its footing, and Alice left early."]
    ours = polytask.load(str(run), device="cpu").predict(texts)
    clf = pipeline("text-classification", model=str(out.tasks["sent"]), trust_remote_code=True, top_k=None)
    for got, want in zip(clf(texts, truncation=True), ours, strict=True):
        assert {d["label"]: d["score"] for d in got} == pytest.approx(want["sent"]["probs"], abs=1e-5)
    # Words as polytask reads them: whitespace-separated (the pipeline also splits punctuation off)
    words = ["A gorgeous , witty , seductive movie .", "It never finds its footing , and Alice left early ."]
    ours = polytask.load(str(run), device="cpu").predict(words, task="ner")
    ner = pipeline("token-classification", model=str(out.tasks["ner"]), aggregation_strategy="first")
    for got, want in zip(ner(words), ours, strict=True):
        assert [(d["entity_group"], d["start"], d["end"]) for d in got] == [
            (s["entity"], s["start"], s["end"]) for s in want["entities"]]
        assert [float(d["score"]) for d in got] == pytest.approx([s["score"] for s in want["entities"]], abs=1e-5)
