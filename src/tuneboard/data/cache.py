"""Where tokenized datasets are cached (~/.cache/tuneboard/tokenized) and the key that names one: the
conversations, the template, the tokenizer and the settings that change the tokens.

Data layer; pipeline.py reads and writes the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .formats import Conversation

CACHE_VERSION = "2"  # bump when rendering changes for the same template (2: tools and function calls)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tuneboard" / "tokenized"


def _fingerprint(convs: list[Conversation], template: Any, tokenizer: Any, settings: dict[str, Any]) -> str:
    h = hashlib.sha256(CACHE_VERSION.encode())
    h.update(repr(template).encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update(backend.to_str().encode() if backend is not None else repr(tokenizer).encode())
    for c in convs:  # the source too: cached stats name dropped records by file and index
        h.update(
            json.dumps(
                [c.source, c.system, c.tools, [(m.role, m.content) for m in c.messages]], ensure_ascii=False
            ).encode()
        )
    return h.hexdigest()[:24]
