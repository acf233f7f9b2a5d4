"""Dynamic batching for the transformers engine: concurrent replies share each forward pass. A request's
prompt is prefilled alone (as `generate` would), then its KV cache joins the batch, left-padded to the
batch's length; every decode step runs the whole batch once, and each reply leaves when it ends.

Inference layer (backend helper of hf.py). Each reply keeps its own settings (transformers' logits
processors, its own seeded generator), its own text streamer and its own stop and cancel events; the
consumer (hf.ChatEngine.stream) applies stop strings and reads the pieces from the job's queue.
"""

from __future__ import annotations

import atexit
import inspect
import queue
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .generation import GenerationSettings

DONE = object()  # the last item of a job's queue
IDLE_EXIT_S = 5.0  # the batch thread ends after this long without work; the next job starts it again
_open: weakref.WeakSet = weakref.WeakSet()  # batchers to close at exit


@dataclass
class Job:
    """One reply in the batcher: its prompt and settings in, its text pieces out (then DONE, or the error)."""

    ids: list[int]
    settings: GenerationSettings
    cancel: threading.Event | None = None  # the caller's: client gone, shutdown
    halt: threading.Event = field(default_factory=threading.Event)  # the consumer's: stop string, gone
    out: queue.Queue = field(default_factory=queue.Queue)
    done: threading.Event = field(default_factory=threading.Event)
    tokens: list[int] = field(default_factory=list)  # generated so far (the end-of-turn id included)
    ended: bool = False

    def stopped(self) -> bool:
        return self.halt.is_set() or (self.cancel is not None and self.cancel.is_set())

    def finish(self, last: Any = DONE) -> None:
        """End the job: `last` (DONE, or the error) is the last item of its queue."""
        self.ended = True
        self.out.put(last)
        self.done.set()


class _Reply:
    """What the batcher keeps for a job it admitted: its processors, generator and streamer."""

    def __init__(self, job: Job, tokenizer: Any, stop_ids: list[int]) -> None:
        import torch
        from transformers import (
            LogitsProcessorList,
            MinNewTokensLengthLogitsProcessor,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        s = job.settings
        self.job, self.stop_ids = job, set(stop_ids)
        procs = LogitsProcessorList()  # in the order `generate` applies them
        if s.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(s.repetition_penalty))
        if s.min_new_tokens and stop_ids:
            procs.append(MinNewTokensLengthLogitsProcessor(len(job.ids), s.min_new_tokens, list(stop_ids)))
        if s.do_sample:
            if s.temperature != 1.0:
                procs.append(TemperatureLogitsWarper(s.temperature))
            if s.top_k > 0:
                procs.append(TopKLogitsWarper(s.top_k))
            if s.top_p < 1.0:
                procs.append(TopPLogitsWarper(s.top_p))
            self.generator = torch.Generator()
            if s.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(s.seed)
        self.procs = procs
        self.streamer = _text_streamer(tokenizer, job.out)

    @property
    def plain_greedy(self) -> bool:
        return not self.job.settings.do_sample and not self.procs

    def pick(self, logits: Any) -> int:
        """The next token from this reply's row of logits ([1, vocab])."""
        import torch

        if self.procs:
            ids = torch.tensor([self.job.ids + self.job.tokens], device=logits.device)
            logits = self.procs(ids, logits)
        if not self.job.settings.do_sample:
            return int(torch.argmax(logits, dim=-1))
        probs = torch.softmax(logits, dim=-1).cpu()
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def accept(self, token: int) -> bool:
        """Add a generated token; True when the reply has ended (end of turn, or its longest reply)."""
        import torch

        job = self.job
        job.tokens.append(token)
        if token not in self.stop_ids:
            self.streamer.put(torch.tensor([token]))
        return token in self.stop_ids or len(job.tokens) >= job.settings.max_new_tokens

    def end(self, error: BaseException | None = None) -> None:
        if error is None:
            self.streamer.end()
        self.job.finish(error if error is not None else DONE)


class Batcher:
    """Generates the replies of every submitted job, at most `max_batch` at once, on one thread. `lock` is
    held for each step, so whoever else holds it (beam search, a test) pauses the batch."""

    def __init__(self, model: Any, tokenizer: Any, stop_ids: list[int], max_batch: int, lock: Any) -> None:
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, list(stop_ids)
        self.max_batch = max_batch if _mergeable(model) else 1
        self.lock = lock
        self.waiting: deque[Job] = deque()
        self.active: list[_Reply] = []
        self.cache: Any = None  # the batch's KV cache, rows in the order of `active`
        self.mask: Any = None  # [batch, cached length]: 0 where a row is left padding
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        # transformers 5.25 renamed the forward's `past_key_values` to `cache` (the old name warns)
        self._cache_kw = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )
        _open.add(self)

    def close(self) -> None:
        """Stop the thread once the replies in flight have ended (at interpreter exit: a thread still
        inside torch when Python finalises aborts the process)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)

    def submit(self, job: Job) -> None:
        with self._wake:
            self.waiting.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tuneboard-batcher", daemon=True)
                self._thread.start()
            self._wake.notify()

    def load(self) -> dict[str, int]:
        """Replies generating now ("batch") and jobs waiting to join ("waiting")."""
        return {"batch": len(self.active), "waiting": len(self.waiting), "max_batch": self.max_batch}

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self.active and not self.waiting and not self._closed:
                    if not self._wake.wait(
                        IDLE_EXIT_S
                    ):  # idle: the thread ends (and no longer holds the model)
                        self._thread = None
                        return
                if self._closed and not self.active:
                    for job in self.waiting:
                        job.finish(RuntimeError("the engine was closed"))
                    self.waiting.clear()
                    return
                for job in [job for job in self.waiting if job.stopped()]:  # gone while it waited
                    self.waiting.remove(job)
                    job.finish()
                joining = []
                while self.waiting and len(self.active) + len(joining) < self.max_batch:
                    joining.append(self.waiting.popleft())
            try:
                with self.lock:
                    for job in joining:
                        self._join(job)
                    if self.active:
                        self._step()
            except BaseException as exc:  # noqa: BLE001 - handed to every reply in flight
                for reply in self.active:
                    reply.end(exc)
                for job in joining:
                    if not job.ended:
                        job.finish(exc)
                self.active, self.cache, self.mask = [], None, None

    def _join(self, job: Job) -> None:
        """Prefill the job's prompt alone, pick its first token, and add its cache to the batch."""
        import torch
        from transformers import DynamicCache

        reply = _Reply(job, self.tokenizer, self.stop_ids)
        if job.stopped():  # cancelled while it waited
            reply.end()
            return
        device = self.model.device
        ids = torch.tensor([job.ids], device=device)
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():  # the cache is filled in place
            out = self.model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                use_cache=True,
                logits_to_keep=1,
                **{self._cache_kw: cache},
            )
        if reply.accept(reply.pick(out.logits[:, -1, :].float())):
            reply.end()
            return
        mask = torch.ones((1, len(job.ids)), dtype=torch.long, device=device)
        if not self.active:
            self.cache, self.mask = cache, mask
        else:
            self.cache, self.mask = _merged(self.cache, self.mask, cache, mask)
        self.active.append(reply)

    def _step(self) -> None:
        """One forward pass of the batch: each reply's last token in, each reply's next token out."""
        import torch

        device = self.model.device
        last = torch.tensor([[r.job.tokens[-1]] for r in self.active], device=device)
        positions = torch.tensor(
            [[len(r.job.ids) + len(r.job.tokens) - 1] for r in self.active], device=device
        )
        mask = torch.cat([self.mask, torch.ones_like(last)], dim=1)
        with torch.inference_mode():
            out = self.model(
                input_ids=last,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{self._cache_kw: self.cache},
            )
        self.mask = mask
        logits = out.logits[:, -1, :].float()
        greedy = torch.argmax(logits, dim=-1).tolist()  # what every plain greedy reply takes
        keep = []
        for row, reply in enumerate(self.active):
            if reply.job.stopped():
                reply.end()
                continue
            token = greedy[row] if reply.plain_greedy else reply.pick(logits[row : row + 1])
            if reply.accept(token):
                reply.end()
            else:
                keep.append(row)
        if len(keep) < len(self.active):
            self.active = [self.active[row] for row in keep]
            if not keep:
                self.cache = self.mask = None
            else:
                self.cache, self.mask = _selected(self.cache, self.mask, keep)


def _mergeable(model: Any) -> bool:
    """Whether this model's KV cache is plain per-layer tensors (no sliding window, no hybrid layers), the
    kind whose rows can be padded and stacked; other models generate one reply at a time."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    try:
        layers = DynamicCache(config=model.config).layers
    except Exception:  # noqa: BLE001 - a config the cache cannot read: do not batch
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def _left_pad(t: Any, length: int) -> Any:
    import torch.nn.functional as F

    return F.pad(t, (0, 0, length - t.shape[-2], 0)) if t.shape[-2] < length else t


def _merged(cache: Any, mask: Any, other: Any, other_mask: Any) -> tuple[Any, Any]:
    """The batch's cache and mask with `other`'s rows added below, both left-padded to the longer length."""
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    length = max(mask.shape[1], other_mask.shape[1])
    rows = []
    for mine, theirs in zip(cache.layers, other.layers, strict=True):
        keys = torch.cat([_left_pad(mine.keys, length), _left_pad(theirs.keys, length)])
        values = torch.cat([_left_pad(mine.values, length), _left_pad(theirs.values, length)])
        rows.append((keys, values))
    masks = [F.pad(m, (length - m.shape[1], 0)) for m in (mask, other_mask)]
    return DynamicCache(ddp_cache_data=rows), torch.cat(masks)


def _selected(cache: Any, mask: Any, keep: list[int]) -> tuple[Any, Any]:
    """The batch's cache and mask with only the rows `keep`, the columns that are padding in all of them cut."""
    import torch
    from transformers import DynamicCache

    index = torch.tensor(keep, device=mask.device)
    mask = mask.index_select(0, index)
    first = int(torch.nonzero(mask.sum(0))[0])
    rows = [
        (
            layer.keys.index_select(0, index)[..., first:, :],
            layer.values.index_select(0, index)[..., first:, :],
        )
        for layer in cache.layers
    ]
    return DynamicCache(ddp_cache_data=rows), mask[:, first:]


def _text_streamer(tokenizer: Any, out: queue.Queue) -> Any:
    """transformers' TextStreamer (words released whole, no half characters) putting text into `out`."""
    from transformers import TextStreamer

    class QueueStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                out.put(text)

    return QueueStreamer(tokenizer, skip_prompt=False, skip_special_tokens=True)


@atexit.register
def _close_all() -> None:
    for batcher in list(_open):
        batcher.close()
