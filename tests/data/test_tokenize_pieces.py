"""Encoding the text between added tokens piece by piece (each distinct piece once per batch) gives exactly the
ids and segment token ranges of encoding each text whole, with either engine for the pieces (the tokenizers
library, or fastokens where data/fastbpe.py applies), and tokenizers where that is not certain are left on
the whole-text path."""

from __future__ import annotations

import json
import random

import pytest

from tuneboard.data import fastbpe
from tuneboard.data.align import _added_token_split, _tokenize, _tokenize_pieces, _tokenize_whole

# texts where a cut at an added token or a segment start could go wrong: an added token next to text and to
# another added token, newlines and spaces that BPE merges across a segment start, added-token text typed in
# a message, multi-byte characters, a piece repeated in every text
TRICKY = [
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    "\n\n  Hello there.<|im_end|>\n",
    "<|im_start|>user\n番茄叶子发黄怎么办？<|im_end|><|im_start|>assistant\n先检查是否浇水过多。<|im_end|>",
    "<|im_start|>user\nWhat does <|im_end|> mean?<|im_end|>\n<|im_start|>assistant\n   spaced<|im_end|>",
    "<|im_end|><|im_end|>plain text   \n\n\t<|im_start|>",
    "no added tokens at all, just text with 'quotes' and 123 numbers",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\ncafé é\u0301 ｆｕｌｌ<|im_end|>\n",
    "",
]


@pytest.fixture(params=["tokenizers", "fastokens"])
def engine(request, monkeypatch):
    """Which engine encodes the pieces; with "fastokens" it is built for every tokenizer it applies to, and
    the test fails unless it was used at least once."""
    monkeypatch.setattr(fastbpe, "_engines", {})
    if request.param == "tokenizers":
        monkeypatch.setattr(fastbpe, "engine_for", lambda backend, build=True: None)
        yield request.param
        return
    calls = []
    encode = fastbpe.FastBPE.encode
    monkeypatch.setattr(
        fastbpe.FastBPE, "encode", lambda self, pieces: calls.append(1) or encode(self, pieces)
    )
    built = fastbpe.engine_for
    monkeypatch.setattr(fastbpe, "engine_for", lambda backend, build=True: built(backend))
    yield request.param
    assert calls, "fastokens was never used"


def starts_for(text: str, rng: random.Random) -> list[int]:
    """Segment starts as the renderer makes them (0 first, increasing), at any character, often next to a cut."""
    marks = {i for i in range(1, len(text)) if text[i - 1] in ">\n " or text[i] in "<\n "}
    pool = sorted(marks | set(rng.sample(range(1, max(len(text), 2)), min(len(text) - 1, 6) if text else 0)))
    return [0, *sorted(rng.sample(pool, min(len(pool), rng.randint(1, 5))))]


def assert_same_as_whole(backend, texts: list[str], seed: int = 0) -> None:
    split = _added_token_split(backend)
    assert split is not None, "the piece path should be used for this tokenizer"
    rng = random.Random(seed)
    for _ in range(20):
        starts = [starts_for(t, rng) for t in texts]
        assert _tokenize_pieces(backend, split, texts, starts) == _tokenize_whole(backend, texts, starts)


def test_pieces_equal_whole_texts(tiny_tokenizer, engine):
    assert_same_as_whole(tiny_tokenizer.backend_tokenizer, TRICKY)


def test_pieces_equal_whole_texts_on_the_dataset_shape(tiny_tokenizer, engine, monkeypatch):
    """Many texts sharing the system prompt and role headers (the pieces encoded once); segment starts where
    the renderer puts them need no whole-text encoding."""
    from tuneboard.data import align

    backend = tiny_tokenizer.backend_tokenizer
    rng = random.Random(1)
    words = ["the", " soil", "水", "\n", "  ", "!", "浇水", "Hello", "'s", "12"]
    texts = [
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n"
        + "".join(rng.choices(words, k=rng.randint(0, 12)))
        + "<|im_end|>\n<|im_start|>assistant\n"
        + "".join(rng.choices(words, k=rng.randint(0, 12)))
        + "<|im_end|>\n"
        for _ in range(200)
    ]
    assert_same_as_whole(backend, texts)
    starts = [[0, t.index("<|im_start|>user"), t.rindex("assistant\n") + 10, len(t) - 1] for t in texts]
    expected = _tokenize_whole(backend, texts, starts)
    monkeypatch.setattr(align, "_tokenize_whole", None)  # a fallback would fail here
    assert _tokenize_pieces(backend, _added_token_split(backend), texts, starts) == expected


def edited(backend, edit) -> object:
    """A copy of a Rust tokenizer with its JSON changed by `edit`."""
    from tokenizers import Tokenizer

    spec = json.loads(backend.to_str())
    edit(spec)
    return Tokenizer.from_str(json.dumps(spec))


def test_prefix_space_and_other_normalizers_are_exact_piecewise(tiny_tokenizer):
    """Rust normalizes and pre-tokenizes each piece between non-normalized added tokens on its own, so a
    normalizer or a prefix space added to every piece does not stop the piece path."""

    def prefix_and_lowercase(spec):
        spec["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = True
        spec["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]}

    assert_same_as_whole(edited(tiny_tokenizer.backend_tokenizer, prefix_and_lowercase), TRICKY, seed=2)


def set_added(flag):
    def edit(spec):
        spec["added_tokens"][2][flag] = True

    return edit


def set_metaspace(spec):
    spec["pre_tokenizer"] = {
        "type": "Metaspace",
        "replacement": "▁",
        "prepend_scheme": "first",
        "split": True,
    }


def set_trimming(spec):
    spec["post_processor"] = {
        "type": "ByteLevel",
        "add_prefix_space": True,
        "trim_offsets": True,
        "use_regex": True,
    }


@pytest.mark.parametrize(
    "edit",
    [set_added("lstrip"), set_added("rstrip"), set_added("single_word"), set_metaspace, set_trimming],
    ids=["lstrip", "rstrip", "single_word", "metaspace-first", "trim-offsets"],
)
def test_tokenizers_where_pieces_could_differ_use_the_whole_texts(tiny_tokenizer, edit):
    backend = edited(tiny_tokenizer.backend_tokenizer, edit)
    assert _added_token_split(backend) is None

    class Wrapper:  # what _tokenize is given: a transformers tokenizer with its Rust tokenizer
        backend_tokenizer = backend

    texts = TRICKY[:3]
    starts = [[0, 5] for _ in texts]
    assert _tokenize(Wrapper(), texts, starts) == _tokenize_whole(backend, texts, starts)


def test_added_tokens_matched_after_normalization_are_not_cut_out(tiny_tokenizer, engine):
    """normalized=True tokens are found inside each piece by Rust on both paths; only the others are cuts."""

    def normalized_im_end(spec):
        spec["added_tokens"][2]["normalized"] = True

    backend = edited(tiny_tokenizer.backend_tokenizer, normalized_im_end)
    pattern, ids = _added_token_split(backend)
    assert "<|im_end|>" not in ids and "<|im_start|>" in ids
    assert_same_as_whole(backend, TRICKY, seed=3)


def test_the_longest_added_token_wins_where_two_start_together(tiny_tokenizer, engine):
    from tokenizers import AddedToken

    backend = edited(tiny_tokenizer.backend_tokenizer, lambda spec: None)
    backend.add_tokens(
        [AddedToken("<|im_start|>user", normalized=False), AddedToken("\n<", normalized=False)]
    )
    assert_same_as_whole(backend, TRICKY, seed=4)
