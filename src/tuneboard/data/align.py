"""Token ids and segment boundaries for rendered texts, fast: the pieces between added tokens (such as
<|im_start|>) are encoded once per batch where that gives the same tokens as the whole text, by fastokens where
fastbpe.py applies, else the tokenizers library with character offsets.

Data layer, under tokenize.py (which decides the labels from these boundaries).
"""

from __future__ import annotations

import bisect
import json
import re
from typing import Any

from . import fastbpe


def _segment_tokens(enc: Any, starts: list[int], n_chars: int, n: int) -> list[tuple[int, int]] | None:
    """Token range of each segment (n tokens in all): a token belongs to the segment holding its first
    character. Found from the segment boundaries alone (a few lookups per record, not one per token)."""
    bounds = []
    for s in starts:
        if s >= n_chars:
            bounds.append(n)
            continue
        t = enc.char_to_token(s)
        if t is None:
            return None
        if s > 0 and enc.char_to_token(s - 1) == t:  # a token straddling the boundary stays behind
            t += 1
        bounds.append(t)
    bounds.append(n)
    return [(a, b if b > a else a) for a, b in zip(bounds, bounds[1:], strict=False)]


def _tokenize(tokenizer: Any, texts: list[str], starts: list[list[int]]) -> list[tuple[list[int], list]]:
    """(ids, token range per segment) for each text, in batched calls of the Rust tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        split = _added_token_split(backend)
        if split is not None:
            return _tokenize_pieces(backend, split, texts, starts)
        return _tokenize_whole(backend, texts, starts)
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False)
    return [
        (list(ids), _ranges_from_offsets(offs, st))
        for ids, offs, st in zip(enc["input_ids"], enc["offset_mapping"], starts, strict=True)
    ]


def _tokenize_whole(backend: Any, texts: list[str], starts: list[list[int]]) -> list[tuple[list[int], list]]:
    encs = backend.encode_batch(texts, add_special_tokens=False)
    out = []
    for enc, text, st in zip(encs, texts, starts, strict=True):
        ids = enc.ids  # a new list on every access: read once
        ranges = _segment_tokens(enc, st, len(text), len(ids))
        out.append((ids, ranges if ranges is not None else _ranges_from_offsets(enc.offsets, st)))
    return out


# pre-tokenizers that treat each piece between added tokens alike wherever it sits in the text (Metaspace
# does not always: with prepend_scheme "first" it looks at the piece's position)
_PIECEWISE_PRE = {"Sequence", "Split", "ByteLevel", "Digits", "Punctuation", "Whitespace", "WhitespaceSplit"}


def _added_token_split(backend: Any) -> tuple[re.Pattern, dict[str, int]] | None:
    """A pattern matching the added tokens the Rust tokenizer cuts out first, and their ids, when the text
    between them may be encoded on its own with the same tokens (and token offsets) it gets inside the whole
    text; None when that is not certain. Rust splits on the non-normalized added tokens before normalizing,
    pre-tokenizing and BPE, which then work on each piece alone, so pieces repeated across records (system
    prompt, role headers) need encoding once."""
    if getattr(backend, "encode_special_tokens", False) or backend.truncation or backend.padding:
        return None
    pre = backend.pre_tokenizer
    if pre is not None and not _pre_tokenizer_types(json.loads(pre.__getstate__())) <= _PIECEWISE_PRE:
        return None
    post = backend.post_processor
    if post is not None and b'"trim_offsets":true' in post.__getstate__():
        return None  # trimming treats a token at offset 0 specially: a piece's first token would differ
    ids: dict[str, int] = {}
    for tok in backend.get_added_tokens_decoder().values():
        if tok.normalized or not tok.content:
            continue  # matched after normalization, inside each piece, by both paths alike
        if tok.lstrip or tok.rstrip or tok.single_word:
            return None  # these look at the text around the token, across our cut
        ids[tok.content] = backend.token_to_id(tok.content)
    if not ids:
        return None
    # longest first: at each position the longest token wins, as in the Rust leftmost-longest search
    alternatives = "|".join(re.escape(c) for c in sorted(ids, key=len, reverse=True))
    return re.compile(f"({alternatives})"), ids


def _pre_tokenizer_types(spec: dict) -> set[str]:
    """Type names in a pre-tokenizer's JSON, those inside a Sequence included."""
    return {spec.get("type", "")}.union(*(_pre_tokenizer_types(c) for c in spec.get("pretokenizers", [])))


def _tokenize_pieces(
    backend: Any, split: tuple[re.Pattern, dict[str, int]], texts: list[str], starts: list[list[int]]
) -> list[tuple[list[int], list]]:
    """As _tokenize_whole, with each distinct piece between added tokens encoded once for the whole batch.
    Each segment start is located the way Encoding.char_to_token does it on the whole text (the first token
    whose offsets hold the character; one straddling the boundary stays behind), within its piece."""
    pattern, added = split
    index: dict[str, int] = {}
    layouts = []  # per text: pieces (index into the unique ones, or ~id of an added token), segment starts
    wanted: set[tuple[int, int]] = set()  # (piece, character) where a segment starts inside a piece
    for text, st in zip(texts, starts, strict=True):
        refs: list[int] = []
        marks: list[tuple[int, int]] = []  # (piece number, offset of the segment start inside it)
        k, pos, n_st = 0, 0, len(st)
        for j, part in enumerate(pattern.split(text)):
            if not part:
                continue
            if j % 2:
                refs.append(~added[part])
            else:
                ref = index.get(part)
                if ref is None:
                    ref = index[part] = len(index)
                refs.append(ref)
            end = pos + len(part)
            while k < n_st and st[k] < end:
                marks.append((len(refs) - 1, st[k] - pos))
                if refs[-1] >= 0:
                    wanted.add((refs[-1], st[k] - pos))
                k += 1
            pos = end
        marks += [(-1, 0)] * (n_st - k)  # starts at or past the end (empty trailing segments)
        layouts.append((refs, marks))
    piece_ids, first = _encode_pieces(backend, list(index), sorted(wanted))
    out: list = []
    redo = []
    for i, (refs, marks) in enumerate(layouts):
        out.append(_assemble(refs, marks, piece_ids, first))
        if out[-1] is None:
            redo.append(i)  # a start no token holds: the whole text's offsets decide, as before
    if redo:
        again = _tokenize_whole(backend, [texts[i] for i in redo], [starts[i] for i in redo])
        for i, res in zip(redo, again, strict=True):
            out[i] = res
    return out


def _encode_pieces(
    backend: Any, pieces: list[str], wanted: list[tuple[int, int]]
) -> tuple[list[list[int]], dict[tuple[int, int], int | None]]:
    """Ids of each distinct piece, and for each `wanted` (piece, character) where a segment starts, the index
    of the segment's first token inside the piece (None: no token holds that character)."""
    fast = fastbpe.engine_for(backend, build=False)
    if fast is not None:
        try:
            flat, offsets = fast.encode(pieces)
        except Exception as err:  # e.g. a regex resource limit on a pathological text
            fastbpe.disable(backend, f"it failed on this data: {err}")
            fast = None
        else:
            if not fast.agrees(pieces, flat, offsets):
                fastbpe.disable(backend, "its ids differ from the tokenizers library's on this data")
                fast = None
    if fast is None:
        # character offsets (a sixth of the Rust work) only for the pieces that hold a segment start
        marked = sorted({p for p, _ in wanted})
        plain = sorted(set(range(len(pieces))).difference(marked))
        encs: list[Any] = [None] * len(pieces)
        quick = getattr(backend, "encode_batch_fast", backend.encode_batch)  # ids only
        for group, encode in ((marked, backend.encode_batch), (plain, quick)):
            for i, enc in zip(
                group, encode([pieces[i] for i in group], add_special_tokens=False), strict=True
            ):
                encs[i] = enc
        return [e.ids for e in encs], {(p, rel): _first_token(encs[p], rel) for p, rel in wanted}
    first, redo = fast.starts(pieces, flat, offsets, wanted)
    ids = flat.tolist()
    bounds = offsets.tolist()
    piece_ids = [ids[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    if redo:  # pieces whose byte lengths cannot place a start: the tokenizers library's offsets do
        encs = dict(
            zip(redo, backend.encode_batch([pieces[p] for p in redo], add_special_tokens=False), strict=True)
        )
        for p, enc in encs.items():
            piece_ids[p] = enc.ids
        first.update({(p, rel): _first_token(encs[p], rel) for p, rel in wanted if p in encs})
    return piece_ids, first


def _first_token(enc: Any, rel: int) -> int | None:
    """As Encoding.char_to_token finds it: the first token whose offsets hold character `rel`; one that also
    holds the character before (straddling the start) stays behind."""
    t = enc.char_to_token(rel)
    if t is not None and rel and enc.char_to_token(rel - 1) == t:
        t += 1
    return t


def _assemble(
    refs: list[int],
    marks: list[tuple[int, int]],
    piece_ids: list[list[int]],
    first: dict[tuple[int, int], int | None],
) -> tuple[list[int], list[tuple[int, int]]] | None:
    """One text's ids and segment token ranges from its pieces' ids; None when a segment start lies on no
    token of its piece."""
    ids: list[int] = []
    firsts = []
    for r in refs:
        firsts.append(len(ids))
        if r < 0:
            ids.append(~r)
        else:
            ids += piece_ids[r]
    bounds = []
    for j, rel in marks:
        if j < 0:
            bounds.append(len(ids))
            continue
        r = refs[j]
        if r < 0:  # an added token is one token over all its characters
            t = 1 if rel else 0
        else:
            t = first[r, rel]
            if t is None:
                return None
        bounds.append(firsts[j] + t)
    bounds.append(len(ids))
    return ids, [(a, b if b > a else a) for a, b in zip(bounds, bounds[1:], strict=False)]


def _ranges_from_offsets(offsets: list[tuple[int, int]], starts: list[int]) -> list[tuple[int, int]]:
    owner = [max(bisect.bisect_right(starts, a) - 1, 0) for a, _ in offsets]
    ranges = []
    for i in range(len(starts)):
        first = bisect.bisect_left(owner, i)
        ranges.append((first, bisect.bisect_right(owner, i)))
    return ranges
