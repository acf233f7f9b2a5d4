"""Generation settings: the config's generation keys with a request's overrides, for every front end.

Inference layer. `GenerationSettings.from_config` is the one translation of the config (and of what a chat
page, the API or evaluation asks for) into settings; the hf engine and evaluation take `generate_kwargs()`
(transformers' `generate`), the vllm engine `vllm_kwargs()` (vLLM's SamplingParams).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import TuneboardError

# the config's generation keys (config.py declares them); min_new_tokens and seed only come with a request
CONFIG_KEYS = (
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "num_beams",
)
# what a request may override, each with its rule: (type, lowest, lowest allowed itself, highest, wording)
_RULES: dict[str, tuple[type, float, bool, float | None, str]] = {
    "max_new_tokens": (int, 1, True, None, "an integer >= 1"),
    "min_new_tokens": (int, 0, True, None, "an integer >= 0"),
    "temperature": (float, 0, True, None, "a number >= 0"),
    "top_p": (float, 0, False, 1, "a number in (0, 1]"),
    "top_k": (int, 0, True, None, "an integer >= 0 (0: no limit)"),
    "repetition_penalty": (float, 0, False, None, "a number > 0"),
    "num_beams": (int, 1, True, None, "an integer >= 1"),
    "seed": (int, -(2**63), True, 2**63 - 1, "a 64-bit integer"),
}


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    num_beams: int
    min_new_tokens: int = 0
    seed: int | None = None  # the sampling seed of one reply (None: a fresh one each time)

    @classmethod
    def from_config(cls, cfg: Config, **request: Any) -> GenerationSettings:
        """The config's settings with a request's overrides (a value of None: not asked for). Overrides are
        checked here, whoever sends them; a temperature given without do_sample decides it (0 is greedy, as
        OpenAI's API means it). Greedy settings are always plain greedy, whatever the sampling keys say."""
        given = {key: checked(key, value) for key, value in request.items() if value is not None}
        if "temperature" in given and "do_sample" not in given:
            given["do_sample"] = given["temperature"] > 0
        values = {key: getattr(cfg, key) for key in CONFIG_KEYS} | given
        values["do_sample"] = values["do_sample"] and values["temperature"] > 0
        return cls(**values)

    def capped(self, most: int) -> GenerationSettings:
        """The same settings, with a reply of at most `most` tokens (what the context leaves)."""
        longest = min(self.max_new_tokens, most)
        return dataclasses.replace(
            self, max_new_tokens=longest, min_new_tokens=min(self.min_new_tokens, longest)
        )

    def generate_kwargs(self) -> dict[str, Any]:
        """transformers' `generate` keywords; the sampling keys only when sampling (greedy takes none)."""
        kw: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kw |= {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        if self.min_new_tokens:
            kw["min_new_tokens"] = self.min_new_tokens
        return kw

    def vllm_kwargs(self) -> dict[str, Any]:
        """vLLM's SamplingParams keywords (its greedy is temperature 0; its "no top-k" is -1)."""
        if self.num_beams > 1:
            raise TuneboardError("infer_backend: vllm does not do beam search here; set num_beams: 1")
        sampled = self.do_sample
        seeded = {"seed": self.seed} if self.seed is not None else {}
        return seeded | {
            "temperature": self.temperature if sampled else 0.0,
            "top_p": self.top_p if sampled else 1.0,
            "top_k": self.top_k if sampled and self.top_k > 0 else -1,
            "repetition_penalty": self.repetition_penalty,
            "max_tokens": self.max_new_tokens,
            "min_tokens": self.min_new_tokens,
        }


def checked(key: str, value: Any) -> Any:
    """`value` as an override of generation setting `key` (5.0 taken as 5 where a count is meant); a
    TuneboardError saying what is allowed when it is not one."""
    if key == "do_sample":
        if not isinstance(value, bool):
            raise TuneboardError(f"do_sample must be true or false, got {value!r}")
        return value
    if key not in _RULES:
        raise TuneboardError(f"{key!r} is not a generation setting (one of do_sample, {', '.join(_RULES)})")
    kind, low, low_ok, high, wording = _RULES[key]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int and number and not float(value).is_integer():
        number = False
    ok = number and math.isfinite(value) and (value >= low if low_ok else value > low)
    if not ok or (high is not None and value > high):
        raise TuneboardError(f"{key} must be {wording}, got {value!r}")
    return kind(value)
