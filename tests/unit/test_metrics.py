"""Metric functions against values computed by hand."""

from __future__ import annotations

import math

import pytest

from polytask.evaluation import metrics as M


# ---- single-label -----------------------------------------------------------------------------
def test_accuracy_and_macro_f1() -> None:
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    assert M.accuracy(gold, pred) == pytest.approx(3 / 5)
    # a: P=1/2 R=1/2 F1=1/2; b: P=2/3 R=1 F1=4/5; c: F1=0 -> mean 13/30.
    assert M.macro_f1(gold, pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_mcc_binary_by_formula() -> None:
    gold = ["pos", "pos", "neg", "neg"]
    pred = ["pos", "neg", "neg", "neg"]
    # Taking pos as positive: TP=1 TN=2 FP=0 FN=1 -> (1*2 - 0*1) / sqrt(1*2*2*3).
    assert M.mcc(gold, pred) == pytest.approx(2 / math.sqrt(12))
    assert M.mcc(gold, gold) == pytest.approx(1.0)
    assert M.mcc(gold, ["pos"] * 4) == 0.0  # undefined (constant prediction) -> 0


# ---- multi-label ------------------------------------------------------------------------------
GOLD_ML = [["a", "b"], ["b"], []]
PRED_ML = [["a"], ["b", "c"], []]


def test_multilabel_micro_f1() -> None:
    # TP = a@0, b@1 = 2; FP = c@1 = 1; FN = b@0 = 1 -> P = R = 2/3.
    assert M.multilabel_micro_f1(GOLD_ML, PRED_ML, ["a", "b", "c"]) == pytest.approx(2 / 3)


def test_multilabel_macro_f1_skips_unused_labels() -> None:
    # a: F1 1; b: P=1 R=1/2 F1=2/3; c: F1 0 -> 5/9. Label d is used by neither side.
    assert M.multilabel_macro_f1(GOLD_ML, PRED_ML, ["a", "b", "c"]) == pytest.approx(5 / 9)
    assert M.multilabel_macro_f1(GOLD_ML, PRED_ML, ["a", "b", "c", "d"]) == pytest.approx(5 / 9)
    assert M.multilabel_macro_f1([[]], [[]], ["a"]) == 0.0


def test_subset_accuracy_ignores_order() -> None:
    assert M.subset_accuracy(GOLD_ML, PRED_ML) == pytest.approx(1 / 3)
    assert M.subset_accuracy([["a", "b"]], [["b", "a"]]) == 1.0


# ---- regression -------------------------------------------------------------------------------
def test_pearson_spearman_mse_mae() -> None:
    gold, pred = [1.0, 2.0, 3.0], [2.0, 4.0, 7.0]
    # dx = (-1, 0, 1), dy = (-7/3, -1/3, 8/3): cov sum 5, |dx| = sqrt 2, |dy| = sqrt(114)/3.
    assert M.pearson(gold, pred) == pytest.approx(15 / math.sqrt(228))
    assert M.spearman(gold, pred) == pytest.approx(1.0)  # same ranks
    # Ranks (1,2,3) vs (3,1,2): sum d^2 = 6 -> 1 - 6*6 / (3*(9-1)) = -0.5.
    assert M.spearman(gold, [3.0, 1.0, 2.0]) == pytest.approx(-0.5)
    assert M.mse(gold, pred) == pytest.approx((1 + 4 + 16) / 3)
    assert M.mae(gold, pred) == pytest.approx(7 / 3)


def test_correlation_undefined_is_zero_not_nan() -> None:
    assert M.pearson([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == 0.0
    assert M.spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == 0.0
    assert M.pearson([1.0], [2.0]) == 0.0


# ---- sequence labelling -----------------------------------------------------------------------
def test_entity_scores_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["O", "O"]]
    # Gold entities: PER(0-1), LOC(3), ORG(0) = 3. Predicted: PER(0-1) right, LOC(3-4) wrong
    # boundary = 2. Correct 1: P = 1/2, R = 1/3, F1 = 2PR/(P+R) = 2/5.
    scores = M.entity_scores(gold, pred)
    assert scores == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4})
    # Words: 4/5 right in the first sentence, 1/2 in the second.
    assert M.token_accuracy(gold, pred) == pytest.approx(5 / 7)


def test_entity_scores_default_mode_is_conlleval_compatible() -> None:
    # conlleval reads an I- tag after O as the start of an entity, so these spans are equal;
    # seqeval's strict IOB2 mode would reject the gold I-PER start instead.
    gold = [["I-PER", "I-PER", "O"]]
    pred = [["B-PER", "I-PER", "O"]]
    assert M.entity_scores(gold, pred)["f1"] == pytest.approx(1.0)


def test_entity_scores_no_entities_is_zero() -> None:
    assert M.entity_scores([["O", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


# ---- input checks -----------------------------------------------------------------------------
def test_mismatched_and_empty_inputs() -> None:
    with pytest.raises(ValueError, match="2 gold values but 1 predictions"):
        M.accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="nothing to score"):
        M.mse([], [])
    with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1 predicted tags"):
        M.entity_scores([["O", "O"]], [["O"]])
