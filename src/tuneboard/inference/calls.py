"""Function calls in a generated reply: the text before them is content, the calls between the template's
markers become OpenAI `tool_calls` (the API's reply and its stream both read replies this way).

Inference layer, over data/toolcalls.py (which parses calls as datasets write them). A reply that is not a
clean call (unparsable, cut off, text after a call) stays plain text.
"""

from __future__ import annotations

from typing import Any

from ..data.toolcalls import find_calls, openai_calls
from .stops import partial_stop


class CallReader:
    """One reply read as it is generated. Without markers (no tools offered) every piece is content; with
    them, text from the first call marker on is held back until the reply ends."""

    def __init__(self, markers: tuple[str, str] | None) -> None:
        self.markers = markers
        self.text = ""
        self._sent = 0

    def feed(self, piece: str) -> str:
        """Add a generated piece; returns the content that may be shown now."""
        self.text += piece
        safe = len(self.text)
        if self.markers:
            start = self.markers[0]
            held = self.text.find(start)
            safe = held if held >= 0 else len(self.text) - partial_stop(self.text, [start])
        if safe <= self._sent:
            return ""
        out, self._sent = self.text[self._sent : safe], safe
        return out

    def finish(self) -> tuple[str, list[dict[str, Any]] | None]:
        """At the end of the reply: (content not shown yet, the calls in OpenAI form or None)."""
        found = find_calls(self.text, self.markers) if self.markers else None
        if found:
            return "", openai_calls(found[1])
        out, self._sent = self.text[self._sent :], len(self.text)
        return out, None

    def read(self, text: str) -> tuple[str | None, list[dict[str, Any]] | None]:
        """A whole reply -> (content, calls): with calls, the content is the text before them (None if none)."""
        found = find_calls(text, self.markers) if self.markers else None
        if not found:
            return text, None
        return found[0] or None, openai_calls(found[1])
