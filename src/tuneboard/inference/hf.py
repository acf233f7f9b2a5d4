"""ChatEngine: the engine contract on transformers' `generate`, streaming through a text streamer.

Inference layer (backend). Generation on one model is serialised by a lock, so concurrent callers never mix replies.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from .engine import Engine, Reply, context_window
from .generation import GenerationSettings
from .stops import first_stop, releasable


@dataclass
class _Cancel:
    """A StoppingCriteria: stop when the engine flips `flag` (stop string, consumer gone) or the caller
    sets `cancel` (client disconnect, Ctrl-C)."""

    cancel: threading.Event | None = None
    flag: threading.Event = field(default_factory=threading.Event)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self.flag.is_set() or (self.cancel is not None and self.cancel.is_set())
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class ChatEngine(Engine):
    def __init__(self, cfg: Config, loaded: Any = None) -> None:
        from ..model.load import load_for_inference, stop_token_ids

        self.cfg = cfg
        self.loaded = loaded or load_for_inference(cfg)
        self.model, self.tokenizer, self.template = (
            self.loaded.model,
            self.loaded.tokenizer,
            self.loaded.template,
        )
        self.stop_ids = stop_token_ids(self.tokenizer, self.template)
        self.lock = threading.Lock()
        self.name = cfg.model_name_or_path
        text_config = self.model.config.get_text_config()
        self.context_length = context_window(
            self.tokenizer.model_max_length, getattr(text_config, "max_position_embeddings", None)
        )

    def stream(
        self,
        messages: list[dict[str, str]],
        system: str | None = None,
        stop: list[str] | None = None,
        reply: Reply | None = None,
        cancel: threading.Event | None = None,
        tools: list | None = None,
        settings: GenerationSettings | None = None,
        **gen: Any,
    ) -> Iterator[str]:
        """Yield text pieces as they are generated. `reply` (if given) is filled with counts and finish reason;
        setting `cancel` (or closing the generator) stops generation and frees the model. `tools`: function
        definitions (OpenAI form) the template writes into the prompt. `settings`, or else the config's with
        the overrides in `gen` (max_new_tokens=..., temperature=...)."""
        import torch
        from transformers import StoppingCriteriaList

        reply = reply if reply is not None else Reply()
        ids, settings = self.prepare(messages, system, tools, settings, **gen)
        reply.prompt_tokens = len(ids)
        kw = settings.generate_kwargs()
        stopper = _Cancel(cancel)
        streamer = _CountingStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=None)
        inputs = torch.tensor([ids], device=self.model.device)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(
                        input_ids=inputs,
                        attention_mask=torch.ones_like(inputs),
                        streamer=streamer,
                        eos_token_id=self.stop_ids or None,
                        pad_token_id=self.tokenizer.pad_token_id,
                        stopping_criteria=StoppingCriteriaList([stopper]),
                        **kw,
                    )
            except BaseException as exc:  # surfaced to the consumer below
                errors.append(exc)
                streamer.end()

        with self.lock:
            if cancel is not None and cancel.is_set():  # cancelled while it waited for the model
                reply.finish_reason = "cancelled"
                return
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            text = ""
            emitted = 0
            try:
                for piece in streamer:
                    text, safe, hit = releasable(text + piece, stop)
                    if hit:
                        stopper.flag.set()
                    if safe > emitted:
                        yield text[emitted:safe]
                        emitted = safe
                    if hit:
                        break
                if emitted < len(text):
                    yield text[emitted:]
            finally:
                stopper.flag.set()  # consumer gone or done: stop generating
                thread.join()
            if errors:
                raise errors[0]
            reply.text = text
            reply.completion_tokens = streamer.count
            if cancel is not None and cancel.is_set():
                reply.finish_reason = "cancelled"
            elif streamer.count >= settings.max_new_tokens and first_stop(text, stop) is None:
                reply.finish_reason = "length"


def _counting_streamer_class() -> type:
    from transformers import TextIteratorStreamer

    class CountingStreamer(TextIteratorStreamer):
        """Counts generated tokens (the prompt is skipped) while streaming text."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.count = 0
            self._seen_prompt = False

        def put(self, value: Any) -> None:
            if self._seen_prompt:
                self.count += int(value.numel()) if value.dim() == 1 else int(value.shape[-1])
            self._seen_prompt = True
            super().put(value)

    return CountingStreamer


def _CountingStreamer(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - a lazily built class
    return _counting_streamer_class()(*args, **kwargs)
