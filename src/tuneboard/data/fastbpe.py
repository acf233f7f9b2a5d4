"""Token ids for byte-level BPE tokenizers from fastokens, a Rust engine that reads the same tokenizer.json as
the tokenizers library and gives the same ids about 30 times faster (it builds no offsets, alignments or
per-token strings). It keeps no character offsets, so where a segment starts inside a piece is found from the
tokens' byte lengths: with byte-level BPE the tokens of a piece spell exactly its UTF-8 bytes.

Used only where that holds (see `_eligible`), checked per piece (byte count, NFC), and cross-checked against
the tokenizers library on a sample of every batch: a disagreement turns it off for that tokenizer, with a
warning, and the batch is encoded again the usual way. The config key `fast_bpe: false` turns it off.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from typing import Any

import numpy as np

# pieces compared with the tokenizers library in each batch: one in CHECK_EVERY, at least CHECK_MIN
CHECK_EVERY = 100
CHECK_MIN = 8

# below this much text (characters) building the engine (about 2 s for a 150k-token vocabulary) costs more
# than it saves
WORTH_CHARS = 5_000_000

_engines: dict[int, tuple[Any, FastBPE | None]] = {}  # id(backend) -> (backend kept alive, engine or None)


def engine_for(backend: Any, build: bool = True) -> FastBPE | None:
    """The fast engine for this Rust tokenizer (built on first call unless `build` is false); None where it
    does not apply or was turned off."""
    key = id(backend)
    if key not in _engines:
        if not build:
            return None
        _engines[key] = (backend, _build(backend))
    return _engines[key][1]


def build_if_worth(tokenizer: Any, convs: list[Any], enabled: bool = True) -> None:
    """Build the engine for a transformers tokenizer when these conversations hold enough text to repay it
    (once, before chunks go to threads or forked workers, which then find it built). Not `enabled` (the
    config's fast_bpe): an engine built earlier for this tokenizer is let go, so none is used."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return
    if not enabled:
        _engines.pop(id(backend), None)
        return
    chars = sum(len(c.system or "") + sum(len(m.content) for m in c.messages) for c in convs)
    if chars >= WORTH_CHARS:
        engine_for(backend)


def clear() -> None:
    """Forget every built engine (the benchmark times each run from a cold start)."""
    _engines.clear()


def disable(backend: Any, why: str) -> None:
    _engines[id(backend)] = (backend, None)
    print(f"warning: fast tokenization turned off ({why}); using the tokenizers library", file=sys.stderr)


def _build(backend: Any) -> FastBPE | None:
    if not _eligible(backend):
        return None
    try:
        import fastokens

        return FastBPE(backend, fastokens.Tokenizer.from_json_str(backend.to_str()))
    except Exception:  # not installed, or a component it does not implement: the tokenizers library does it
        return None


def _parts(component: Any, key: str) -> list[dict]:
    """A normalizer's or pre-tokenizer's JSON and those inside its Sequence, flattened."""

    def walk(spec: dict) -> list[dict]:
        return [spec, *(c for sub in spec.get(key, []) for c in walk(sub))]

    return walk(json.loads(component.__getstate__())) if component is not None else []


def _eligible(backend: Any) -> bool:
    """Byte-level BPE whose tokens spell the piece's bytes one after another: no normalizer that edits text
    other than NFC (checked per piece), no prefix space, no unknown or byte-fallback tokens, no dropout."""
    model = backend.model
    if type(model).__name__ != "BPE" or model.dropout or model.byte_fallback or model.unk_token:
        return False
    if model.continuing_subword_prefix or model.end_of_word_suffix:
        return False
    if not {n["type"] for n in _parts(backend.normalizer, "normalizers")} <= {"NFC", "Sequence"}:
        return False
    pres = _parts(backend.pre_tokenizer, "pretokenizers")
    levels = [p for p in pres if p["type"] == "ByteLevel"]
    if not levels or any(p.get("add_prefix_space") for p in levels):
        return False
    # what else may come before ByteLevel: splitters that keep every character
    return {p["type"] for p in pres} <= {"Sequence", "Split", "ByteLevel", "Digits", "Punctuation"}


class FastBPE:
    def __init__(self, backend: Any, engine: Any) -> None:
        self.backend = backend
        self.engine = engine
        self.nfc = any(n["type"] == "NFC" for n in _parts(backend.normalizer, "normalizers"))
        self.nbytes = _byte_lengths(backend)

    def encode(self, pieces: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids of all pieces one after another, offsets: piece i is ids[offsets[i]:offsets[i+1]])."""
        flat, offsets = self.engine.encode_batch_flat(pieces, add_special_tokens=False)
        ids = np.frombuffer(flat, np.uint32).astype(np.int64)
        return ids, np.frombuffer(offsets, np.uint64).astype(np.int64)

    def agrees(self, pieces: list[str], ids: np.ndarray, offsets: np.ndarray) -> bool:
        """The ids of a sample of the pieces equal the tokenizers library's."""
        step = max(1, min(CHECK_EVERY, len(pieces) // CHECK_MIN))
        sample = list(range(0, len(pieces), step))
        encode = getattr(self.backend, "encode_batch_fast", None) or self.backend.encode_batch  # ids only
        ref = encode([pieces[i] for i in sample], add_special_tokens=False)
        return all(
            ids[offsets[i] : offsets[i + 1]].tolist() == e.ids for i, e in zip(sample, ref, strict=True)
        )

    def starts(
        self, pieces: list[str], ids: np.ndarray, offsets: np.ndarray, marks: list[tuple[int, int]]
    ) -> tuple[dict[tuple[int, int], int], list[int]]:
        """For each (piece, character) mark, the index inside the piece of the segment's first token, by the
        rule of Encoding.char_to_token (the first token holding the character's first byte; a token that also
        holds the first byte of the character before stays behind). Pieces where byte lengths cannot be
        trusted (not NFC though the tokenizer normalizes, or bytes that do not add up) are left out and
        listed as the second result."""
        ends = np.zeros(len(ids) + 1, np.int64)
        np.cumsum(self.nbytes[ids], out=ends[1:])  # ends[k] = byte where token k starts (all pieces in a row)
        redo = []
        for p in sorted({p for p, _ in marks}):
            text = pieces[p]
            spelled = ends[offsets[p + 1]] - ends[offsets[p]]
            if spelled != len(text.encode("utf-8")) or (
                self.nfc and not unicodedata.is_normalized("NFC", text)
            ):
                redo.append(p)
        skip = set(redo)
        keep = [(p, rel) for p, rel in marks if p not in skip]
        at, before, base_tok = [], [], []
        for p, rel in keep:
            text = pieces[p]
            byte = int(ends[offsets[p]]) + len(text[:rel].encode("utf-8"))
            at.append(byte)
            before.append(byte - len(text[rel - 1].encode("utf-8")) if rel else -1)
            base_tok.append(offsets[p])
        if not keep:
            return {}, redo
        at_a, before_a = np.array(at, np.int64), np.array(before, np.int64)
        tok = np.searchsorted(ends, at_a, side="right") - 1  # the token holding byte `at`
        tok += (before_a >= 0) & (before_a >= ends[tok])  # it also holds the previous character's first byte
        return dict(zip(keep, (tok - np.array(base_tok, np.int64)).tolist(), strict=True)), redo


def _byte_lengths(backend: Any) -> np.ndarray:
    """Bytes each token id stands for: a byte-level vocabulary writes one character per byte; added tokens
    found inside a piece are their text. Ids with no known length get a huge one, so a piece holding one
    fails the byte count and is redone."""
    from tokenizers import pre_tokenizers

    vocab = backend.get_vocab(with_added_tokens=False)
    added = backend.get_added_tokens_decoder()
    out = np.full(1 + max([*vocab.values(), *added, 0]), 1 << 40, np.int64)
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    for token, i in vocab.items():
        if alphabet.issuperset(token):
            out[i] = len(token)
    for i, tok in added.items():
        out[i] = len(tok.content.encode("utf-8"))
    return out
