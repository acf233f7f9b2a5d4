"""Tool definitions and function calls: the shapes datasets hold them in, and how Qwen's templates write them."""

from __future__ import annotations

import pytest

from tuneboard.data.toolcalls import Call, as_tool_calls, call_json, parse_calls, parse_tools

WEATHER = {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_bare_definitions_are_wrapped_and_wrapped_ones_kept():
    wrapped = {"type": "function", "function": WEATHER}
    assert parse_tools('[{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": '
                       '{"type": "string"}}}}]') == [wrapped]  # fmt: skip
    assert parse_tools('{"type": "function", "function": {"name": "f"}}') == [
        {"type": "function", "function": {"name": "f"}}
    ]
    assert parse_tools("[]") == []


@pytest.mark.parametrize("text", ["[{oops", "[1, 2]", '"get_weather"', "null"])
def test_definitions_that_are_not_objects_are_refused(text):
    with pytest.raises(ValueError):
        parse_tools(text)


def test_calls_in_llamafactory_list_and_openai_shapes():
    assert parse_calls('{"name": "f", "arguments": {"x": 1}}') == [Call("f", {"x": 1})]
    assert parse_calls('[{"name": "f", "arguments": {}}, {"name": "g"}]') == [Call("f", {}), Call("g", {})]
    openai = '[{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\\"x\\": 1}"}}]'
    assert parse_calls(openai) == [Call("f", '{"x": 1}')]
    assert as_tool_calls(parse_calls(openai)) == [
        {"type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    ]


@pytest.mark.parametrize("text", ["f(x=1)", "[]", '{"arguments": {}}', '{"name": ""}', "[1]", '{"name": 3}'])
def test_calls_without_a_name_are_refused(text):
    with pytest.raises(ValueError):
        parse_calls(text)


def test_call_json_keeps_non_ascii_and_string_arguments_as_given():
    assert (
        call_json(Call("天气", {"city": "杭州", "n": [1, 2]}))
        == '{"name": "天气", "arguments": {"city": "杭州", "n": [1, 2]}}'
    )
    assert call_json(Call("f", '{"x":1}')) == '{"name": "f", "arguments": {"x":1}}'
