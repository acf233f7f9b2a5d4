"""Named chat templates (the `Template` machinery is in base.py): a `Conversation` -> text segments.

Data layer, step 4 of the flow. The rendered text of a named template equals the model family's
official chat template character for character (deviations are listed in each template's `notes`);
`tokenize.py` turns the segments into labels. "auto" (the tokenizer's own Jinja template) is in hf_jinja.py.
"""

from __future__ import annotations

from ...errors import ConfigError
from ..formats import ASSISTANT, FUNCTION, OBSERVATION, USER
from .base import Qwen3Template, Template

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
ALPACA_SYSTEM = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
IM_HEADER = "<|im_start|>assistant\n"
_QWEN_TOOL = "<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n" + IM_HEADER
# Qwen2.5 and Qwen3 write tool definitions into the system message and calls as <tool_call> blocks
_QWEN_TOOLS = dict(
    tools=(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{content}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call>"
    ),
    tool_call="<tool_call>\n{content}\n</tool_call>",
    results_join="\n</tool_response>\n<tool_response>\n",  # one user message, one block per result
)
_CHATML = dict(
    system="<|im_start|>system\n{content}<|im_end|>\n",
    user="<|im_start|>user\n{content}<|im_end|>\n" + IM_HEADER,
    assistant="{content}<|im_end|>",
    separator="\n",
    header=IM_HEADER,
    stop_words=("<|im_end|>",),
)
_LLAMA3_HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"
_GEMMA_HEADER = "<start_of_turn>model\n"
_DS_BOS, _DS_EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
_ALL_ROLES = ("system", USER, ASSISTANT, OBSERVATION, FUNCTION)

TEMPLATES: dict[str, Template] = {}


def register(t: Template) -> Template:
    TEMPLATES[t.name] = t
    return t


register(Template("empty", notes="LLaMA-Factory 'empty': contents concatenated, no end-of-turn marker."))
register(
    Template(
        "default",
        system="System: {content}{eos}\n",
        user="Human: {content}{eos}\nAssistant:",
        assistant="{content}{eos}",
        separator="\n",
        eos_token="<|im_end|>",
        stop_words=("<|im_end|>",),
        notes="LLaMA-Factory 'default'; {eos} is the tokenizer's eos (resolve_template binds it).",
    )
)
register(
    Template(
        "alpaca",
        user="### Instruction:\n{content}\n\n### Response:\n",
        assistant="{content}{eos}",
        separator="\n\n",
        default_system=ALPACA_SYSTEM,
        eos_token="<|im_end|>",
        stop_words=("<|im_end|>",),
        notes="LLaMA-Factory 'alpaca' (Stanford Alpaca prompt); {eos} is the tokenizer's eos.",
    )
)
register(
    Template(
        "chatml",
        observation="<|im_start|>tool\n{content}<|im_end|>\n" + IM_HEADER,
        notes="Generic ChatML (role-based template, e.g. teknium/OpenHermes-2.5-Mistral-7B); tool role 'tool'.",
        **_CHATML,
    )
)
register(
    Template(
        "qwen",
        default_system=QWEN_SYSTEM,
        observation=_QWEN_TOOL,
        notes=(
            "Qwen2.5-Instruct: ChatML with its default system prompt; tools in the system message, calls as "
            "<tool_call>, results as <tool_response>. Arguments given as a JSON string are written as they are "
            "(Qwen3's rule; Qwen2.5's template would quote the string)."
        ),
        **_QWEN_TOOLS,
        **_CHATML,
    )
)
register(
    Qwen3Template(
        "qwen3",
        observation=_QWEN_TOOL,
        notes="Qwen3 hybrid thinking (Qwen/Qwen3-8B); no default system. See Qwen3Template.",
        **_QWEN_TOOLS,
        **_CHATML,
    )
)
register(
    Template(
        "qwen3_nothink",
        observation=_QWEN_TOOL,
        notes="Qwen3-*-Instruct-2507 (LLaMA-Factory's qwen3 examples): ChatML, no default system, no think blocks.",
        **_QWEN_TOOLS,
        **_CHATML,
    )
)
register(
    Template(
        "llama3",
        prefix="<|begin_of_text|>",
        system="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
        user="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>" + _LLAMA3_HEADER,
        assistant="{content}<|eot_id|>",
        observation="<|start_header_id|>ipython<|end_header_id|>\n\n{content}<|eot_id|>" + _LLAMA3_HEADER,
        header=_LLAMA3_HEADER,
        strip=_ALL_ROLES,
        stop_words=("<|eot_id|>", "<|eom_id|>"),
        notes="Meta-Llama-3-8B-Instruct; the official template trims every message; tool results as 'ipython'.",
    )
)
register(
    Template(
        "glm4",
        prefix="[gMASK]<sop>",
        system="<|system|>\n{content}",
        user="<|user|>\n{content}<|assistant|>",
        assistant="\n{content}",
        observation="<|observation|>\n{content}<|assistant|>",
        header="<|assistant|>",
        train_suffix="<|endoftext|>",
        stop_words=("<|endoftext|>", "<|user|>", "<|observation|>"),
        notes="THUDM/glm-4-9b-chat; no end-of-turn marker, so training adds <|endoftext|> (an eos) after replies.",
    )
)
register(
    Template(
        "mistral",
        prefix="<s>",
        user="[INST] {content}[/INST]",
        assistant=" {content}</s>",
        observation='[TOOL_RESULTS] {"content": {content}}[/TOOL_RESULTS]',
        function="[TOOL_CALLS] {content}</s>",
        system_in_user="{system}\n\n{content}",
        system_user="last",
        strip=(ASSISTANT,),
        stop_words=("</s>",),
        notes=(
            "Mistral-7B-Instruct-v0.3: system before the LAST user message. Officially it shows only in a "
            "generation prompt; a finished conversation keeps it there instead of dropping it."
        ),
    )
)
register(
    Template(
        "gemma",
        prefix="<bos>",
        user="<start_of_turn>user\n{content}<end_of_turn>\n" + _GEMMA_HEADER,
        assistant="{content}<end_of_turn>",
        separator="\n",
        observation="<start_of_turn>tool\n{content}<end_of_turn>\n" + _GEMMA_HEADER,
        system_in_user="{system}\n\n{content}",
        header=_GEMMA_HEADER,
        strip=(USER, ASSISTANT, OBSERVATION, FUNCTION),
        stop_words=("<end_of_turn>", "<eos>"),
        notes="gemma-2/3 it: the official template trims messages; gemma-3 puts the system before the first user.",
    )
)
register(
    Template(
        "deepseek",
        prefix=_DS_BOS,
        system="{content}\n\n",
        user="User: {content}\n\nAssistant:",
        assistant=" {content}" + _DS_EOS,
        header="Assistant:",
        stop_words=(_DS_EOS,),
        notes="deepseek-llm-7b-chat / DeepSeek-V2-Chat (LLaMA-Factory's 'deepseek'); the space after 'Assistant:' is trained.",
    )
)


def names() -> list[str]:
    return sorted([*TEMPLATES, "auto"])


def tool_templates() -> list[str]:
    """The named templates that write tool definitions and calls (as their families' official ones do)."""
    return sorted(n for n, t in TEMPLATES.items() if t.renders_tools)


def get_template(name: str | None) -> Template:
    """A named template; 'auto' and None are resolved from the tokenizer by `resolve_template`."""
    if name in TEMPLATES:
        return TEMPLATES[name]
    import difflib

    close = difflib.get_close_matches(str(name), names(), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"unknown template '{name}'{hint} (known: {', '.join(names())})")
