"""ChatEngine: the one streaming generation engine behind `tuneboard chat`, `webchat` and `api`.

Inference layer. Front ends pass OpenAI-style messages and read text pieces; none calls `generate`.
Generation on one model is serialised by a lock, so concurrent callers never mix replies.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .data.formats import ASSISTANT, FUNCTION, OBSERVATION, USER, Conversation, Message
from .data.templates import tool_templates
from .data.toolcalls import parse_calls, tojson
from .errors import TuneboardError

GEN_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "num_beams")


@dataclass
class Reply:
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled"


def to_conversation(
    messages: list[dict[str, Any]],
    system: str | None = None,
    tools: list | None = None,
    results_join: str = "",
) -> Conversation:
    """OpenAI-style messages -> Conversation ending with a prompt (user or tool message). An assistant
    message's `tool_calls` become a function call; consecutive tool messages (the results of parallel calls)
    are joined with `results_join`, the template's way of writing several results in one message."""
    roles = {"user": USER, "assistant": ASSISTANT, "tool": OBSERVATION, "observation": OBSERVATION}
    conv = Conversation(messages=[], system=system or "", tools=tojson(tools) if tools else "")
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role == "assistant" and m.get("tool_calls"):
            try:
                content = tojson(m["tool_calls"])
                parse_calls(content)
            except (TypeError, ValueError) as err:
                raise TuneboardError(f"messages[{i}].tool_calls: {err}") from None
            conv.messages.append(Message(FUNCTION, content))
            continue
        if not isinstance(content, str):
            raise TuneboardError(f"messages[{i}].content must be a string")
        if role == "system":
            if conv.messages:
                raise TuneboardError(f"messages[{i}]: a system message may only come first")
            conv.system = content
            continue
        if role not in roles:
            raise TuneboardError(f"messages[{i}].role {role!r} is not one of system, user, assistant, tool")
        last = conv.messages[-1] if conv.messages else None
        if roles[role] == OBSERVATION and last is not None and last.role == OBSERVATION:
            if not results_join:
                raise TuneboardError(
                    f"messages[{i}]: this template cannot take several tool results in a row; send them as one"
                )
            last.content += results_join + content
            continue
        conv.messages.append(Message(roles[role], content))
    if not conv.messages or conv.messages[-1].role not in (USER, OBSERVATION):
        raise TuneboardError("the last message must be from the user")
    for k, m in enumerate(conv.messages):
        if (m.role in (USER, OBSERVATION)) != (k % 2 == 0):
            raise TuneboardError("messages must alternate between user and assistant")
    return conv


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


def generation_kwargs(cfg: Config, **overrides: Any) -> dict[str, Any]:
    """The config's generation settings with per-request overrides; greedy when temperature is 0."""
    kw = {k: getattr(cfg, k) for k in GEN_KEYS}
    kw.update({k: v for k, v in overrides.items() if v is not None and k in (*GEN_KEYS, "min_new_tokens")})
    if kw.get("temperature") == 0 or not kw["do_sample"]:
        kw["do_sample"] = False
        for k in ("temperature", "top_p", "top_k"):
            kw.pop(k, None)
    return kw


def make_engine(cfg: Config) -> Any:
    """The engine `infer_backend` asks for: ChatEngine (transformers) or VllmEngine (same interface)."""
    if cfg.infer_backend == "vllm":
        from .vllm_engine import VllmEngine

        return VllmEngine(cfg)
    return ChatEngine(cfg)


class Engine:
    """What ChatEngine and vllm_engine.VllmEngine share: the prompt encoding and the blocking chat call
    (both subclasses define `stream`)."""

    template: Any
    tokenizer: Any

    def encode(
        self, messages: list[dict[str, Any]], system: str | None = None, tools: list | None = None
    ) -> list[int]:
        if tools and not self.template.renders_tools:
            raise TuneboardError(
                f"tools: template {self.template.name} does not write tool definitions into the prompt "
                f"(templates {', '.join(tool_templates())} do, and auto when the model's own template has tools)"
            )
        conv = to_conversation(messages, system, tools, getattr(self.template, "results_join", ""))
        text = self.template.prompt_text(conv)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def chat(self, messages: list[dict[str, Any]], system: str | None = None, **gen: Any) -> Reply:
        reply = Reply()
        for _ in self.stream(messages, system=system, reply=reply, **gen):
            pass
        return reply


class ChatEngine(Engine):
    def __init__(self, cfg: Config, loaded: Any = None) -> None:
        from .model.load import load_for_inference, stop_token_ids

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

    def generation_kwargs(self, **overrides: Any) -> dict[str, Any]:
        return generation_kwargs(self.cfg, **overrides)

    def stream(
        self,
        messages: list[dict[str, str]],
        system: str | None = None,
        stop: list[str] | None = None,
        reply: Reply | None = None,
        cancel: threading.Event | None = None,
        tools: list | None = None,
        **gen: Any,
    ) -> Iterator[str]:
        """Yield text pieces as they are generated. `reply` (if given) is filled with counts and finish reason;
        setting `cancel` (or closing the generator) stops generation and frees the model. `tools`: function
        definitions (OpenAI form) the template writes into the prompt."""
        import torch
        from transformers import StoppingCriteriaList

        reply = reply if reply is not None else Reply()
        ids = self.encode(messages, system, tools)
        reply.prompt_tokens = len(ids)
        kw = self.generation_kwargs(**gen)
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
            elif streamer.count >= kw["max_new_tokens"] and first_stop(text, stop) is None:
                reply.finish_reason = "length"


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
