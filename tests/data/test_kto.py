"""KTO data (kto_tag): LLaMA-Factory's sharegpt and alpaca layouts -> Conversation.kto_tag; tags that are not
booleans refused by record; the stage check; the golden masks of a record's row and its KL row; truncation; the
collator."""

from __future__ import annotations

import json

import pytest

from tuneboard.data.collate import KTOCollator
from tuneboard.data.formats import ASSISTANT, USER, Conversation, Message
from tuneboard.data.kto import encode_kto, tag_counts
from tuneboard.data.pairs import check_stage
from tuneboard.data.pipeline import load_conversations
from tuneboard.data.templates.named import get_template
from tuneboard.data.tokenize import IGNORE
from tuneboard.errors import DataError

QWEN = get_template("qwen")
KTO_ENTRY = {  # as LLaMA-Factory registers kto_en_demo
    "file_name": "k.json",
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "kto_tag": "label"},
    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
}


def record(question: str, reply: str, label) -> dict:
    msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
    return {"messages": msgs, "label": label}


def write(tmp_path, entries: dict, files: dict) -> None:
    (tmp_path / "dataset_info.json").write_text(json.dumps(entries), encoding="utf-8")
    for name, records in files.items():
        (tmp_path / name).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


def test_sharegpt_and_alpaca_tags_read(tmp_path):
    alpaca = {
        "file_name": "a.json",
        "columns": {"prompt": "instruction", "response": "output", "kto_tag": "ok"},
    }
    write(
        tmp_path,
        {"k": KTO_ENTRY, "a": alpaca, "plain": {"file_name": "a.json"}},
        {
            "k.json": [record("问1", "好", True), record("问2", "坏", False)],
            "a.json": [{"instruction": "问", "output": "答", "ok": False}],
        },
    )
    convs, _ = load_conversations(["k", "a"], tmp_path)
    assert [c.kto_tag for c in convs] == [True, False, False]
    assert [(m.role, m.content) for m in convs[1].messages] == [(USER, "问2"), (ASSISTANT, "坏")]
    assert tag_counts(convs) == (1, 2)
    plain, _ = load_conversations(["plain"], tmp_path)  # no kto_tag column: not KTO data
    assert plain[0].kto_tag is None


@pytest.mark.parametrize(
    ("label", "got"),
    [("true", "'true'"), (1, "1"), (None, "None"), ("missing", "nothing (the field is missing)")],
)
def test_a_tag_that_is_not_a_boolean_is_refused_by_record(tmp_path, label, got):
    bad = record("q", "a", label)
    if label == "missing":
        del bad["label"]
    write(tmp_path, {"k": KTO_ENTRY}, {"k.json": [record("q", "a", True), bad]})
    with pytest.raises(DataError, match=r"record 1: field 'label' \(kto_tag\) must be true") as err:
        load_conversations(["k"], tmp_path)
    assert f"got {got}" in str(err.value)


def test_ranking_and_kto_tag_together_are_refused(tmp_path):
    entry = {**KTO_ENTRY, "ranking": True}
    write(tmp_path, {"k": entry}, {"k.json": [record("q", "a", True)]})
    with pytest.raises(DataError, match="cannot be combined"):
        load_conversations(["k"], tmp_path)


def test_stage_and_tags_must_agree():
    tagged = Conversation([Message(USER, "q"), Message(ASSISTANT, "a")], kto_tag=False)
    plain = Conversation([Message(USER, "q"), Message(ASSISTANT, "a")])
    check_stage("kto", [tagged], ["k"])
    with pytest.raises(DataError, match="1 of 2 records of k have no kto_tag"):
        check_stage("kto", [tagged, plain], ["k"])
    for stage in ("sft", "dpo", "rm", "pt"):
        with pytest.raises(DataError, match="train them with stage: kto"):
            check_stage(stage, [tagged, plain], ["k"])
    with pytest.raises(DataError, match="which stage sft would train as targets"):
        check_stage("sft", [tagged], ["k"])


def split(tok, ids, labels):
    """(untrained text, trained text) of a row: only the final reply is labelled, at the end."""
    at = next(i for i, lab in enumerate(labels) if lab != IGNORE)
    assert all(lab != IGNORE for lab in labels[at:]) and labels[at:] == ids[at:]
    return tok.decode(ids[:at]), tok.decode(ids[at:])


def test_kto_masks_golden(tiny_tokenizer):
    """Golden: the qwen rendering of three records, each prompt + its own reply trained on the reply alone, and
    each KL row = the same prompt + the previous record's reply (the first takes the last one's)."""
    convs = [
        Conversation(
            [Message(USER, "你好"), Message(ASSISTANT, "在"), Message(USER, "讲个笑话")]
            + [Message(ASSISTANT, "好的")],
            system="sys",
            kto_tag=True,
        ),
        Conversation([Message(USER, "几点了")] + [Message(ASSISTANT, "不知道")], kto_tag=False),
        Conversation([Message(USER, "天气")] + [Message(ASSISTANT, "晴")], kto_tag=True),
    ]
    enc, stats = encode_kto(convs, QWEN, tiny_tokenizer, cutoff_len=1024)
    default = (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    )
    prompts = [
        "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n在<|im_end|>\n"
        "<|im_start|>user\n讲个笑话<|im_end|>\n<|im_start|>assistant\n",
        default + "<|im_start|>user\n几点了<|im_end|>\n<|im_start|>assistant\n",
        default + "<|im_start|>user\n天气<|im_end|>\n<|im_start|>assistant\n",
    ]
    replies = ["好的<|im_end|>\n", "不知道<|im_end|>\n", "晴<|im_end|>\n"]
    for k in range(3):
        assert split(tiny_tokenizer, enc["input_ids"][k], enc["labels"][k]) == (prompts[k], replies[k])
        assert split(tiny_tokenizer, enc["kl_input_ids"][k], enc["kl_labels"][k]) == (
            prompts[k],
            replies[k - 1],
        )
    assert enc["kto_tags"] == [True, False, True]
    assert (stats.kept, stats.truncated, stats.dropped_no_target) == (3, 0, 0)
    assert stats.trained_tokens == sum(len(row) - row.count(IGNORE) for row in enc["labels"])


def test_truncation_keeps_the_prompt_tail_and_counts_drops(tiny_tokenizer):
    long = Conversation([Message(USER, "前缀 " * 200 + "问题结尾"), Message(ASSISTANT, "答")], kto_tag=True)
    short = Conversation([Message(USER, "问"), Message(ASSISTANT, "回答" * 50)], kto_tag=False)
    enc, stats = encode_kto([long, short], QWEN, tiny_tokenizer, cutoff_len=32)
    assert (stats.kept, stats.truncated) == (2, 2)
    assert all(len(row) <= 32 for key in ("input_ids", "kl_input_ids") for row in enc[key])
    prompt, reply = split(tiny_tokenizer, enc["input_ids"][0], enc["labels"][0])
    assert prompt.endswith("问题结尾<|im_end|>\n<|im_start|>assistant\n") and reply == "答<|im_end|>\n"
    _, kl_reply = split(tiny_tokenizer, enc["kl_input_ids"][0], enc["kl_labels"][0])
    assert kl_reply.startswith("回答回答")  # the other record's reply, its head kept
    enc, stats = encode_kto([long, short], QWEN, tiny_tokenizer, cutoff_len=1)
    assert (stats.kept, stats.dropped_no_target, len(enc["input_ids"])) == (0, 2, 0)


def test_collator_puts_kl_rows_after_the_records():
    features = [
        {
            "input_ids": [1, 2, 3],
            "labels": [IGNORE, 2, 3],
            "kl_input_ids": [1, 9],
            "kl_labels": [IGNORE, 9],
            "kto_tag": True,
        },
        {
            "input_ids": [4, 5],
            "labels": [IGNORE, 5],
            "kl_input_ids": [4, 2, 3],
            "kl_labels": [IGNORE, 2, 3],
            "kto_tag": False,
        },
    ]
    batch = KTOCollator(pad_id=0, pad_to_multiple_of=None)(features)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 5, 0], [1, 9, 0], [4, 2, 3]]
    assert batch["labels"][2].tolist() == [IGNORE, 9, IGNORE]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0], [1, 1, 0], [1, 1, 1]]
    assert batch["kto_tags"].tolist() == [True, False]
