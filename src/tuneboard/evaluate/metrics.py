"""Text metrics for evaluation: BLEU-4, ROUGE-1/2/L, exact-match accuracy and a confusion table.

Pure functions over prediction/label strings; evaluate.py calls them after generation. No torch here.

Conventions (chosen so numbers compare with LLaMA-Factory 0.9.x's prediction results, which
computes them in `llamafactory.train.sft.metric.ComputeSimilarity`):

* Strings are scored exactly as given (LLaMA-Factory does not strip them before BLEU/ROUGE).
* BLEU-4 is character-level: `sentence_bleu([list(label)], list(pred))` with nltk's
  `SmoothingFunction().method3`, uniform weights, times 100.
* ROUGE is the `rouge-chinese` package's F-score on jieba-segmented text (tokens joined by spaces),
  times 100. If either side has no token after segmentation (empty or whitespace only), all three
  ROUGE scores are 0 (LLaMA-Factory's rule; the package itself would raise).
* Each per-record score is rounded to 4 decimals before averaging, as LLaMA-Factory does;
  `compute_metrics` also rounds the mean to 4 decimals (LLaMA-Factory leaves the mean unrounded,
  so the two can differ by at most 0.00005).
* Accuracy (`predict_accuracy`, not reported by LLaMA-Factory for generation) is exact match after
  trimming surrounding whitespace, case-sensitive, as a percentage 0-100 like BLEU and ROUGE.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections.abc import Sequence

ROUGE_KEYS = ("rouge-1", "rouge-2", "rouge-l")
OTHER = "(other)"  # confusion-table column for predictions that are not one of the labels


@functools.lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.CRITICAL)  # silence "Building prefix dict ..." on first use
    jieba.initialize()
    return jieba


@functools.lru_cache(maxsize=1)
def _rouge():
    from rouge_chinese import Rouge

    return Rouge()


@functools.lru_cache(maxsize=1)
def _bleu_parts():
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return sentence_bleu, SmoothingFunction().method3


def bleu4(pred: str, label: str) -> float:
    """Character-level sentence BLEU-4 (smoothing method 3) of `pred` against `label`, 0-100.

    Rounded to 4 decimals, as LLaMA-Factory rounds each record. An empty prediction or a
    prediction with no character in common with the label scores 0.
    """
    sentence_bleu, method3 = _bleu_parts()
    score = sentence_bleu([list(label)], list(pred), smoothing_function=method3)
    return round(float(score) * 100, 4)


def rouge_scores(pred: str, label: str) -> dict[str, float]:
    """ROUGE-1/2/L F-scores (0-100, 4 decimals) on jieba-segmented words, via `rouge-chinese`.

    Note the package's conventions: ROUGE-N counts *distinct* n-grams (sets, not multisets) and
    ROUGE-L is the LCS over the whole token sequence; F = 2PR / (P + R + 1e-8).
    Returns 0 for all three when either side has no token.
    """
    jieba = _jieba()
    hypothesis = " ".join(jieba.cut(pred))
    reference = " ".join(jieba.cut(label))
    if not hypothesis.split() or not reference.split():
        return dict.fromkeys(ROUGE_KEYS, 0.0)
    scores = _rouge().get_scores(hypothesis, reference)[0]
    return {key: round(scores[key]["f"] * 100, 4) for key in ROUGE_KEYS}


def exact_match(pred: str, label: str) -> bool:
    """True when `pred` equals `label` after trimming surrounding whitespace (case-sensitive)."""
    return pred.strip() == label.strip()


def _check_pairs(preds: Sequence[str], labels: Sequence[str]) -> None:
    if len(preds) != len(labels):
        raise ValueError(f"got {len(preds)} predictions for {len(labels)} labels; they must pair up")
    if not labels:
        raise ValueError("no records to score: predictions and labels are empty")


def compute_metrics(preds: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Mean BLEU-4, ROUGE-1/2/L and exact-match accuracy over paired records, each 0-100.

    Keys are LLaMA-Factory's names for the prediction results plus `predict_accuracy`; values are rounded
    to 4 decimals. Raises ValueError when the lists differ in length or are empty.
    """
    _check_pairs(preds, labels)
    sums = {"bleu-4": 0.0, **dict.fromkeys(ROUGE_KEYS, 0.0)}
    correct = 0
    for pred, label in zip(preds, labels, strict=True):
        sums["bleu-4"] += bleu4(pred, label)
        for key, value in rouge_scores(pred, label).items():
            sums[key] += value
        correct += exact_match(pred, label)
    n = len(labels)
    result = {f"predict_{key}": round(total / n, 4) for key, total in sums.items()}
    result["predict_accuracy"] = round(100 * correct / n, 4)
    return result


def is_classification(labels: Sequence[str], max_labels: int = 20, max_label_chars: int = 20) -> bool:
    """Whether the labels look like classes: few distinct short labels, each seen twice on average.

    After trimming whitespace: no empty label, at most `max_labels` distinct labels, none longer
    than `max_label_chars` characters, and at least two records per distinct label on average
    (so a handful of short free-form answers is not mistaken for classes).
    """
    stripped = [label.strip() for label in labels]
    distinct = set(stripped)
    return (
        bool(stripped)
        and "" not in distinct
        and len(distinct) <= max_labels
        and max(len(label) for label in distinct) <= max_label_chars
        and 2 * len(distinct) <= len(stripped)
    )


def confusion(preds: Sequence[str], labels: Sequence[str]) -> dict:
    """Counts of (true label, predicted label) plus per-label and overall accuracy (0-100).

    Labels and predictions are compared after trimming whitespace, as in `exact_match`.
    A prediction that is not one of the labels is counted in the column `OTHER` ("(other)"),
    which is present only when needed. Returns::

        {"labels": [sorted true labels], "columns": labels (+ OTHER),
         "matrix": {true: {predicted: count}},
         "per_label": {true: {"total": n, "correct": k, "accuracy": 100 * k / n}},
         "total": N, "correct": K, "accuracy": 100 * K / N}

    Accuracies are rounded to 4 decimals. Raises ValueError when the lists differ in length or
    are empty.
    """
    _check_pairs(preds, labels)
    true = [label.strip() for label in labels]
    guessed = [pred.strip() for pred in preds]
    names = sorted(set(true))
    other = OTHER
    while other in names:  # keep the overflow column distinct from every real label
        other += "*"
    columns = list(names)
    if any(g not in names for g in guessed):
        columns.append(other)

    matrix = {name: dict.fromkeys(columns, 0) for name in names}
    for t, g in zip(true, guessed, strict=True):
        matrix[t][g if g in matrix else other] += 1

    per_label = {}
    for name in names:
        total = sum(matrix[name].values())
        hits = matrix[name][name]
        per_label[name] = {"total": total, "correct": hits, "accuracy": round(100 * hits / total, 4)}
    correct = sum(row["correct"] for row in per_label.values())
    return {
        "labels": names,
        "columns": columns,
        "matrix": matrix,
        "per_label": per_label,
        "total": len(true),
        "correct": correct,
        "accuracy": round(100 * correct / len(true), 4),
    }


def _width(text: str) -> int:
    """Columns `text` takes in a terminal: East Asian wide/full-width characters count double."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - _width(text))
    return fill + text if right else text + fill


def format_confusion(table: dict) -> str:
    """Plain-text rendering of `confusion(...)`: one row per true label, one column per prediction.

    The last two columns are the row's record count and accuracy (%); a final row gives the overall
    count and accuracy. Columns stay aligned with Chinese labels.
    """
    corner = "true \\ pred"
    header = [corner, *table["columns"], "n", "acc%"]
    rows = [header]
    for name in table["labels"]:
        stats = table["per_label"][name]
        counts = [str(table["matrix"][name][col]) for col in table["columns"]]
        rows.append([name, *counts, str(stats["total"]), f"{stats['accuracy']:.2f}"])
    blanks = [""] * len(table["columns"])
    rows.append(["overall", *blanks, str(table["total"]), f"{table['accuracy']:.2f}"])

    widths = [max(_width(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [_pad(cell, widths[i], right=i > 0) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
