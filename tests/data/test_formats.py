"""Alpaca / ShareGPT / OpenAI records -> Conversation; every non-empty standard field reaches it."""

from __future__ import annotations

import json

import pytest

from tuneboard.data.formats import (
    ASSISTANT,
    FUNCTION,
    OBSERVATION,
    USER,
    Conversation,
    Message,
    default_tags,
    effective_columns,
    mapped_fields,
    to_conversation,
)
from tuneboard.errors import DataError

ALPACA = effective_columns("alpaca", None)
SHAREGPT = effective_columns("sharegpt", None)
OPENAI = effective_columns("openai", None)
W = "f.json: record 3"


def alpaca(rec, columns=ALPACA):
    return to_conversation(rec, "alpaca", columns, default_tags("alpaca"), W)


def sharegpt(rec, columns=SHAREGPT, tags=None):
    return to_conversation(rec, "sharegpt", columns, tags or default_tags("sharegpt"), W)


def openai(rec):
    return to_conversation(rec, "openai", OPENAI, default_tags("openai"), W)


def pairs(conv: Conversation) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in conv.messages]


# ---- alpaca


def test_alpaca_instruction_and_input_are_joined():
    conv = alpaca({"instruction": "翻译成英文。", "input": "你好", "output": "Hello"})
    assert pairs(conv) == [(USER, "翻译成英文。\n你好"), (ASSISTANT, "Hello")]
    assert conv.system == "" and conv.tools == "" and conv.source == W


def test_alpaca_empty_or_missing_input():
    assert pairs(alpaca({"instruction": "a", "input": "", "output": "b"}))[0] == (USER, "a")
    assert pairs(alpaca({"instruction": "a", "output": "b"}))[0] == (USER, "a")
    assert pairs(alpaca({"instruction": "", "input": "q", "output": "b"}))[0] == (USER, "q")
    assert pairs(alpaca({"instruction": "a", "input": None, "output": "b"}))[0] == (USER, "a")


def test_alpaca_system_history_and_tools_reach_the_conversation_without_columns():
    rec = {
        "instruction": "now",
        "input": "",
        "output": "third",
        "system": "be brief",
        "history": [["q1", "a1"], ["q2", "a2"]],
        "tools": [{"name": "f", "parameters": {}}],
    }
    conv = alpaca(rec)
    assert conv.system == "be brief"
    assert pairs(conv) == [
        (USER, "q1"),
        (ASSISTANT, "a1"),
        (USER, "q2"),
        (ASSISTANT, "a2"),
        (USER, "now"),
        (ASSISTANT, "third"),
    ]
    assert json.loads(conv.tools) == [{"name": "f", "parameters": {}}]
    assert [(u.content, a.content) for u, a in conv.turns] == [("q1", "a1"), ("q2", "a2"), ("now", "third")]


def test_alpaca_custom_columns():
    cols = effective_columns("alpaca", {"prompt": "q", "query": "ctx", "response": "a", "system": "sys"})
    conv = alpaca({"q": "Why?", "ctx": "because", "a": "So.", "sys": "S"}, cols)
    assert pairs(conv) == [(USER, "Why?\nbecause"), (ASSISTANT, "So.")] and conv.system == "S"


def test_alpaca_numbers_become_text():
    conv = alpaca({"instruction": "2+2?", "output": 4})
    assert pairs(conv)[1] == (ASSISTANT, "4")


def test_alpaca_empty_output_is_kept():  # `data check` reports it; tokenize still trains the end of turn
    assert pairs(alpaca({"instruction": "a", "output": ""}))[1] == (ASSISTANT, "")


@pytest.mark.parametrize(
    ("rec", "message"),
    [
        ({"instruction": "a"}, "f.json: record 3: missing required field 'output'"),
        ({"instruction": "a", "output": None}, "f.json: record 3: missing required field 'output'"),
        (
            {"instruction": "a", "output": ["x"]},
            "f.json: record 3: field 'output' must be a string, got list",
        ),
        (
            {"instruction": {"x": 1}, "output": "b"},
            "f.json: record 3: field 'instruction' must be a string, got dict",
        ),
        (
            {"instruction": True, "output": "b"},
            "f.json: record 3: field 'instruction' must be a string, got bool",
        ),
        ({"instruction": "a", "output": "b", "system": 1.5j}, "field 'system' must be a string, got complex"),
        ({"instruction": "", "input": "", "output": "b"}, "field 'instruction' and 'input' are both empty"),
        (
            {"instruction": "a", "output": "b", "history": "q1 a1"},
            "field 'history' must be a list of [user, assistant] pairs",
        ),
        (
            {"instruction": "a", "output": "b", "history": [["q1"]]},
            "field 'history[0]' must be a pair of strings",
        ),
        (
            {"instruction": "a", "output": "b", "history": [["q", "a"], ["q", 2]]},
            "field 'history[1]' must be a pair",
        ),
        (
            {"instruction": "a", "output": "b", "tools": 3},
            "field 'tools' must be a JSON string or list, got int",
        ),
    ],
)
def test_alpaca_errors_name_record_and_field(rec, message):
    with pytest.raises(DataError) as err:
        alpaca(rec)
    assert message in str(err.value)
    assert str(err.value).startswith(W)


def test_record_must_be_an_object():
    with pytest.raises(DataError, match="f.json: record 3: expected an object, got list"):
        alpaca(["instruction", "output"])


# ---- sharegpt


def test_sharegpt_default_tags_and_system_column():
    rec = {
        "conversations": [
            {"from": "human", "value": "hi"},
            {"from": "gpt", "value": "hello"},
            {"from": "human", "value": "bye"},
            {"from": "gpt", "value": "see you"},
        ],
        "system": "polite",
    }
    conv = sharegpt(rec)
    assert conv.system == "polite"
    assert pairs(conv) == [(USER, "hi"), (ASSISTANT, "hello"), (USER, "bye"), (ASSISTANT, "see you")]


def test_sharegpt_system_message_first():
    rec = {
        "conversations": [
            {"from": "system", "value": "S"},
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
        ]
    }
    conv = sharegpt(rec)
    assert conv.system == "S" and pairs(conv) == [(USER, "q"), (ASSISTANT, "a")]
    both = sharegpt({**rec, "system": "column"})
    assert both.system == "column\nS"


def test_sharegpt_function_call_and_observation():
    rec = {
        "conversations": [
            {"from": "human", "value": "weather?"},
            {"from": "function_call", "value": '{"name": "w"}'},
            {"from": "observation", "value": '{"t": 20}'},
            {"from": "gpt", "value": "20 degrees"},
        ],
        "tools": '[{"name": "w"}]',
    }
    conv = sharegpt(rec)
    assert [m.role for m in conv.messages] == [USER, FUNCTION, OBSERVATION, ASSISTANT]
    assert conv.tools == '[{"name": "w"}]'


def test_sharegpt_custom_tags_like_llava():
    tags = default_tags("sharegpt")
    tags.update(role_tag="role", content_tag="content", user_tag="user", assistant_tag="assistant")
    cols = effective_columns("sharegpt", {"messages": "messages"})
    rec = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    assert pairs(sharegpt(rec, cols, tags)) == [(USER, "q"), (ASSISTANT, "a")]


@pytest.mark.parametrize(
    ("msgs", "message"),
    [
        (
            [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}, {"from": "gpt", "value": "c"}],
            "f.json: record 3: field 'conversations': message 1 is user, expected assistant/function (roles must alternate)",
        ),
        (
            [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}],
            "field 'conversations': message 0 is assistant, expected user/observation",
        ),
        (
            [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}],
            "field 'conversations' ends with a user message; it must end with a reply",
        ),
        (
            [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}],
            "field 'conversations[1]'.from is 'bot'; expected one of 'human', 'gpt'",
        ),
        (
            [
                {"from": "human", "value": "a"},
                {"from": "system", "value": "late"},
                {"from": "gpt", "value": "b"},
            ],
            "field 'conversations[1]'.from is 'system'",
        ),
        ([{"from": "human", "value": 3}], "field 'conversations[0]'.value must be a string, got int"),
        ([{"from": "human"}], "field 'conversations[0]'.value must be a string, got NoneType"),
        (["hello"], "field 'conversations[0]' must be an object with 'from' and 'value'"),
        ([], "field 'conversations' must be a non-empty list of messages"),
        ("hello", "field 'conversations' must be a non-empty list of messages"),
    ],
)
def test_sharegpt_errors_name_record_message_and_field(msgs, message):
    with pytest.raises(DataError) as err:
        sharegpt({"conversations": msgs})
    assert message in str(err.value)
    assert str(err.value).startswith(W)


def test_sharegpt_missing_messages_field():
    with pytest.raises(DataError, match="f.json: record 3: missing required field 'conversations'"):
        sharegpt({"messages": []})


# ---- openai


def test_openai_messages_with_system_and_tool():
    rec = {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
            {"role": "tool", "content": "result"},
            {"role": "assistant", "content": "done"},
        ]
    }
    conv = openai(rec)
    assert conv.system == "S"
    assert pairs(conv) == [(USER, "q"), (ASSISTANT, "a"), (OBSERVATION, "result"), (ASSISTANT, "done")]


@pytest.mark.parametrize("content", [None, ""])
def test_openai_tool_calls_are_not_dropped(content):
    calls = [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]
    rec = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": content, "tool_calls": calls},
            {"role": "tool", "content": "r"},
            {"role": "assistant", "content": "a"},
        ]
    }
    conv = openai(rec)
    assert conv.messages[1].role == FUNCTION  # a reply made of calls
    assert json.loads(conv.messages[1].content) == calls


# ---- helpers


def test_effective_columns_keep_standard_names():
    cols = effective_columns("sharegpt", {"messages": "msgs"})
    assert cols == {"messages": "msgs", "system": "system", "tools": "tools"}
    assert effective_columns("alpaca", None)["response"] == "output"


def test_mapped_fields_are_the_column_values():
    cols = effective_columns("alpaca", {"prompt": "q"})
    assert mapped_fields("alpaca", cols, default_tags("alpaca")) == {
        "q",
        "input",
        "output",
        "history",
        "system",
        "tools",
    }


def test_conversation_turns_pair_prompts_and_replies():
    conv = Conversation(
        [Message(USER, "a"), Message(ASSISTANT, "b"), Message(USER, "c"), Message(ASSISTANT, "d")]
    )
    assert [(u.content, a.content) for u, a in conv.turns] == [("a", "b"), ("c", "d")]


# ---- text that is not valid Unicode


def test_a_lone_surrogate_is_named_by_record_and_place():
    """json.loads turns an unpaired "\\ud83d" escape into a lone surrogate, which no tokenizer can encode."""
    bad = json.loads('"ok \\ud83d"')
    cases = [
        (lambda: alpaca({"instruction": "q", "output": "a", "system": bad}), "system holds a lone surrogate"),
        (
            lambda: sharegpt(
                {"conversations": [{"from": "human", "value": bad}, {"from": "gpt", "value": "a"}]}
            ),
            "message 0 (user) holds a lone surrogate '\\ud83d' at character 3",
        ),
    ]
    for make, message in cases:
        with pytest.raises(DataError) as err:
            make()
        assert str(err.value).startswith(W) and message in str(err.value)
    paired = json.loads('"ok \\ud83d\\ude00"')  # a pair is one character, which is fine
    assert alpaca({"instruction": paired, "output": "a"}).messages[0].content == "ok 😀"
