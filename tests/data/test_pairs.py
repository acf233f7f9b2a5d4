"""Preference pairs (ranking: true): LLaMA-Factory's alpaca and sharegpt layouts -> Conversation with a rejected
reply -> prompt + chosen / prompt + rejected rows with the replies labelled; truncation; the stage check."""

from __future__ import annotations

import json

import pytest

from tuneboard.data.formats import ASSISTANT, USER, Conversation, Message
from tuneboard.data.pairs import check_stage, encode_pairs, fit_pair
from tuneboard.data.pipeline import load_conversations
from tuneboard.data.templates.named import get_template
from tuneboard.data.tokenize import IGNORE
from tuneboard.errors import DataError

QWEN = get_template("qwen")


def write_registry(tmp_path, entries: dict, files: dict) -> None:
    (tmp_path / "dataset_info.json").write_text(json.dumps(entries), encoding="utf-8")
    for name, records in files.items():
        (tmp_path / name).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


def test_alpaca_and_sharegpt_pairs_read(tmp_path):
    write_registry(
        tmp_path,
        {
            "a": {
                "file_name": "a.json",
                "ranking": True,
                "columns": {
                    "prompt": "instruction",
                    "query": "input",
                    "chosen": "chosen",
                    "rejected": "rejected",
                },
            },
            "s": {
                "file_name": "s.json",
                "formatting": "sharegpt",
                "ranking": True,
                "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
            },
        },
        {
            "a.json": [{"instruction": "问", "input": "题", "chosen": "好", "rejected": "坏"}],
            "s.json": [
                {
                    "conversations": [
                        {"from": "human", "value": "q1"},
                        {"from": "gpt", "value": "a1"},
                        {"from": "human", "value": "q2"},
                    ],
                    "chosen": {"from": "gpt", "value": "good"},
                    "rejected": {"from": "gpt", "value": "bad"},
                }
            ],
        },
    )
    convs, _ = load_conversations(["a", "s"], tmp_path)
    assert [(m.role, m.content) for m in convs[0].messages] == [(USER, "问\n题"), (ASSISTANT, "好")]
    assert convs[0].rejected == Message(ASSISTANT, "坏")
    assert [m.content for m in convs[1].messages] == ["q1", "a1", "q2", "good"]
    assert convs[1].rejected == Message(ASSISTANT, "bad")


def test_bad_pairs_and_media_columns_are_refused(tmp_path):
    write_registry(
        tmp_path,
        {
            "s": {"file_name": "s.json", "formatting": "sharegpt", "ranking": True},
            "m": {"file_name": "s.json", "formatting": "sharegpt", "columns": {"images": "images"}},
        },
        {"s.json": [{"conversations": [{"from": "human", "value": "q"}], "chosen": "text", "rejected": {}}]},
    )
    with pytest.raises(DataError, match="field 'chosen' must be a message object"):
        load_conversations(["s"], tmp_path)
    with pytest.raises(DataError, match="multimodal models are not supported yet"):
        load_conversations(["m"], tmp_path)


def test_stage_and_data_must_agree():
    pair = Conversation([Message(USER, "q"), Message(ASSISTANT, "a")], rejected=Message(ASSISTANT, "b"))
    plain = Conversation([Message(USER, "q"), Message(ASSISTANT, "a")])
    check_stage("dpo", [pair], ["p"])
    check_stage("sft", [plain], ["p"])
    with pytest.raises(DataError, match="train them with stage: dpo or stage: rm"):
        check_stage("sft", [pair, plain], ["p"])
    with pytest.raises(DataError, match="1 of 2 records of p have no rejected reply"):
        check_stage("rm", [pair, plain], ["p"])


def decoded(tok, ids, labels):
    """(untrained text, trained text) of a row: pairs are labelled only on the final reply, at the end."""
    at = next(i for i, lab in enumerate(labels) if lab != IGNORE)
    assert all(lab != IGNORE for lab in labels[at:]) and labels[at:] == ids[at:]
    return tok.decode(ids[:at]), tok.decode(ids[at:])


def test_pair_masks_golden(tiny_tokenizer):
    """Golden: the qwen rendering of a two-turn pair, the prompt shared, only the final reply trained."""
    conv = Conversation(
        [Message(USER, "你好"), Message(ASSISTANT, "在"), Message(USER, "讲个笑话")],
        system="sys",
        rejected=Message(ASSISTANT, "不讲"),
    )
    conv.messages.append(Message(ASSISTANT, "好的"))
    enc, stats = encode_pairs([conv], QWEN, tiny_tokenizer, cutoff_len=1024)
    prompt = (
        "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n在<|im_end|>\n"
        "<|im_start|>user\n讲个笑话<|im_end|>\n<|im_start|>assistant\n"
    )
    c = decoded(tiny_tokenizer, enc["chosen_input_ids"][0], enc["chosen_labels"][0])
    r = decoded(tiny_tokenizer, enc["rejected_input_ids"][0], enc["rejected_labels"][0])
    assert c == (prompt, "好的<|im_end|>\n")
    assert r == (prompt, "不讲<|im_end|>\n")
    assert (stats.kept, stats.truncated, stats.dropped_no_target) == (1, 0, 0)
    labelled = [x for side in ("chosen", "rejected") for x in enc[f"{side}_labels"][0] if x != IGNORE]
    assert stats.trained_tokens == len(labelled)


def test_truncation_keeps_prompt_tail_and_reply_heads(tiny_tokenizer):
    assert fit_pair([1, 2, 3, 4], [5, 6], [7], 10) == ([1, 2, 3, 4], [5, 6], [7])
    assert fit_pair(list(range(10)), [50, 51, 52], [60], 8) == ([5, 6, 7, 8, 9], [50, 51, 52], [60])
    assert fit_pair([1, 2], list(range(20)), [9], 8) == ([1, 2], list(range(6)), [9])
    assert fit_pair(list(range(10)), list(range(20)), [9], 8) == ([6, 7, 8, 9], [0, 1, 2, 3], [9])
    long = Conversation([Message(USER, "前缀 " * 200 + "问题结尾"), Message(ASSISTANT, "答")])
    long.rejected = Message(ASSISTANT, "错")
    enc, stats = encode_pairs([long], QWEN, tiny_tokenizer, cutoff_len=32)
    assert stats.truncated == 1 and stats.kept == 1
    ids, labels = enc["chosen_input_ids"][0], enc["chosen_labels"][0]
    assert len(ids) <= 32
    prompt, reply = decoded(tiny_tokenizer, ids, labels)
    assert prompt.endswith("问题结尾<|im_end|>\n<|im_start|>assistant\n") and reply == "答<|im_end|>\n"
