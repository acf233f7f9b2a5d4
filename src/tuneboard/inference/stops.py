"""Stop strings: where a reply is cut, and how much of a growing reply may be shown before it could turn
out to start a stop string. The same rules for every backend (hf.py, vllm.py) and for function-call markers
(calls.py).

Inference layer; plain text functions, no imports.
"""

from __future__ import annotations


def releasable(text: str, stop: list[str] | None, final: bool = False) -> tuple[str, int, bool]:
    """(text cut at the first stop string, how much of it may be shown now, whether a stop string was hit).
    Until the text is final, a tail that could still grow into a stop string is held back."""
    cut = first_stop(text, stop)
    if cut is not None:
        return text[:cut], cut, True
    return text, len(text) if final else len(text) - partial_stop(text, stop), False


def first_stop(text: str, stop: list[str] | None) -> int | None:
    hits = [text.find(s) for s in stop or () if s and s in text]
    return min(hits) if hits else None


def partial_stop(text: str, stop: list[str] | None) -> int:
    """Length of the longest text suffix that is a proper prefix of a stop string."""
    best = 0
    for s in stop or ():
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                best = max(best, k)
                break
    return best
