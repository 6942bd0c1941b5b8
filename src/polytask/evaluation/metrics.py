"""Metric functions on plain Python lists, calling scikit-learn, scipy and seqeval directly.

The ``evaluate`` library is not used: it fetches metric scripts from a hub and fails offline.
Every function returns a Python float (JSON-ready) and raises ValueError on empty or
mismatched inputs, which are programming errors rather than bad data. Scores that are undefined
(F1 with nothing gold and nothing predicted, a correlation with a constant side) are 0, never NaN:
NaN would break model selection and strict JSON.
"""

from __future__ import annotations

import math
import re
import string
import warnings
from collections import Counter
from collections.abc import Sequence

from scipy import stats
from seqeval import metrics as seqeval_metrics
from sklearn import metrics as sk_metrics
from sklearn.preprocessing import MultiLabelBinarizer


def _check(y_true: Sequence, y_pred: Sequence) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold values but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("nothing to score: no examples")


# ---- single-label classification --------------------------------------------------------------
def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Fraction of predictions equal to the gold label (``sklearn.metrics.accuracy_score``)."""
    _check(y_true, y_pred)
    return float(sk_metrics.accuracy_score(y_true, y_pred))


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over the classes present in gold or predictions.

    Classes absent from both contribute nothing (scikit-learn's default label set); a class
    predicted but never gold (or the reverse) scores F1 0.
    """
    _check(y_true, y_pred)
    return float(sk_metrics.f1_score(y_true, y_pred, average="macro", zero_division=0))


def mcc(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Matthews correlation coefficient, multi-class form (Gorodkin 2004); 0 when undefined."""
    _check(y_true, y_pred)
    return float(sk_metrics.matthews_corrcoef(y_true, y_pred))


# ---- multi-label classification ---------------------------------------------------------------
def _binarize(
    y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], labels: Sequence[str] | None
) -> tuple:
    classes = list(labels) if labels is not None else sorted({x for row in (*y_true, *y_pred) for x in row})
    mlb = MultiLabelBinarizer(classes=classes)
    with warnings.catch_warnings():
        # A label outside ``classes`` is ignored with a warning; the tasks check labels earlier.
        warnings.simplefilter("ignore")
        return mlb.fit_transform(y_true), mlb.transform(y_pred)  # (N, C), (N, C)


def multilabel_micro_f1(
    y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], labels: Sequence[str] | None = None
) -> float:
    """F1 over all (example, label) decisions pooled together.

    Args:
        y_true: gold label lists, one per example.
        y_pred: predicted label lists.
        labels: the label set (default: every label seen in gold or predictions).
    """
    _check(y_true, y_pred)
    t, p = _binarize(y_true, y_pred, labels)
    return float(sk_metrics.f1_score(t, p, average="micro", zero_division=0))


def multilabel_macro_f1(
    y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], labels: Sequence[str] | None = None
) -> float:
    """Unweighted mean of per-label F1 over labels present in gold or predictions.

    Labels that neither gold nor predictions use are left out, as in ``macro_f1``; otherwise a
    rare label missing from a small dev set would count as F1 0.
    """
    _check(y_true, y_pred)
    t, p = _binarize(y_true, y_pred, labels)
    used = ((t + p).sum(axis=0) > 0).nonzero()[0].tolist()
    if not used:
        return 0.0  # no label used at all: 0, like scikit-learn's and seqeval's zero_division=0
    return float(sk_metrics.f1_score(t, p, average="macro", labels=used, zero_division=0))


def subset_accuracy(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> float:
    """Fraction of examples whose predicted label set equals the gold set exactly."""
    _check(y_true, y_pred)
    return sum(set(t) == set(p) for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


# ---- regression -------------------------------------------------------------------------------
def _correlation(fn, y_true: Sequence[float], y_pred: Sequence[float]) -> float:  # noqa: ANN001
    _check(y_true, y_pred)
    # Undefined for fewer than two points or a constant side; report 0 ("no correlation") so
    # model selection and JSON logs get a number, not NaN.
    if len(y_true) < 2 or len(set(y_true)) < 2 or len(set(y_pred)) < 2:
        return 0.0
    value = float(fn(y_true, y_pred)[0])
    return 0.0 if math.isnan(value) else value


def pearson(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Pearson's r (``scipy.stats.pearsonr``); 0 where undefined (constant input)."""
    return _correlation(stats.pearsonr, y_true, y_pred)


def spearman(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Spearman's rank correlation (``scipy.stats.spearmanr``); 0 where undefined."""
    return _correlation(stats.spearmanr, y_true, y_pred)


def mse(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Mean squared error."""
    _check(y_true, y_pred)
    return float(sk_metrics.mean_squared_error(y_true, y_pred))


def mae(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Mean absolute error."""
    _check(y_true, y_pred)
    return float(sk_metrics.mean_absolute_error(y_true, y_pred))


# ---- sequence labelling -----------------------------------------------------------------------
def entity_scores(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 with seqeval (Nakayama 2018).

    seqeval's default mode is used, which reproduces the CoNLL-2000 ``conlleval`` script: an
    entity is a maximal run of B-/I- tags of one type, an I- tag that follows O or another type
    starts a new entity, and a predicted entity counts only when its type and both boundaries
    match a gold entity. With no entities at all the scores are 0 (seqeval's ``zero_division=0``).

    Args:
        y_true: gold tag sequences, one per sentence.
        y_pred: predicted tag sequences of the same lengths.
    Returns:
        ``{"precision", "recall", "f1"}``.
    """
    _check(y_true, y_pred)
    for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} gold tags but {len(p)} predicted tags")
    y_true, y_pred = [list(t) for t in y_true], [list(p) for p in y_pred]
    return {
        "precision": float(seqeval_metrics.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(seqeval_metrics.recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(seqeval_metrics.f1_score(y_true, y_pred, zero_division=0)),
    }


def token_accuracy(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> float:
    """Fraction of words (over all sentences) whose predicted tag equals the gold tag."""
    _check(y_true, y_pred)
    total = correct = 0
    for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} gold tags but {len(p)} predicted tags")
        total += len(t)
        correct += sum(a == b for a, b in zip(t, p, strict=True))
    return correct / total if total else 0.0


# ---- extractive question answering (SQuAD) ------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower case, punctuation removed, the articles a / an /
    the removed, whitespace collapsed (Rajpurkar et al., EMNLP 2016; the v1.1 and v2.0
    evaluation scripts normalise the same way)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_exact_match(gold: str, pred: str) -> float:
    """1.0 when the normalised answers are equal, else 0.0."""
    return float(normalize_answer(gold) == normalize_answer(pred))


def answer_f1(gold: str, pred: str) -> float:
    """Token-overlap F1 of the normalised answers (bag of words, counts clipped). An empty
    answer (an unanswerable question, or no prediction) scores 1.0 only against another empty
    one, as in the v2.0 script."""
    g, p = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not g or not p:
        return float(g == p)
    common = sum((Counter(g) & Counter(p)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_scores(golds: Sequence[Sequence[str]], preds: Sequence[str]) -> dict[str, float]:
    """Exact match and F1 in percent, each question scored against its best gold answer.

    Args:
        golds: each question's gold answers (``[""]`` for an unanswerable question).
        preds: each question's predicted answer (``""`` for "no answer").
    Returns:
        ``{"exact_match", "f1"}`` on a 0-100 scale, as the official script reports them.
    """
    _check(golds, preds)
    em = f1 = 0.0
    for gold, pred in zip(golds, preds, strict=True):
        options = list(gold) or [""]
        em += max(answer_exact_match(g, pred) for g in options)
        f1 += max(answer_f1(g, pred) for g in options)
    return {"exact_match": 100.0 * em / len(preds), "f1": 100.0 * f1 / len(preds)}


# ---- generated text -------------------------------------------------------------------------
def _generation_package(module: str, package: str) -> object:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        from polytask.errors import ConfigError

        raise ConfigError(f"scoring generated text needs the package {package} (pip install "
                          f"'polytask[generation]' or pip install {package})") from exc


def bleu_chrf(references: Sequence[str], hypotheses: Sequence[str], lowercase: bool = False) -> dict[str, float]:
    """Corpus sacreBLEU (13a tokenisation, one reference) and chrF, both 0-100.

    Post, "A Call for Clarity in Reporting BLEU Scores", WMT 2018; Popovic, "chrF", WMT 2015.
    ``lowercase`` scores case-insensitively (what an uncased vocabulary can be compared on).
    """
    _check(references, hypotheses)
    sacrebleu = _generation_package("sacrebleu", "sacrebleu")
    refs = [list(references)]
    bleu = sacrebleu.metrics.BLEU(lowercase=lowercase).corpus_score(list(hypotheses), refs)  # type: ignore[attr-defined]
    chrf = sacrebleu.metrics.CHRF(lowercase=lowercase).corpus_score(list(hypotheses), refs)  # type: ignore[attr-defined]
    return {"bleu": float(bleu.score), "chrf": float(chrf.score)}


def rouge(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures (0-100) with Porter stemming, as the ``rouge-score`` package
    computes them (Lin, "ROUGE", ACL workshop 2004)."""
    _check(references, hypotheses)
    scorer_mod = _generation_package("rouge_score.rouge_scorer", "rouge-score")
    scorer = scorer_mod.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)  # type: ignore[attr-defined]
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for ref, hyp in zip(references, hypotheses, strict=True):
        scores = scorer.score(ref, hyp)
        for k in sums:
            sums[k] += scores[k].fmeasure
    return {k: 100.0 * v / len(references) for k, v in sums.items()}
