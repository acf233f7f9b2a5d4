"""Tests for tuneboard.evaluate.metrics: every expected number is worked out by hand in the comments."""

import math
import subprocess
import sys

import pytest

from tuneboard.evaluate.metrics import (
    OTHER,
    bleu4,
    compute_metrics,
    confusion,
    exact_match,
    format_confusion,
    is_classification,
    rouge_scores,
)


def close(value):
    # Scores are rounded to 4 decimals, so compare the hand value to within that rounding.
    return pytest.approx(value, abs=1e-4)


# ---------------------------------------------------------------- BLEU-4 (character level, method3)
# BLEU = BP * (p1 * p2 * p3 * p4) ** (1/4); p_n = clipped n-gram matches / n-grams in the prediction
# (denominator at least 1). method3: the k-th order with zero matches gets 1 / (2**k * denominator).
# BP = 1 if len(pred) > len(label) else exp(1 - len(label) / len(pred)).


def test_bleu_identical_is_100():
    assert bleu4("the cat sat", "the cat sat") == 100.0
    assert bleu4("今天天气很好", "今天天气很好") == 100.0


def test_bleu_partial_overlap_english():
    # pred a b c x e, label a b c d e (5 chars each, BP = 1)
    # 1-grams a,b,c,e match: 4/5; 2-grams ab,bc of ab,bc,cx,xe: 2/4; 3-grams abc of abc,bcx,cxe: 1/3
    # 4-grams abcx,bcxe: 0/2 -> first zero order, k=1: 1/(2*2) = 1/4
    # (4/5 * 2/4 * 1/3 * 1/4) ** 0.25 = (1/30) ** 0.25 = 0.427287 -> 42.7287
    assert bleu4("abcxe", "abcde") == close(100 * (4 / 5 * 2 / 4 * 1 / 3 * 1 / 4) ** 0.25)
    assert bleu4("abcxe", "abcde") == close(42.7287)


def test_bleu_brevity_penalty_and_empty_order():
    # pred a b c, label a b c d e: p1 = 3/3, p2 = 2/2, p3 = 1/1, p4 has no 4-gram: 0/1 -> 1/(2*1)
    # BP = exp(1 - 5/3) = exp(-2/3) = 0.513417; BLEU = 0.513417 * (1/2) ** 0.25 = 0.431731
    assert bleu4("abc", "abcde") == close(100 * math.exp(1 - 5 / 3) * (1 / 2) ** 0.25)
    assert bleu4("abc", "abcde") == close(43.1731)


def test_bleu_two_zero_orders_use_growing_powers_of_two():
    # pred a b, label a b c d: p1 = 2/2, p2 = 1/1, p3 = 0/1 -> 1/2 (k=1), p4 = 0/1 -> 1/4 (k=2)
    # BP = exp(1 - 4/2) = exp(-1); BLEU = exp(-1) * (1/8) ** 0.25 = 0.367879 * 0.594604 = 0.218742
    assert bleu4("ab", "abcd") == close(100 * math.exp(-1) * (1 / 2 * 1 / 4) ** 0.25)


def test_bleu_identical_but_shorter_than_four_chars_is_not_100():
    # "是" vs "是": p1 = 1/1, p2..p4 have no n-grams: 1/2, 1/4, 1/8 -> (1/64) ** 0.25 = 2 ** -1.5
    # = 0.353553 -> 35.3553 (LLaMA-Factory gives the same for one-letter answers)
    assert bleu4("是", "是") == close(100 * 2**-1.5)


def test_bleu_chinese_partial_overlap():
    # pred 今 天 天 气 很 好, label 今 天 天 气 不 错 (6 chars each, BP = 1)
    # 1-grams: 今 1 + 天 2 + 气 1 clipped matches = 4/6
    # 2-grams 今天 天天 天气 气很 很好: 今天, 天天, 天气 match = 3/5
    # 3-grams 今天天 天天气 天气很 气很好: 2/4; 4-grams 今天天气 天天气很 天气很好: 1/3
    # (4/6 * 3/5 * 2/4 * 1/3) ** 0.25 = (1/15) ** 0.25 = 0.508133 -> 50.8133
    assert bleu4("今天天气很好", "今天天气不错") == close(100 * (1 / 15) ** 0.25)


def test_bleu_empty_prediction_or_label_is_zero():
    # no unigram match -> nltk returns 0 before smoothing
    assert bleu4("", "今天天气很好") == 0.0
    assert bleu4("hello", "") == 0.0
    assert bleu4("", "") == 0.0


def test_bleu_does_not_strip_whitespace():
    # " yes " vs "yes": 5 chars vs 3. p1 = y,e,s = 3/5; 2-grams " y" ye es "s ": ye, es = 2/4
    # 3-grams " ye" yes "es ": 1/3; 4-grams " yes" "yes ": 0/2 -> 1/4; BP = 1 (5 > 3)
    # (3/5 * 2/4 * 1/3 * 1/4) ** 0.25 = (1/40) ** 0.25 = 0.397635
    assert bleu4(" yes ", "yes") == close(100 * (1 / 40) ** 0.25)


# ---------------------------------------------------------------- ROUGE (jieba words, rouge-chinese)
# rouge-chinese counts DISTINCT n-grams (sets); ROUGE-L is the LCS over all tokens with repeats;
# F = 2PR / (P + R).


def test_rouge_identical_is_100():
    assert rouge_scores("the cat sat on the mat", "the cat sat on the mat") == {
        "rouge-1": 100.0,
        "rouge-2": 100.0,
        "rouge-l": 100.0,
    }
    assert rouge_scores("我爱北京天安门", "我爱北京天安门") == {
        "rouge-1": 100.0,
        "rouge-2": 100.0,
        "rouge-l": 100.0,
    }


def test_rouge_english_hand_example():
    # pred: the cat sat on the mat; label: the cat is on the mat (6 tokens each)
    # ROUGE-1 on sets: {the,cat,sat,on,mat} vs {the,cat,is,on,mat}: overlap 4, P = R = 4/5 -> 80
    #   (with counted repeats it would be 5/6 = 83.33: this pins the set convention)
    # ROUGE-2: {the cat, cat sat, sat on, on the, the mat} vs {the cat, cat is, is on, on the,
    #   the mat}: overlap 3, P = R = 3/5 -> 60
    # ROUGE-L: LCS = the cat on the mat = 5, P = R = 5/6 -> 83.3333
    scores = rouge_scores("the cat sat on the mat", "the cat is on the mat")
    assert scores["rouge-1"] == close(80.0)
    assert scores["rouge-2"] == close(60.0)
    assert scores["rouge-l"] == close(100 * 5 / 6)


def test_rouge_chinese_hand_example():
    import jieba

    # precondition: jieba's segmentation that the hand calculation below relies on
    assert list(jieba.cut("我爱北京天安门")) == ["我", "爱", "北京", "天安门"]
    assert list(jieba.cut("我爱北京")) == ["我", "爱", "北京"]
    # ROUGE-1: overlap {我,爱,北京} = 3, P = 3/4, R = 3/3 -> F = 2*(3/4)/(7/4) = 6/7 = 85.7143
    # ROUGE-2: {我爱, 爱北京, 北京天安门} vs {我爱, 爱北京}: P = 2/3, R = 1 -> F = (4/3)/(5/3) = 80
    # ROUGE-L: LCS 我 爱 北京 = 3, P = 3/4, R = 1 -> 6/7
    scores = rouge_scores("我爱北京天安门", "我爱北京")
    assert scores == {"rouge-1": close(600 / 7), "rouge-2": close(80.0), "rouge-l": close(600 / 7)}


def test_rouge_single_identical_token_has_no_bigram():
    # one token each: unigram overlap 1/1 -> 100, no bigram on either side -> P = R = 0 -> 0
    assert rouge_scores("yes", "yes") == {"rouge-1": 100.0, "rouge-2": 0.0, "rouge-l": 100.0}


@pytest.mark.parametrize(("pred", "label"), [("", "我爱北京"), ("我爱北京", ""), ("", ""), ("  \n", "a b")])
def test_rouge_empty_side_is_zero(pred, label):
    # LLaMA-Factory's rule: no token on either side -> all three 0 (rouge-chinese would raise)
    assert rouge_scores(pred, label) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


# ---------------------------------------------------------------- accuracy and compute_metrics


def test_exact_match_trims_whitespace_only():
    assert exact_match(" A\n", "A")
    assert exact_match("内科 ", "\t内科")
    assert not exact_match("a", "A")
    assert not exact_match("A B", "AB")
    assert not exact_match("", "A")


def test_compute_metrics_hand_example():
    preds = ["abcde", "ab", " yes "]
    labels = ["abcde", "abcd", "yes"]
    # BLEU: 100 (identical), 21.8742 (see two-zero-orders test), 39.7635 (see whitespace test)
    #   mean = 161.6377 / 3 = 53.8792
    # ROUGE-1 and ROUGE-L: one token each; abcde = abcde -> 100, ab vs abcd -> 0, yes = yes -> 100
    #   mean 200/3 = 66.6667; ROUGE-2: no bigrams anywhere -> 0
    # accuracy: abcde and yes (after trimming) match, ab does not -> 2/3 -> 66.6667
    assert compute_metrics(preds, labels) == {
        "predict_bleu-4": close(53.8792),
        "predict_rouge-1": close(200 / 3),
        "predict_rouge-2": 0.0,
        "predict_rouge-l": close(200 / 3),
        "predict_accuracy": close(200 / 3),
    }
    assert list(compute_metrics(preds, labels)) == [
        "predict_bleu-4",
        "predict_rouge-1",
        "predict_rouge-2",
        "predict_rouge-l",
        "predict_accuracy",
    ]


def test_compute_metrics_rounds_to_four_decimals():
    result = compute_metrics(["a", "b", "c"], ["a", "x", "y"])
    # one of three records matches exactly: ROUGE-1 and accuracy are 100/3 = 33.33333... -> 33.3333
    # BLEU: 35.3553 (one identical char, see above) / 3 = 11.78510 -> 11.7851
    assert result["predict_rouge-1"] == 33.3333
    assert result["predict_accuracy"] == 33.3333
    assert result["predict_bleu-4"] == 11.7851
    for value in result.values():
        assert value == round(value, 4)


def test_compute_metrics_rejects_unpaired_or_empty_input():
    with pytest.raises(ValueError, match="pair"):
        compute_metrics(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        compute_metrics([], [])


# ---------------------------------------------------------------- classification and confusion


def test_is_classification():
    assert is_classification(["A", "B", "A", "C", "B", "C"])
    assert is_classification([" 内科", "外科 ", "内科", "外科"])
    # all distinct: short free-form answers, not classes
    assert not is_classification(["北京", "上海", "广州"])
    # 21 distinct labels, each twice: too many classes
    assert not is_classification([f"L{i}" for i in range(21)] * 2)
    assert is_classification([f"L{i}" for i in range(20)] * 2)
    # long labels
    assert not is_classification(["this is a whole sentence as a label"] * 4)
    # an empty label, or no labels at all
    assert not is_classification(["A", "A", "", "B"])
    assert not is_classification([])


def test_confusion_counts_and_accuracy():
    preds = ["A", "B ", "A", "C", "x", "B", "A", "B"]
    labels = ["A", "B", "B", "C", "C", "B", "A", "A"]
    # true A: preds A, A, B -> 2 of 3; true B: B, A, B -> 2 of 3; true C: C, x(other) -> 1 of 2
    # overall 5 of 8 = 62.5
    table = confusion(preds, labels)
    assert table == {
        "labels": ["A", "B", "C"],
        "columns": ["A", "B", "C", OTHER],
        "matrix": {
            "A": {"A": 2, "B": 1, "C": 0, OTHER: 0},
            "B": {"A": 1, "B": 2, "C": 0, OTHER: 0},
            "C": {"A": 0, "B": 0, "C": 1, OTHER: 1},
        },
        "per_label": {
            "A": {"total": 3, "correct": 2, "accuracy": close(200 / 3)},
            "B": {"total": 3, "correct": 2, "accuracy": close(200 / 3)},
            "C": {"total": 2, "correct": 1, "accuracy": 50.0},
        },
        "total": 8,
        "correct": 5,
        "accuracy": 62.5,
    }
    # overall agrees with compute_metrics' accuracy
    assert compute_metrics(preds, labels)["predict_accuracy"] == 62.5


def test_confusion_has_no_other_column_when_every_prediction_is_a_label():
    table = confusion(["A", "B"], ["B", "A"])
    assert table["columns"] == ["A", "B"]
    assert table["accuracy"] == 0.0


def test_format_confusion_plain_text():
    table = confusion(["A", "B ", "A", "C", "x", "B", "A", "B"], ["A", "B", "B", "C", "C", "B", "A", "A"])
    assert format_confusion(table) == (
        "true \\ pred  A  B  C  (other)  n   acc%\n"
        "A            2  1  0        0  3  66.67\n"
        "B            1  2  0        0  3  66.67\n"
        "C            0  0  1        1  2  50.00\n"
        "overall                        8  62.50"
    )


def test_format_confusion_aligns_chinese_labels():
    # 内科 is 4 terminal columns wide, like "acc%", so the header and rows line up
    text = format_confusion(confusion(["内科", "外科", "内科"], ["内科", "内科", "外科"]))
    assert text == (
        "true \\ pred  内科  外科  n   acc%\n"
        "内科            1     1  2  50.00\n"
        "外科            1     0  1   0.00\n"
        "overall                  3  33.33"
    )


# ---------------------------------------------------------------- cheap import, quiet jieba


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_import_loads_no_heavy_module():
    out = run_python(
        "import sys, tuneboard.evaluate.metrics\n"
        "print(sorted(m for m in ('jieba', 'nltk', 'rouge_chinese', 'torch') if m in sys.modules))"
    )
    assert out.stdout.strip() == "[]"


def test_jieba_start_up_is_silent():
    out = run_python(
        "from tuneboard.evaluate.metrics import rouge_scores\nprint(rouge_scores('我爱北京', '我爱北京'))"
    )
    assert "100.0" in out.stdout
    assert out.stderr == ""
