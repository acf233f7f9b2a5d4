"""`tuneboard api` as LangChain's ChatOpenAI (langchain-openai, a second real client beside `openai`) sends and
reads it: invoke and stream, a system message, content as a list of text parts, max_tokens, stop, the usage
it asks for while streaming, and a tool call read back into `AIMessage.tool_calls`.

A scripted engine (its reply pieces are given) over the qwen template and the tiny tokenizer; the real app on
127.0.0.1 (serve_app). No network: ChatOpenAI talks only to that server."""

from __future__ import annotations

import pytest

from tuneboard.data.templates.named import get_template
from tuneboard.inference.engine import Engine, Reply

pytest.importorskip("langchain_openai")

PIECES = ["你好", "，我是", " Tuney", "。"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "查询城市天气",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Scripted(Engine):
    """Streams `script` piece by piece; records each request's messages, system prompt and settings."""

    def __init__(self, tokenizer) -> None:
        self.template, self.tokenizer, self.name = get_template("qwen"), tokenizer, "scripted"
        self.script: list[str] = list(PIECES)
        self.seen: list[dict] = []

    def stream(self, messages, system=None, stop=None, reply=None, cancel=None, tools=None, **gen):
        reply = reply if reply is not None else Reply()
        ids = self.encode(messages, system, tools)
        self.seen.append({"messages": messages, "system": system, "stop": stop, "tools": tools, **gen})
        reply.prompt_tokens, reply.completion_tokens = len(ids), len(self.script)
        yield from self.script
        reply.text = "".join(self.script)


@pytest.fixture(scope="module")
def served(tiny_tokenizer, serve_app):
    from tuneboard.api.server import create_app

    engine = Scripted(tiny_tokenizer)
    with serve_app(create_app(engine)) as url:
        yield engine, url


def chat(url: str, **kw):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=f"{url}/v1", api_key="none", model="scripted", max_retries=0, **kw)


def test_invoke_with_a_system_message_and_text_parts(served):
    from langchain_core.messages import HumanMessage, SystemMessage

    engine, url = served
    engine.script = list(PIECES)
    parts = [{"type": "text", "text": "第一段"}, {"type": "text", "text": "第二段"}]
    answer = chat(url, max_tokens=7, temperature=0).invoke(
        [SystemMessage("简短回答。"), HumanMessage(content=parts)]
    )
    assert answer.content == "".join(PIECES)
    assert answer.response_metadata["finish_reason"] == "stop"
    assert answer.usage_metadata["output_tokens"] == len(PIECES)
    assert answer.usage_metadata["input_tokens"] > 0
    seen = engine.seen[-1]
    assert seen["messages"][0] == {"role": "system", "content": "简短回答。"}
    assert seen["messages"][-1]["content"] == "第一段\n第二段"
    assert seen["settings"].max_new_tokens == 7 and not seen["settings"].do_sample


def test_stream_gives_the_pieces_and_the_usage(served):
    engine, url = served
    engine.script = list(PIECES)
    chunks = list(chat(url, stream_usage=True).stream("你是谁？", stop=["。"]))
    texts = [c.content for c in chunks if c.content]
    assert "".join(texts) == "".join(PIECES) and len(texts) >= 2  # streamed, not one block
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["output_tokens"] == len(PIECES)
    assert engine.seen[-1]["stop"] == ["。"]


def test_a_tool_call_comes_back_as_tool_calls(served):
    engine, url = served
    engine.script = [
        "<tool_call>\n",
        '{"name": "get_weather", "arguments": {"city": "巴黎"}}',
        "\n</tool_call>",
    ]
    model = chat(url).bind_tools([WEATHER])
    for answer in (model.invoke("巴黎天气？"), _joined(model.stream("巴黎天气？"))):
        assert answer.tool_calls and answer.tool_calls[0]["name"] == "get_weather"
        assert answer.tool_calls[0]["args"] == {"city": "巴黎"}
        assert not answer.content
    assert engine.seen[-1]["tools"][0]["function"]["name"] == "get_weather"


def _joined(chunks):
    """LangChain's way of adding streamed message chunks into one message."""
    total = None
    for chunk in chunks:
        total = chunk if total is None else total + chunk
    return total
