"""builtin:tiny: the tokenizer file on disk tokenizes exactly as transformers loads it."""

from __future__ import annotations

from tuneboard.model.load import LightTokenizer

TEXTS = [
    "患者123456 abc",
    "体温 38.5℃，已经 3 天了。",
    "Hello! How can I help you?\n\n  x",
    "<|im_start|>user\n你好<|im_end|>",
]


def test_tokenizer_file_matches_transformers(tiny_dir, tiny_tokenizer):
    """`data check/preview` read tokenizer.json directly; training loads it through AutoTokenizer."""
    light = LightTokenizer(tiny_dir)
    assert light(TEXTS)["input_ids"] == tiny_tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
    # Qwen2's pre-tokenizer: one digit per token
    assert tiny_tokenizer.tokenize("123") == ["1", "2", "3"]


def test_tokenizer_round_trips_text(tiny_tokenizer):
    for text in TEXTS:
        assert tiny_tokenizer.decode(tiny_tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_a_phrase_tokenizes_the_same_after_any_punctuation(tiny_tokenizer):
    """Qwen2's regex lets a punctuation mark lead a run of letters; the merges never join the two."""
    phrase = "我摔了一跤"
    pieces = {p: tiny_tokenizer.tokenize(f"患者{p}{phrase}") for p in ("：", "，", "。")}
    tails = {tuple(t[-len(tiny_tokenizer.tokenize(phrase)) :]) for t in pieces.values()}
    assert len(tails) == 1 and all(len(t) == 2 + len(next(iter(tails))) for t in pieces.values()), pieces
