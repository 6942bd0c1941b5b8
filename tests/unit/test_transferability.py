"""Transferability estimates: LogME, LEEP, H-score and the probes pinned to their maths; the library
call and the CLI on tiny models built here; the refusal of a source that cannot load."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from polytask.errors import ConfigError
from polytask.transferability import ESTIMATORS, TargetFeatures
from polytask.transferability.hscore import hscore
from polytask.transferability.leep import leep
from polytask.transferability.logme import LogME
from polytask.transferability.probe import KNNProbe, LogisticProbe
from polytask.transferability.ranking import build_estimators
from tests.unit.toy import toy_config, write_toy_jsonl, write_toy_ner


# ---- LogME ----------------------------------------------------------------------------------
def direct_log_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) of Bayesian linear regression, written out with dense matrices."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f  # (D, D)
    m = beta * np.linalg.solve(a, f.T @ y)  # (D,)
    _sign, logdet = np.linalg.slogdet(a)
    return (n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
            - beta / 2 * float(np.sum((f @ m - y) ** 2)) - alpha / 2 * float(m @ m) - logdet / 2)


def maximised_evidence(f: np.ndarray, y: np.ndarray) -> float:
    """max over (alpha, beta) of the direct log evidence, by scipy, divided by N."""
    from scipy.optimize import minimize

    best = minimize(lambda v: -direct_log_evidence(f, y, math.exp(v[0]), math.exp(v[1])), x0=[0.0, 0.0],
                    method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    return -best.fun / len(y)


@pytest.mark.parametrize(("n", "d"), [(60, 5), (25, 40)])
def test_logme_regression_equals_numerical_maximisation_of_the_evidence(n: int, d: int) -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    y = f @ rng.normal(size=d) + 0.5 * rng.normal(size=n)
    ours = LogME().score(TargetFeatures(f, y, kind="regression"))
    assert ours == pytest.approx(maximised_evidence(f, y), abs=1e-4)


def test_logme_classification_is_the_mean_over_one_hot_columns() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=45)
    f = rng.normal(size=(45, 6)) + np.eye(3)[labels] @ rng.normal(size=(3, 6))
    expected = np.mean([maximised_evidence(f, (labels == c).astype(float)) for c in range(3)])
    assert LogME().score(TargetFeatures(f, labels)) == pytest.approx(expected, abs=1e-4)


def separable(noise: float, seed: int = 0) -> TargetFeatures:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], 30)
    means = 3.0 * np.eye(3, 8)  # (3, 8) one direction per class
    return TargetFeatures(means[labels] + noise * rng.normal(size=(90, 8)), labels)


def test_logme_rises_with_separable_features_and_falls_as_noise_is_added() -> None:
    scores = [LogME().score(separable(s)) for s in (0.1, 0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), scores
    rng = np.random.default_rng(0)
    random_features = TargetFeatures(rng.normal(size=(90, 8)), np.repeat([0, 1, 2], 30))
    assert LogME().score(separable(0.5)) > LogME().score(random_features)


def test_logme_centered_ignores_constant_offsets_that_plain_logme_rewards() -> None:
    rng = np.random.default_rng(2)
    f = rng.normal(size=(50, 4))
    y = f @ rng.normal(size=4) + 3.0 + 0.3 * rng.normal(size=50)  # a target with a large mean
    centered = ESTIMATORS.get("logme_centered")()
    base = centered.score(TargetFeatures(f, y, kind="regression"))
    assert centered.score(TargetFeatures(f + 5.0, y - 2.0, kind="regression")) == pytest.approx(base, abs=1e-9)
    # Without an intercept the mean must come through the features: an offset feature helps.
    plain = LogME()
    assert plain.score(TargetFeatures(f + 5.0, y, kind="regression")) > plain.score(TargetFeatures(f, y, kind="regression"))
    # Centred LogME is plain LogME on centred data, which the numerical maximisation pins.
    assert base == pytest.approx(maximised_evidence(f - f.mean(0), y - y.mean()), abs=1e-4)


# ---- LEEP -----------------------------------------------------------------------------------
def test_leep_equals_its_formula_on_a_hand_built_example() -> None:
    theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]])  # source head, 2 source classes
    y = np.array([0, 0, 1, 1])
    # P(y, z) = 1/4 sum_i theta_z(x_i) [y_i = y], P(y | z) = P(y, z) / P(z):
    joint = {(0, 0): (0.9 + 0.8) / 4, (0, 1): (0.1 + 0.2) / 4, (1, 0): (0.3 + 0.2) / 4, (1, 1): (0.7 + 0.8) / 4}
    pz = {z: joint[(0, z)] + joint[(1, z)] for z in (0, 1)}
    terms = [math.log(sum(joint[(y[i], z)] / pz[z] * theta[i, z] for z in (0, 1))) for i in range(4)]
    assert leep(theta, y, 2) == pytest.approx(sum(terms) / 4, abs=1e-12)
    # By hand: P(y=0|z=0) = 17/22, P(y=0|z=1) = 1/6, so the four likelihoods are 47/66, 43/66, 43/66, 47/66.
    by_hand = (math.log(47 / 66) + math.log(43 / 66)) / 2
    assert by_hand == pytest.approx(-0.383981, abs=1e-6)
    assert leep(theta, y, 2) == pytest.approx(by_hand, abs=1e-12)
    est = ESTIMATORS.get("leep")()
    assert est.score(TargetFeatures(np.zeros((4, 1)), y, source_probs=theta)) == pytest.approx(by_hand, abs=1e-12)


def test_leep_is_zero_for_a_head_that_already_predicts_the_target() -> None:
    y = np.array([0, 1, 1, 0])
    assert leep(np.eye(2)[y], y, 2) == pytest.approx(0.0, abs=1e-9)


def test_leep_skips_sources_without_a_head() -> None:
    why = ESTIMATORS.get("leep")().applies(TargetFeatures(np.zeros((4, 2)), np.array([0, 1, 0, 1])))
    assert why == "leep needs a source with a classifier head (a polytask run)"


# ---- H-score --------------------------------------------------------------------------------
def test_hscore_on_a_hand_computed_case() -> None:
    # Dimension 1 carries the class (class means +2 and -2, variance 5), dimension 2 is noise with
    # equal class means and no correlation with dimension 1: H = var(E[f|y]) / var(f) = 4 / 5.
    f = np.array([[1.0, 1.0], [3.0, -1.0], [-1.0, 1.0], [-3.0, -1.0]])
    y = np.array([0, 0, 1, 1])
    assert hscore(f, y, shrinkage=0.0) == pytest.approx(0.8, abs=1e-12)
    assert hscore(f[:, :1], y, shrinkage=0.0) == pytest.approx(0.8, abs=1e-12)


def test_hscore_shrinkage_blends_the_covariance_with_a_scaled_identity() -> None:
    f = np.array([[1.0, 1.0], [3.0, -1.0], [-1.0, 1.0], [-3.0, -1.0]])
    y = np.array([0, 0, 1, 1])
    # cov = diag(5, 1), mean eigenvalue 3; with shrinkage 0.5: diag(4, 2), so H = 4 / 4 = 1.
    assert hscore(f, y, shrinkage=0.5) == pytest.approx(1.0, abs=1e-12)
    assert ESTIMATORS.get("hscore")().score(separable(0.5)) > ESTIMATORS.get("hscore")().score(separable(3.0))


# ---- probes and the registry ------------------------------------------------------------------
def test_probes_score_separable_classes_perfectly_and_random_labels_near_chance() -> None:
    assert KNNProbe().score(separable(0.3)) == pytest.approx(1.0)
    assert LogisticProbe().score(separable(0.3)) == pytest.approx(1.0)
    rng = np.random.default_rng(3)
    noise = TargetFeatures(rng.normal(size=(200, 8)), rng.integers(0, 2, size=200))
    assert abs(KNNProbe().score(noise) - 0.5) < 0.15
    assert abs(LogisticProbe().score(noise) - 0.5) < 0.15


def test_classification_estimates_skip_regression_targets_with_the_reason() -> None:
    data = TargetFeatures(np.ones((6, 2)), np.arange(6.0), kind="regression")
    assert ESTIMATORS.get("hscore")().applies(data) == "hscore needs class labels (the target is regression)"
    assert ESTIMATORS.get("knn")().applies(data) == "knn needs class labels (the target is regression)"
    assert ESTIMATORS.get("logme")().applies(data) is None


def test_estimators_registry_and_option_errors() -> None:
    assert ESTIMATORS.names() == ["hscore", "knn", "leep", "logistic", "logme", "logme_centered"]
    assert build_estimators(["knn"], {"knn": {"k": 3}})["knn"].options.k == 3
    with pytest.raises(ConfigError, match="unknown transferability estimate 'logmee'"):
        build_estimators(["logmee"], None)
    with pytest.raises(ConfigError, match="options for knn, which is not among the estimates computed"):
        build_estimators(["logme"], {"knn": {"k": 3}})


# ---- the library call and the CLI on tiny models -------------------------------------------------
@pytest.fixture(scope="module")
def toy_setup(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Toy sentiment and NER data, the target experiment YAML, and a finished toy run of each."""
    from polytask.config import parse_config
    from polytask.training.loop import train

    tmp = tmp_path_factory.mktemp("transferability")
    data = write_toy_jsonl(tmp / "data")
    ner = write_toy_ner(tmp / "ner")
    raw = toy_config(tiny_encoder_dir, data, tmp / "unused", epochs=2)
    exp = tmp / "target.yaml"
    exp.write_text(yaml.safe_dump(raw))
    train(parse_config(raw | {"output_dir": str(tmp / "run_sent")}))
    ner_raw = toy_config(tiny_encoder_dir, ner, tmp / "run_ner", epochs=2)
    ner_raw["tasks"] = [{"name": "ner", "type": "token_classification", "data": {"train": ner["train"], "dev": ner["dev"]}}]
    train(parse_config(ner_raw))
    both = {**raw, "tasks": raw["tasks"] + ner_raw["tasks"]}
    both_exp = tmp / "both.yaml"
    both_exp.write_text(yaml.safe_dump(both))
    return {"exp": exp, "both": both_exp, "run_sent": str(tmp / "run_sent"), "run_ner": str(tmp / "run_ner"),
            "encoder": str(tiny_encoder_dir), "ner": ner, "tmp": tmp}


def test_library_call_ranks_sources_with_every_estimate(toy_setup: dict[str, Any]) -> None:
    import polytask

    sources = [toy_setup["encoder"], f"scratch:{toy_setup['encoder']}", "bilstm", toy_setup["run_sent"]]
    result = polytask.transferability(str(toy_setup["exp"]), sources, budget=20, seed=1)
    assert result.task == "sent" and result.task_type == "classification" and result.examples == 20
    assert sorted(r.source for r in result.sources) == sorted(sources)
    logme = [r.value("logme") for r in result.sources]
    assert logme == sorted(logme, reverse=True)  # ranked, best first
    by = {r.source: r for r in result.sources}
    assert by[toy_setup["encoder"]].dim == 32 and by["bilstm"].dim == 256  # 2 x 128 LSTM units
    assert all(r.rows == 20 for r in result.sources)
    # Only the run has a classifier head: LEEP for it, skipped with the reason for the others.
    assert by[toy_setup["run_sent"]].head == "sent" and by[toy_setup["run_sent"]].value("leep") <= 0.0
    assert by["bilstm"].estimates["leep"].skipped == "leep needs a source with a classifier head (a polytask run)"
    for r in result.sources:
        assert all(r.estimates[n].value is not None for n in ("logme", "hscore", "knn", "logistic"))
        assert all(r.estimates[n].seconds >= 0 for n in r.estimates)
    # The toy labels are keyword-separable: the run trained on them beats random weights by LogME.
    assert by[toy_setup["run_sent"]].value("logme") > by[f"scratch:{toy_setup['encoder']}"].value("logme")


def test_budget_sample_is_stratified_and_seeded(toy_setup: dict[str, Any]) -> None:
    from polytask.config import load_config
    from polytask.data.loading import load_splits
    from polytask.tasks import build_task
    from polytask.transferability.features import sample

    cfg = load_config(toy_setup["exp"])
    task = build_task(cfg.tasks[0], 64)
    train = load_splits(cfg.tasks[0].data, token_level=False)["train"]
    a, b = sample(train, task, 20, seed=4), sample(train, task, 20, seed=4)
    assert [e.text for e in a] == [e.text for e in b]
    assert sorted(e.label for e in a).count("pos") == 10
    assert [e.text for e in sample(train, task, 20, seed=5)] != [e.text for e in a]


def test_token_task_scores_one_row_per_word_with_the_run_head(toy_setup: dict[str, Any]) -> None:
    import polytask

    ner = toy_setup["ner"]
    raw = toy_config(Path(toy_setup["encoder"]), ner, toy_setup["tmp"] / "x")
    raw["tasks"] = [{"name": "ner", "type": "token_classification", "data": {"train": ner["train"], "dev": ner["dev"]}}]
    words = sum(1 for line in Path(ner["train"]).read_text().splitlines() if line.strip())
    result = polytask.transferability(raw, [toy_setup["run_ner"], toy_setup["run_sent"]])
    by = {r.source: r for r in result.sources}
    assert result.task_type == "token_classification"
    assert by[toy_setup["run_ner"]].rows == words and by[toy_setup["run_ner"]].dim == 32
    # The NER run's token head gives LEEP; the sentence run has no token head.
    assert by[toy_setup["run_ner"]].head == "ner" and by[toy_setup["run_ner"]].value("leep") is not None
    assert by[toy_setup["run_sent"]].value("leep") is None


def test_cli_prints_a_ranking_and_json(toy_setup: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from polytask.cli import app

    runner = CliRunner()
    args = ["transferability", str(toy_setup["exp"]), "--sources", toy_setup["encoder"], "bilstm",
            "--budget", "16", "--estimates", "logme,knn"]
    res = runner.invoke(app, args, terminal_width=250)
    assert res.exit_code == 0, res.output
    assert "transferability to sent (classification, 16 examples), ranked by logme" in res.output
    assert "logme (s)" in res.output and "knn (s)" in res.output and "hscore" not in res.output
    assert "bilstm" in res.output
    res = runner.invoke(app, [*args, "--json"], terminal_width=250)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["rank_by"] == "logme" and payload["estimates"] == ["logme", "knn"]
    assert {s["source"] for s in payload["sources"]} == {toy_setup["encoder"], "bilstm"}
    first, second = payload["sources"]
    assert first["estimates"]["logme"]["value"] >= second["estimates"]["logme"]["value"]


def test_cli_partners_scores_each_task_with_the_other_tasks_run(toy_setup: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from polytask.cli import app

    res = CliRunner().invoke(app, ["transferability", str(toy_setup["both"]), "--partners",
                                   f"sent={toy_setup['run_sent']}", f"ner={toy_setup['run_ner']}", "--json",
                                   "--estimates", "logme,leep"], terminal_width=250)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert sorted(payload) == ["ner", "sent"]
    assert [s["source"] for s in payload["sent"]["sources"]] == [toy_setup["run_ner"]]
    assert [s["source"] for s in payload["ner"]["sources"]] == [toy_setup["run_sent"]]


def test_cli_refuses_a_source_that_cannot_load(toy_setup: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from polytask.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["transferability", str(toy_setup["exp"]), "--sources", "./no_such_model"])
    assert res.exit_code == 2
    assert "error: source './no_such_model' cannot be loaded: no such file or folder" in res.output
    # A folder whose tokenizer cannot be built (no tokenizer files, an unknown model type).
    broken = tmp_path / "no_tokenizer"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no_such_arch"}')
    res = runner.invoke(app, ["transferability", str(toy_setup["exp"]), "--sources", "default", str(broken)],
                        terminal_width=1000)
    assert res.exit_code == 2
    line = " ".join(res.output.split())
    assert line.startswith(f"error: source '{broken}' cannot be loaded: ValueError: Couldn't instantiate the backend "
                           "tokenizer"), line
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_refuses_a_tokenizer_that_does_not_fit_the_weights(toy_setup: dict[str, Any], tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    import polytask

    folder = tmp_path / "small_vocab"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=64), add_pooling_layer=False).save_pretrained(folder)
    AutoTokenizer.from_pretrained(toy_setup["encoder"]).save_pretrained(folder)
    with pytest.raises(ConfigError) as info:
        polytask.transferability(str(toy_setup["exp"]), [str(folder)])
    assert str(info.value).startswith(
        f"source '{folder}' cannot be loaded: encoder.name_or_path: the tokenizer has 30522 tokens but the "
        "model's embeddings hold 100: tokenizer and weights do not belong together")


def test_unknown_task_and_unsupported_task_type_are_refused(toy_setup: dict[str, Any]) -> None:
    import polytask

    with pytest.raises(ConfigError, match="no task 'nope' in the experiment; its tasks are sent"):
        polytask.transferability(str(toy_setup["exp"]), ["bilstm"], task="nope")
    raw = yaml.safe_load(toy_setup["exp"].read_text())
    raw["tasks"][0]["type"] = "multilabel"
    with pytest.raises(ConfigError, match="transferability covers classification, regression, token_classification"):
        polytask.transferability(raw, ["bilstm"])


def test_estimates_go_into_a_study_report(toy_setup: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from polytask.cli import app
    from polytask.study import load_study, plan_study
    from polytask.study.report import build_report
    from polytask.study.runner import write_plan
    from tests.unit.test_study import fake_results, write_toy_study

    plan = plan_study(load_study(write_toy_study(tmp_path, Path(toy_setup["encoder"]))))
    write_plan(plan)
    fake_results(plan, lambda cell: 0.7)
    runner = CliRunner()
    args = ["transferability", str(toy_setup["exp"]), "--sources", toy_setup["encoder"], "bilstm",
            "--budget", "16", "--estimates", "logme,knn", "--study", str(plan.study_dir)]
    res = runner.invoke(app, args, terminal_width=250)
    assert res.exit_code == 0, res.output
    assert (plan.study_dir / "transferability.json").is_file()
    html, md = build_report(plan.study_dir)
    text = md.read_text()
    assert "## Transferability estimates: sent" in text
    assert "| rank | source | logme | knn | features s |" in text and "bilstm" in text
    res = runner.invoke(app, [*args[:-1], str(tmp_path / "nowhere")], terminal_width=250)
    assert res.exit_code == 2 and "no such study folder" in res.output
