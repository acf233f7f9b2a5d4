"""How a conversation is rendered: `Template` (one family's formats) turns a `Conversation` into text
`Segment`s, each marked trained or not; `Qwen3Template` adds the think blocks.

Data layer, step 4 of the flow. The named templates themselves are in named.py.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field

from ..formats import ASSISTANT, FUNCTION, PROMPT_ROLES, USER, Conversation, Message
from ..toolcalls import call_json, parse_calls, parse_tools, tojson

_PLACEHOLDER = re.compile(r"\{(content|system|eos)\}")


@functools.lru_cache(maxsize=256)
def _pieces(fmt: str) -> tuple[str, ...]:
    """fmt split at its placeholders: literal, name, literal, name, ..., literal."""
    return tuple(_PLACEHOLDER.split(fmt))


def substitute(fmt: str, **values: str) -> str:
    """Fill `{content}`, `{system}`, `{eos}` in one pass, so text that itself contains braces is never re-filled."""
    pieces = _pieces(fmt)
    out = [pieces[0]]
    for i in range(1, len(pieces), 2):
        name = pieces[i]
        out.append(values[name] if name in values else "{" + name + "}")
        out.append(pieces[i + 1])
    return "".join(out)


@dataclass(frozen=True)
class Segment:
    text: str
    train: bool  # True for reply text and its end-of-turn marker
    turn: int  # index of the prompt/reply exchange; -1 for the prefix and system block


@dataclass(frozen=True)
class Template:
    """A chat format written as plain strings with `{content}` (and `{system}`, `{eos}`) placeholders.

    `user` and `observation` end with `header`, the assistant header (the generation prompt): it is left
    out after a final prompt message unless `add_generation_prompt`. `assistant` ends with the end-of-turn
    marker, which is trained so the model learns to stop; `separator` follows it and is not trained.
    `train_suffix` is trained text that is NOT part of the official rendering, added after every reply
    only with `render(..., for_training=True)` (for formats that have no end-of-turn marker).
    """

    name: str
    prefix: str = ""
    system: str = "{content}"
    user: str = "{content}"
    assistant: str = "{content}"
    separator: str = ""
    observation: str | None = None  # None: the user format
    function: str | None = None  # None: the assistant format
    default_system: str = ""
    # templates whose official format has no system block put it into the first (or last) user message
    system_in_user: str | None = None
    system_user: str = "first"  # "first" or "last": which user message gets `system_in_user`
    header: str = ""
    strip: tuple[str, ...] = ()  # roles (and "system") whose content the official template trims
    train_suffix: str = ""
    eos_token: str = ""  # the text `{eos}` stands for; `with_eos` rebinds it to a tokenizer's eos
    stop_words: tuple[str, ...] = ()
    # tool use, for families whose official template has it: `tools` is the section added to the system
    # text ({content}: one JSON definition per line), `tool_call` wraps each call of a function reply
    tools: str = ""
    tool_call: str = ""
    results_join: str = ""  # joins the results of parallel calls into one observation ("": not supported)
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for fmt in (self.user, self.observation_format):
            if self.header and not fmt.endswith(self.header):
                raise ValueError(f"template {self.name}: {fmt!r} must end with the header {self.header!r}")
        if self.system_user not in ("first", "last"):
            raise ValueError(f"template {self.name}: system_user must be 'first' or 'last'")

    @property
    def renders_tools(self) -> bool:
        return bool(self.tools)

    @property
    def call_markers(self) -> tuple[str, str] | None:
        """What a generated call is written between (None: replies are not read for calls)."""
        if not (self.tools and self.tool_call):
            return None
        start, _, end = self.tool_call.partition("{content}")
        return start.strip(), end.strip()

    @property
    def observation_format(self) -> str:
        return self.user if self.observation is None else self.observation

    @property
    def function_format(self) -> str:
        return self.assistant if self.function is None else self.function

    @staticmethod
    def fill(fmt: str, content: str) -> str:
        return substitute(fmt, content=content)

    def _fill(self, fmt: str, content: str, system: str = "") -> str:
        return substitute(fmt, content=content, system=system, eos=self.eos_token)

    def clean(self, role: str, content: str) -> str:
        return content.strip() if role in self.strip else content

    def system_text(self, conv: Conversation) -> str:
        system = conv.system or self.default_system
        if conv.tools and self.tools:
            defs = "".join("\n" + tojson(t) for t in parse_tools(conv.tools))
            section = self.fill(self.tools, defs)
            return f"{system}\n\n{section}" if system else section
        return system

    def reply_content(self, msg: Message) -> str:
        """A reply's text inside its format. A function reply: its calls, one per line, each as JSON in
        `tool_call` (written the same way from a dataset's JSON text and from an OpenAI `tool_calls` list)."""
        if msg.role == FUNCTION:
            return "\n".join(
                self.fill(self.tool_call or "{content}", call_json(c)) for c in parse_calls(msg.content)
            )
        return self.clean(msg.role, msg.content)

    def with_eos(self, eos: str | None) -> Template:
        """This template with `{eos}` bound to a tokenizer's eos text (only templates that use the eos)."""
        if not eos or not self.eos_token or eos == self.eos_token:
            return self
        stops = tuple(eos if s == self.eos_token else s for s in self.stop_words)
        return dataclasses.replace(self, eos_token=eos, stop_words=stops)

    def _system_user_index(self, conv: Conversation) -> int:
        users = [i for i, m in enumerate(conv.messages) if m.role == USER]
        if not users:
            return -1
        return users[0] if self.system_user == "first" else users[-1]

    def render(
        self, conv: Conversation, add_generation_prompt: bool = False, *, for_training: bool = False
    ) -> list[Segment]:
        """Segments of the whole conversation; with add_generation_prompt the last message must be a prompt.

        for_training=False gives the official text; True adds `train_suffix` (trained) after each reply.
        """
        msgs = conv.messages
        if add_generation_prompt and msgs and msgs[-1].role not in PROMPT_ROLES:
            raise ValueError(
                "add_generation_prompt needs a conversation that ends with a user/observation message"
            )
        system = self.system_text(conv)
        head = self.prefix
        if system and self.system_in_user is None:
            head += self._fill(self.system, self.clean("system", system))
        segs = [Segment(head, False, -1)]
        into = self._system_user_index(conv) if system and self.system_in_user is not None else -1
        for i, msg in enumerate(msgs):
            turn, last = i // 2, i == len(msgs) - 1
            if msg.role in PROMPT_ROLES:
                content = self.clean(msg.role, msg.content)
                if i == into:
                    content = self._fill(self.system_in_user or "", content, system)
                fmt = self.user if msg.role == USER else self.observation_format
                text = self._fill(fmt, content)
                if last and not add_generation_prompt and self.header:
                    text = text[: -len(self.header)]
                segs.append(Segment(text, False, turn))
                if last and add_generation_prompt:
                    segs += self._after_header(turn)
            else:
                segs += self._reply(conv, i)
                if for_training and self.train_suffix:
                    segs.append(Segment(self.train_suffix, True, turn))
                segs.append(Segment(self.separator, False, turn))
        return [s for s in segs if s.text]

    def _reply(self, conv: Conversation, i: int) -> list[Segment]:
        msg = conv.messages[i]
        fmt = self.assistant if msg.role == ASSISTANT else self.function_format
        return [Segment(self._fill(fmt, self.reply_content(msg)), True, i // 2)]

    def _after_header(self, turn: int) -> list[Segment]:
        return []

    def text(
        self, conv: Conversation, add_generation_prompt: bool = False, *, for_training: bool = False
    ) -> str:
        return "".join(s.text for s in self.render(conv, add_generation_prompt, for_training=for_training))

    def prompt_text(self, conv: Conversation) -> str:
        """Text to feed for generating the next reply (conv ends with a user/observation message)."""
        return self.text(conv, add_generation_prompt=True)


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EMPTY_THINK = "<think>\n\n</think>\n\n"


@dataclass(frozen=True)
class Qwen3Template(Template):
    """Qwen3 (hybrid thinking): replies after the last user query carry a think block, as the official template.

    The official template renders `<think>\\n{reasoning}\\n</think>\\n\\n` before a reply that comes after the
    last user query when it is the final message or has reasoning (an empty block when there is none);
    earlier replies are rendered without their reasoning. `enable_thinking` only decides whether an empty
    think block is part of the reply (True: trained, the model writes it after the header) or of the prompt
    (False: not trained; the generation prompt ends with the empty block, as the official template does).
    """

    enable_thinking: bool = True

    def _last_query(self, conv: Conversation) -> int:
        for j in range(len(conv.messages) - 1, -1, -1):
            m = conv.messages[j]
            wrapped = m.content.startswith("<tool_response>") and m.content.endswith("</tool_response>")
            if m.role == USER and not wrapped:
                return j
        return len(conv.messages) - 1

    def _reply(self, conv: Conversation, i: int) -> list[Segment]:
        msg, turn = conv.messages[i], i // 2
        content, reasoning = self.reply_content(msg), ""
        if THINK_CLOSE in content:
            reasoning = content.split(THINK_CLOSE)[0].rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n")
            content = content.split(THINK_CLOSE)[-1].lstrip("\n")
        segs = []
        if i > self._last_query(conv) and (i == len(conv.messages) - 1 or reasoning):
            thought = reasoning.strip("\n")
            block = f"{THINK_OPEN}\n{thought}\n{THINK_CLOSE}\n\n"
            segs.append(Segment(block, self.enable_thinking or bool(reasoning), turn))
            content = content.lstrip("\n")
        fmt = self.assistant if msg.role == ASSISTANT else self.function_format
        return [*segs, Segment(self._fill(fmt, content), True, turn)]

    def _after_header(self, turn: int) -> list[Segment]:
        return [] if self.enable_thinking else [Segment(EMPTY_THINK, False, turn)]


def end_of_turn(t) -> str | None:
    """The special text that ends a reply (trained, and a stop token for generation)."""
    return t.stop_words[0] if t.stop_words else None
