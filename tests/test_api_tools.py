"""Function calling through `tuneboard api`: `tools` reach the prompt as the template writes them, a reply
made of <tool_call> blocks comes back as OpenAI `tool_calls` (streaming or not), and the calls and their
results sent back are rendered as the official Qwen template renders them.

The engine is scripted (its replies are given) over a real template and the tiny tokenizer; the server
is the real app on 127.0.0.1, asked with the openai client."""

from __future__ import annotations

import json

import pytest

from tuneboard.data.templates.hf_jinja import JinjaTemplate, to_jinja
from tuneboard.data.templates.named import get_template
from tuneboard.inference.engine import Engine, Reply

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "查询城市天气",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "巴黎和罗马的天气？"}]
CALLS = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "巴黎"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "罗马"}}\n</tool_call>'
)


class Scripted(Engine):
    """An engine whose next reply is set by the test; it records the prompt text it was given."""

    def __init__(self, template, tokenizer) -> None:
        self.template, self.tokenizer, self.name = template, tokenizer, "scripted"
        self.script: list[str] = []
        self.prompts: list[str] = []

    def stream(self, messages, system=None, stop=None, reply=None, cancel=None, tools=None, **gen):
        reply = reply if reply is not None else Reply()
        ids = self.encode(messages, system, tools)
        self.prompts.append(self.tokenizer.decode(ids))
        reply.prompt_tokens, reply.completion_tokens = len(ids), len(self.script)
        yield from self.script
        reply.text = "".join(self.script)


@pytest.fixture(scope="module")
def served(tiny_tokenizer, serve_app):
    from openai import OpenAI

    from tuneboard.api.server import create_app

    engine = Scripted(get_template("qwen"), tiny_tokenizer)
    with serve_app(create_app(engine)) as url:
        yield engine, OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)


def test_a_call_reply_comes_back_as_tool_calls(served):
    engine, client = served
    engine.script = [
        "<tool_call>\n",
        '{"name": "get_weather", ',
        '"arguments": {"city": "巴黎"}}\n</tool_call>',
    ]
    res = client.chat.completions.create(model="scripted", messages=ASK, tools=[WEATHER])
    choice = res.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "巴黎"}
    prompt = engine.prompts[-1]
    assert "# Tools" in prompt and json.dumps(WEATHER, ensure_ascii=False) in prompt


def test_streamed_calls_never_leak_into_content(served):
    engine, client = served
    engine.script = ["好的，", "我查一下。\n<tool", "_call>\n", CALLS[len("<tool_call>\n") :]]
    chunks = list(
        client.chat.completions.create(model="scripted", messages=ASK, tools=[WEATHER], stream=True)
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == "好的，我查一下。\n"
    calls = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert [(tc.index, tc.function.name, json.loads(tc.function.arguments)) for tc in calls] == [
        (0, "get_weather", {"city": "巴黎"}),
        (1, "get_weather", {"city": "罗马"}),
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_reply_that_is_not_a_clean_call_stays_text(served):
    engine, client = served
    for script in (["<tool_call>\n{not json}\n</tool_call>"], ['<tool_call>\n{"name": "get_weather"']):
        engine.script = script
        res = client.chat.completions.create(model="scripted", messages=ASK, tools=[WEATHER])
        assert res.choices[0].finish_reason == "stop" and res.choices[0].message.content == script[0]
        chunks = list(
            client.chat.completions.create(model="scripted", messages=ASK, tools=[WEATHER], stream=True)
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == script[0]
    engine.script = ["<tool_call> is a tag."]  # without tools nothing is held back or read
    chunks = list(client.chat.completions.create(model="scripted", messages=ASK, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "<tool_call> is a tag."


def test_calls_and_parallel_results_sent_back_render_as_the_exported_template(served):
    engine, client = served
    engine.script = ["巴黎 21°C，罗马 25°C。"]
    calls = [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "巴黎"}'},
        },
        {
            "id": "c2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "罗马"}'},
        },
    ]
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temperature": 21}'},
        {"role": "tool", "tool_call_id": "c2", "content": '{"temperature": 25}'},
    ]
    res = client.chat.completions.create(model="scripted", messages=messages, tools=[WEATHER])
    assert (
        res.choices[0].message.content == "巴黎 21°C，罗马 25°C。" and not res.choices[0].message.tool_calls
    )
    want = JinjaTemplate(to_jinja(get_template("qwen"))).apply(messages, True, [WEATHER])
    assert engine.prompts[-1] == want
    assert want.count("<|im_start|>user") == 2  # both results in one message
    assert (
        '<tool_response>\n{"temperature": 21}\n</tool_response>\n<tool_response>\n{"temperature": 25}' in want
    )


def test_what_cannot_be_done_is_refused(served, tiny_tokenizer):
    import openai

    engine, client = served
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        client.chat.completions.create(
            model="scripted", messages=ASK, tools=[WEATHER], tool_choice="required"
        )
    for tools in ([{"type": "function"}], ["get_weather"], {"type": "function"}):
        with pytest.raises(openai.BadRequestError, match="'tools' must be a list"):
            client.chat.completions.create(model="scripted", messages=ASK, tools=tools)
    with pytest.raises(openai.BadRequestError, match="tool_calls"):
        bad = [*ASK, {"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}, ASK[0]]
        client.chat.completions.create(model="scripted", messages=bad)
    engine.script = ["hi"]
    res = client.chat.completions.create(model="scripted", messages=ASK, tools=[WEATHER], tool_choice="none")
    assert res.choices[0].message.content == "hi" and "# Tools" not in engine.prompts[-1]
    llama = Scripted(get_template("llama3"), tiny_tokenizer)
    from tuneboard.errors import TuneboardError

    with pytest.raises(TuneboardError, match="template llama3 does not write tool definitions"):
        llama.encode(ASK, tools=[WEATHER])
    with pytest.raises(TuneboardError, match="several tool results in a row"):
        two = [
            *ASK,
            {"role": "assistant", "tool_calls": calls_of("f")},
            *[{"role": "tool", "content": "r"}] * 2,
        ]
        llama.encode(two)


def calls_of(name: str) -> list[dict]:
    return [{"type": "function", "function": {"name": name, "arguments": "{}"}}]
