"""ChatEngine: the engine contract on transformers. Concurrent replies are generated together by
batching.Batcher (dynamic batching: they share each forward pass, up to `max_concurrent`); beam search goes
through `generate`, one reply at a time, under the same lock that each batch step takes. Evaluation's many
prompts (`complete`) go to the same batcher all at once.

Inference layer (backend).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from .batching import DONE, Batcher, Job
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
        self.lock = threading.Lock()  # held for each batch step and for a whole beam search
        self.batcher = Batcher(self.model, self.tokenizer, self.stop_ids, cfg.max_concurrent, self.lock)
        self.max_batch = self.batcher.max_batch
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
        reply = reply if reply is not None else Reply()
        ids, settings = self.prepare(messages, system, tools, settings, **gen)
        reply.prompt_tokens = len(ids)
        if settings.num_beams > 1:
            yield from self._beams(ids, settings, stop, reply, cancel)
            return
        job = Job(ids, settings, cancel)
        self.batcher.submit(job)
        text, emitted = "", 0
        try:
            while (piece := job.out.get()) is not DONE:
                if isinstance(piece, BaseException):
                    raise piece
                text, safe, hit = releasable(text + piece, stop)
                if safe > emitted:
                    yield text[emitted:safe]
                    emitted = safe
                if hit:
                    break
            if emitted < len(text):
                yield text[emitted:]
        finally:
            job.halt.set()  # consumer gone or done: the batch drops the reply at its next step
            job.done.wait()
        self._finish(reply, text, len(job.tokens), settings, stop, cancel)

    def complete(self, prompts: list[list[int]], settings: GenerationSettings) -> list[Reply]:
        """Replies to `prompts` (ids), in their order: all queued in the batcher at once, shortest first (less
        left padding in the batch), each admitted as soon as a row ends. Beam search, and a model whose cache
        the batcher cannot stack, go through `generate` in left-padded batches of `max_concurrent`."""
        if settings.num_beams > 1 or self.max_batch < self.cfg.max_concurrent:
            return self._padded(prompts, settings)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        jobs = [Job(prompts[i], settings) for i in range(len(prompts))]
        try:
            for i in order:
                self.batcher.submit(jobs[i])
            for job in jobs:
                while (piece := job.out.get()) is not DONE:
                    if isinstance(piece, BaseException):
                        raise piece
        finally:
            for job in jobs:  # after an error: the others leave the batch at its next step
                job.halt.set()
            for job in jobs:
                job.done.wait()
        return [self._counted(job.ids, job.tokens, settings) for job in jobs]

    def close(self) -> None:
        self.batcher.close()

    def _counted(self, ids: list[int], tokens: list[int], settings: GenerationSettings) -> Reply:
        """The Reply of generated `tokens` (up to and with the end-of-turn id), decoded whole."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        ended = bool(tokens) and tokens[-1] in self.stop_ids
        finish = "length" if len(tokens) >= settings.max_new_tokens and not ended else "stop"
        return Reply(text, len(ids), len(tokens), finish)

    def _padded(self, prompts: list[list[int]], settings: GenerationSettings) -> list[Reply]:
        """`generate` over left-padded batches of similar length (sorted, then restored)."""
        import torch

        pad, width = self.tokenizer.pad_token_id, self.cfg.max_concurrent
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        replies = [Reply() for _ in prompts]
        for start in range(0, len(order), width):
            rows = order[start : start + width]
            longest = max(len(prompts[i]) for i in rows)
            ids = torch.full((len(rows), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), longest), dtype=torch.long)
            for row, i in enumerate(rows):
                ids[row, longest - len(prompts[i]) :] = torch.tensor(prompts[i])
                mask[row, longest - len(prompts[i]) :] = 1
            with self.lock, torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(self.model.device),
                    attention_mask=mask.to(self.model.device),
                    eos_token_id=self.stop_ids or None,
                    pad_token_id=pad,
                    **settings.generate_kwargs(),
                )
            for row, i in enumerate(rows):
                tokens = out[row, longest:].tolist()
                ends = [k for k, t in enumerate(tokens) if t in self.stop_ids]
                replies[i] = self._counted(prompts[i], tokens[: ends[0] + 1] if ends else tokens, settings)
        return replies

    def load(self) -> dict[str, int]:
        """What /health reports: replies generating together now, and jobs waiting to join them."""
        return self.batcher.load()

    @staticmethod
    def _finish(
        reply: Reply, text: str, count: int, settings: GenerationSettings, stop: Any, cancel: Any
    ) -> None:
        reply.text, reply.completion_tokens = text, count
        if cancel is not None and cancel.is_set():
            reply.finish_reason = "cancelled"
        elif count >= settings.max_new_tokens and first_stop(text, stop) is None:
            reply.finish_reason = "length"

    def _beams(
        self, ids: list[int], settings: GenerationSettings, stop: Any, reply: Reply, cancel: Any
    ) -> Iterator[str]:
        """Beam search: `generate`, alone on the model; the reply comes whole (transformers streams no
        beams: the best one is known only at the end)."""
        import torch
        from transformers import StoppingCriteriaList

        with self.lock:
            if cancel is not None and cancel.is_set():  # cancelled while it waited for the model
                reply.finish_reason = "cancelled"
                return
            inputs = torch.tensor([ids], device=self.model.device)
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=inputs,
                    attention_mask=torch.ones_like(inputs),
                    eos_token_id=self.stop_ids or None,
                    pad_token_id=self.tokenizer.pad_token_id,
                    stopping_criteria=StoppingCriteriaList([_Cancel(cancel)]),
                    **settings.generate_kwargs(),
                )
        tokens = out[0, len(ids) :]
        text, _, _ = releasable(self.tokenizer.decode(tokens, skip_special_tokens=True), stop, final=True)
        if text:
            yield text
        self._finish(reply, text, int(tokens.numel()), settings, stop, cancel)
