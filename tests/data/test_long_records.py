"""One absurdly long record: cut before tokenizing (to what truncation could keep), the same tokens and labels
as tokenizing it whole, counted; a record beyond any use is refused by name; `data check` stays small."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from tuneboard.data.formats import (
    ALPACA_COLUMNS,
    ASSISTANT,
    MAX_RECORD_CHARS,
    USER,
    Conversation,
    Message,
    to_conversation,
)
from tuneboard.data.templates.named import get_template
from tuneboard.data.tokenize import encode, keep_chars_for
from tuneboard.errors import DataError

QWEN = get_template("qwen")
WORDS = (
    "the garden needs water every morning 番茄 tomatoes grow best in sun, while basil likes warmth.\n".split(
        " "
    )
)


def text(n_chars: int, seed: int) -> str:
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n_chars]


def conv(*texts: str, system: str = "") -> Conversation:
    roles = [USER, ASSISTANT] * len(texts)
    return Conversation([Message(r, t) for r, t in zip(roles, texts, strict=False)], system=system)


CUTOFF = 48
LONG = keep_chars_for(CUTOFF) * 3  # well past the characters kept on either side of the first trained one
CASES = {
    "long prompt": (conv(text(LONG, 1), "short reply"), {}),
    "long reply": (conv("short question", text(LONG, 2)), {}),
    "long system": (conv("q", "a", system=text(LONG, 3)), {}),
    "both long": (conv(text(LONG, 4), text(LONG, 5)), {}),
    "long history, later exchanges dropped": (conv("q1", text(LONG, 6), "q2", "a2", "q3", text(LONG, 7)), {}),
    "long first exchange, trained prompt": (conv(text(LONG, 8), "a", "q2", "a2"), {"train_on_prompt": True}),
    "long history, masked": (conv(text(LONG, 9), text(LONG, 10), "q2", "a2"), {"mask_history": True}),
    "masked, long last prompt": (conv("q1", "a1", text(LONG, 11), "a2"), {"mask_history": True}),
    "no trained token left": (conv(text(LONG, 12), ""), {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_cut_record_gives_the_tokens_of_the_whole_one(tiny_tokenizer, case):
    c, kw = CASES[case]
    cut, stats = encode([c], QWEN, tiny_tokenizer, cutoff_len=CUTOFF, **kw)
    whole, whole_stats = encode([c], QWEN, tiny_tokenizer, cutoff_len=CUTOFF, keep_chars=10**9, **kw)
    assert cut == whole
    assert stats.shortened == 1 and whole_stats.shortened == 0
    whole_stats.shortened = 1
    assert stats == whole_stats


def test_records_of_normal_size_are_not_cut(tiny_tokenizer):
    convs = [conv(text(keep_chars_for(CUTOFF) - 200, 20), "reply"), conv("q", "a")]
    enc, stats = encode(convs, QWEN, tiny_tokenizer, cutoff_len=CUTOFF)
    assert stats.shortened == 0 and stats.truncated == 2
    assert (enc, stats) == encode(convs, QWEN, tiny_tokenizer, cutoff_len=CUTOFF, keep_chars=10**9)


def test_a_record_beyond_any_use_is_refused_by_name():
    record = {"instruction": "q", "output": "x" * (MAX_RECORD_CHARS + 1)}
    with pytest.raises(DataError, match=r"big\.json: record 7: .* characters of text, more than"):
        to_conversation(record, "alpaca", ALPACA_COLUMNS, {}, "big.json: record 7")


def test_data_check_of_a_5_mb_record_stays_small(tmp_path):
    """Tokenized whole with offsets, a 5 MB record took ~0.95 GB; cut first, it takes what reading it does."""
    big = text(5_000_000, 30)
    data = [
        {"instruction": "Summarise.", "input": big, "output": "A garden."},
        {"instruction": "hi", "output": "ho"},
    ]
    (tmp_path / "big.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    measure = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(p.stdout + p.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    check = [sys.executable, "-m", "tuneboard", "data", "check", "big.json", "--model", "builtin:tiny"]
    proc = subprocess.run(
        [sys.executable, "-c", measure, *check], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    *report, peak_kb = proc.stdout.strip().splitlines()
    out = "\n".join(report)
    assert "1 over cutoff_len=2048" in out and "1 record cut before tokenizing" in out, out
    assert int(peak_kb) < 300_000, f"peak RSS {int(peak_kb) // 1024} MB\n{out}"


def test_the_training_pipeline_cuts_too(tiny_tokenizer, token_cache):
    from tuneboard.data.pipeline import tokenize

    c, _ = CASES["long reply"]
    out = tokenize([c, conv("q", "a")], QWEN, tiny_tokenizer, cutoff_len=CUTOFF, use_cache=False)
    assert out.stats.shortened == 1 and out.stats.truncated == 2
    enc, _ = encode([c, conv("q", "a")], QWEN, tiny_tokenizer, cutoff_len=CUTOFF, keep_chars=10**9)
    assert [out[i] for i in range(2)] == [
        {"input_ids": i, "labels": lab} for i, lab in zip(*enc.values(), strict=True)
    ]
