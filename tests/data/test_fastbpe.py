"""data/fastbpe.py: fastokens for the ids of byte-level BPE pieces. Where it applies, when it is built, and
that every way out of it (a piece whose bytes cannot place a start, a disagreement with the tokenizers
library) gives the tokenizers library's result. Exactness of the ids and segment ranges on many texts is in
test_tokenize_pieces.py (the `engine` fixture)."""

from __future__ import annotations

import json
import sys

import pytest

from tuneboard.data import fastbpe
from tuneboard.data import pipeline as loader
from tuneboard.data.align import _added_token_split, _tokenize_pieces, _tokenize_whole
from tuneboard.data.formats import Conversation, Message


@pytest.fixture(autouse=True)
def no_engines(monkeypatch):
    monkeypatch.setattr(fastbpe, "_engines", {})


def edited(backend, edit):
    from tokenizers import Tokenizer

    spec = json.loads(backend.to_str())
    edit(spec)
    return Tokenizer.from_str(json.dumps(spec))


CHAT = [
    "<|im_start|>user\n番茄叶子发黄怎么办？<|im_end|>\n<|im_start|>assistant\n先检查是否浇水过多。<|im_end|>\n",
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n  It is 42.<|im_end|>\n",
]


def starts_of(text: str) -> list[int]:
    """Segment starts as the renderer puts them: the reply after the assistant header, the end-of-turn."""
    reply = text.rindex("assistant\n") + len("assistant\n")
    return [0, reply, text.rindex("<|im_end|>")]


def test_applies_to_the_byte_level_bpe_of_builtin_tiny(tiny_tokenizer):
    assert fastbpe.engine_for(tiny_tokenizer.backend_tokenizer) is not None


def set_model(key, value):
    def edit(spec):
        spec["model"][key] = value

    return edit


def set_normalizer(spec):
    spec["normalizer"] = {"type": "Lowercase"}


def set_prefix_space(spec):
    spec["pre_tokenizer"]["pretokenizers"][-1]["add_prefix_space"] = True


def set_metaspace(spec):
    spec["pre_tokenizer"] = {
        "type": "Metaspace",
        "replacement": "▁",
        "prepend_scheme": "always",
        "split": True,
    }


@pytest.mark.parametrize(
    "edit",
    [
        set_model("dropout", 0.1),
        set_model("byte_fallback", True),
        set_normalizer,
        set_prefix_space,
        set_metaspace,
    ],
    ids=["dropout", "byte-fallback", "lowercase", "prefix-space", "metaspace"],
)
def test_tokenizers_whose_tokens_do_not_spell_the_bytes_are_left_to_the_tokenizers_library(
    tiny_tokenizer, edit
):
    assert fastbpe.engine_for(edited(tiny_tokenizer.backend_tokenizer, edit)) is None


def test_turned_off_by_the_config_key_or_when_not_installed(tiny_tokenizer, monkeypatch):
    backend = tiny_tokenizer.backend_tokenizer
    fastbpe.engine_for(backend)  # built earlier in the process: `fast_bpe: false` lets it go
    fastbpe.build_if_worth(tiny_tokenizer, conversations(2, "好的。"), enabled=False)
    assert fastbpe.engine_for(backend, build=False) is None
    fastbpe.clear()
    monkeypatch.setitem(sys.modules, "fastokens", None)  # import fails
    assert fastbpe.engine_for(backend) is None


def test_not_built_on_request_of_the_piece_path(tiny_tokenizer):
    """Building costs seconds for a large vocabulary: the piece path only uses an engine already built."""
    backend = tiny_tokenizer.backend_tokenizer
    assert fastbpe.engine_for(backend, build=False) is None
    _tokenize_pieces(backend, _added_token_split(backend), CHAT, [starts_of(t) for t in CHAT])
    assert fastbpe.engine_for(backend, build=False) is None


def conversations(n: int, reply: str) -> list[Conversation]:
    return [Conversation([Message("user", f"问题 {i}"), Message("assistant", reply)]) for i in range(n)]


def test_the_loader_builds_it_for_large_datasets_only(tiny_tokenizer, tiny_dir, token_cache, monkeypatch):
    from tuneboard.data.templates.resolve import load_template

    template = load_template("qwen", tiny_tokenizer, tiny_dir)
    backend = tiny_tokenizer.backend_tokenizer
    small = conversations(20, "好的。")
    loader.tokenize(small, template, tiny_tokenizer, 64)
    assert fastbpe.engine_for(backend, build=False) is None
    monkeypatch.setattr(fastbpe, "WORTH_CHARS", 200)
    large = conversations(40, "先检查是否浇水过多。")
    used = []
    encode = fastbpe.FastBPE.encode
    monkeypatch.setattr(
        fastbpe.FastBPE, "encode", lambda self, pieces: used.append(1) or encode(self, pieces)
    )
    fast = loader.tokenize(large, template, tiny_tokenizer, 64, use_cache=False)
    assert used and fastbpe.engine_for(backend, build=False) is not None
    slow = loader.tokenize(large, template, tiny_tokenizer, 64, use_cache=False, fast_bpe=False)
    assert [fast[i] for i in range(len(fast))] == [slow[i] for i in range(len(slow))]
    assert fastbpe.engine_for(backend, build=False) is None  # the one built above was let go, not used

    fastbpe.clear()
    assert fastbpe.engine_for(backend) is not None
    monkeypatch.setattr(loader, "_encode_pipelined", None)  # forked workers only, with the engine inherited
    forked = loader.tokenize(large * 60, template, tiny_tokenizer, 64, use_cache=False, num_workers=2)
    assert [forked[i] for i in range(len(forked))] == [fast[i] for i in range(len(fast))] * 60


def test_a_piece_not_in_nfc_is_placed_by_the_tokenizers_library(tiny_tokenizer, monkeypatch):
    backend = tiny_tokenizer.backend_tokenizer
    engine = fastbpe.engine_for(backend)
    texts = ["<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\ncafe\u0301 ok<|im_end|>\n", *CHAT]
    starts = [starts_of(t) for t in texts]
    redone = []
    found = fastbpe.FastBPE.starts

    def spy(self, pieces, ids, offsets, marks):
        out, redo = found(self, pieces, ids, offsets, marks)
        redone.extend(pieces[p] for p in redo)
        return out, redo

    monkeypatch.setattr(fastbpe.FastBPE, "starts", spy)
    assert engine.nfc
    assert _tokenize_pieces(backend, _added_token_split(backend), texts, starts) == _tokenize_whole(
        backend, texts, starts
    )
    assert redone == ["assistant\ncafe\u0301 ok"]


def test_a_piece_whose_bytes_do_not_add_up_is_redone(tiny_tokenizer):
    backend = tiny_tokenizer.backend_tokenizer
    engine = fastbpe.engine_for(backend)
    starts = [starts_of(t) for t in CHAT]
    expected = _tokenize_whole(backend, CHAT, starts)
    engine.nbytes = engine.nbytes.copy()
    engine.nbytes[backend.encode("assistant", add_special_tokens=False).ids] += 1  # wrong, before a start
    assert _tokenize_pieces(backend, _added_token_split(backend), CHAT, starts) == expected


def test_a_disagreement_turns_it_off_with_a_warning_and_the_batch_is_redone(tiny_tokenizer, capsys):
    backend = tiny_tokenizer.backend_tokenizer
    engine = fastbpe.engine_for(backend)
    encode = engine.encode
    engine.encode = lambda pieces: (lambda ids, offsets: (ids + 1, offsets))(*encode(pieces))
    starts = [starts_of(t) for t in CHAT]
    got = _tokenize_pieces(backend, _added_token_split(backend), CHAT, starts)
    assert got == _tokenize_whole(backend, CHAT, starts)
    assert "fast tokenization turned off" in capsys.readouterr().err
    assert fastbpe.engine_for(backend) is None  # for the rest of the process


def test_the_sample_compared_covers_every_batch(tiny_tokenizer):
    """At least CHECK_MIN pieces (or all of a small batch), about one in CHECK_EVERY of a large one."""
    engine = fastbpe.engine_for(tiny_tokenizer.backend_tokenizer)
    checked = []
    real = engine.backend

    class Counting:
        def encode_batch_fast(self, pieces, add_special_tokens):
            checked.append(len(pieces))
            return real.encode_batch_fast(pieces, add_special_tokens=add_special_tokens)

    engine.backend = Counting()
    for n in (3, 50, 5000):
        pieces = [f"piece {i}" for i in range(n)]
        assert engine.agrees(pieces, *engine.encode(pieces))
    assert (
        checked[0] == 3
        and checked[1] >= fastbpe.CHECK_MIN
        and 5000 // fastbpe.CHECK_EVERY <= checked[2] <= 60
    )


def test_an_engine_error_turns_it_off_and_the_batch_is_redone(tiny_tokenizer, capsys):
    backend = tiny_tokenizer.backend_tokenizer
    engine = fastbpe.engine_for(backend)

    def fail(pieces):
        raise RuntimeError("match limit exceeded")

    engine.encode = fail
    starts = [starts_of(t) for t in CHAT]
    assert _tokenize_pieces(backend, _added_token_split(backend), CHAT, starts) == _tokenize_whole(
        backend, CHAT, starts
    )
    assert "match limit exceeded" in capsys.readouterr().err and fastbpe.engine_for(backend) is None


def test_prepare_datasets_lets_the_engine_go_before_training(
    tiny_tokenizer, tmp_path, token_cache, monkeypatch
):
    from tuneboard.config import Config
    from tuneboard.data.templates.named import get_template

    rows = [{"instruction": f"问题 {i}", "output": "先检查是否浇水过多。"} for i in range(30)]
    (tmp_path / "a.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setattr(fastbpe, "WORTH_CHARS", 100)
    builds = []
    engine_for = fastbpe.engine_for
    monkeypatch.setattr(
        fastbpe, "engine_for", lambda b, build=True: builds.append(build) or engine_for(b, build)
    )
    cfg = Config(dataset=str(tmp_path / "a.json"), template="qwen", cutoff_len=64, val_size=0.2)
    bundle = loader.prepare_datasets(cfg, tiny_tokenizer, get_template("qwen"))
    assert len(bundle.train) == 24 and builds.count(True) >= 1  # built for the training set
    assert engine_for(tiny_tokenizer.backend_tokenizer, build=False) is None  # and let go before training


def test_the_config_key_fast_bpe_false_reaches_the_loader(tiny_tokenizer, tmp_path, token_cache, monkeypatch):
    from tuneboard.config import Config
    from tuneboard.data.templates.named import get_template

    rows = [{"instruction": f"问题 {i}", "output": "先检查是否浇水过多。"} for i in range(30)]
    (tmp_path / "a.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setattr(fastbpe, "WORTH_CHARS", 100)
    used = []
    monkeypatch.setattr(fastbpe.FastBPE, "encode", lambda self, pieces: used.append(1))
    cfg = Config(dataset=str(tmp_path / "a.json"), template="qwen", cutoff_len=64, fast_bpe=False)
    bundle = loader.prepare_datasets(cfg, tiny_tokenizer, get_template("qwen"))
    assert len(bundle.train) == 30 and not used
