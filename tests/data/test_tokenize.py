"""Conversation -> input_ids + labels on the builtin tiny tokenizer: the loss mask, truncation, dropping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneboard.data.formats import ASSISTANT, USER, Conversation, Message
from tuneboard.data.templates.named import get_template
from tuneboard.data.templates.resolve import resolve_template
from tuneboard.data.tokenize import IGNORE, EncodeStats, encode, encode_prompts

GOLDEN = Path(__file__).parent / "golden" / "label_masks"
QWEN = get_template("qwen")


def conv(*texts: str, system: str = "", source: str = "") -> Conversation:
    roles = [USER, ASSISTANT] * len(texts)
    return Conversation(
        [Message(r, t) for r, t in zip(roles, texts, strict=False)], system=system, source=source
    )


def runs(tok, ids, labels) -> list[tuple[str, bool]]:
    """Decoded runs of consecutive tokens with the same trained-ness."""
    out, start = [], 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or (labels[k] != IGNORE) != (labels[start] != IGNORE):
            out.append((tok.decode(ids[start:k]), labels[start] != IGNORE))
            start = k
    return out


def trained(tok, ids, labels) -> list[str]:
    return [text for text, t in runs(tok, ids, labels) if t]


def one(tok, c, template=QWEN, **kw):
    kw.setdefault("cutoff_len", 4096)
    enc, stats = encode([c], template, tok, **kw)
    assert len(enc["input_ids"]) == 1, stats
    return enc["input_ids"][0], enc["labels"][0], stats


def test_tokens_are_the_rendered_conversation(tiny_tokenizer):
    c = conv("番茄叶子发黄怎么办？", "先检查是否浇水过多。", system="你是园艺顾问。")
    ids, labels, _ = one(tiny_tokenizer, c)
    text = QWEN.text(c, for_training=True)
    assert ids == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(ids) == text
    assert len(labels) == len(ids)


def test_prompt_is_masked_and_reply_with_end_of_turn_is_trained(tiny_tokenizer):
    tok = tiny_tokenizer
    ids, labels, stats = one(tok, conv("What is compost?", "Decomposed organic matter."))
    assert trained(tok, ids, labels) == ["Decomposed organic matter.<|im_end|>"]
    # labels are the ids themselves where trained (the model shifts them), -100 elsewhere
    assert all(lab in (IGNORE, i) for i, lab in zip(ids, labels, strict=True))
    first = next(k for k, lab in enumerate(labels) if lab != IGNORE)
    assert tok.decode(ids[:first]).endswith("<|im_start|>assistant\n")
    assert all(lab == IGNORE for lab in labels[:first])
    # the end-of-turn token is trained, the separator after it is not
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    last = max(k for k, lab in enumerate(labels) if lab != IGNORE)
    assert ids[last] == eot and labels[last] == eot
    assert tok.decode(ids[last + 1 :]) == "\n" and labels[last + 1 :] == [IGNORE] * (len(ids) - last - 1)
    assert stats == EncodeStats(
        records=1, kept=1, tokens=len(ids), trained_tokens=sum(lab != IGNORE for lab in labels)
    )


def test_every_assistant_turn_of_a_multi_turn_record_is_trained(tiny_tokenizer):
    tok = tiny_tokenizer
    c = conv("hi", "hello", "a prime?", "7", "another?", "11", system="terse")
    ids, labels, _ = one(tok, c)
    assert trained(tok, ids, labels) == ["hello<|im_end|>", "7<|im_end|>", "11<|im_end|>"]
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    trained_eots = [k for k, (i, lab) in enumerate(zip(ids, labels, strict=True)) if i == eot and lab == eot]
    all_eots = [k for k, i in enumerate(ids) if i == eot]
    assert len(trained_eots) == 3 and len(all_eots) == 7  # system + 3 user + 3 assistant


def test_mask_history_trains_only_the_last_reply(tiny_tokenizer):
    tok = tiny_tokenizer
    c = conv("hi", "hello", "a prime?", "7", "another?", "11")
    ids, labels, _ = one(tok, c, mask_history=True)
    assert trained(tok, ids, labels) == ["11<|im_end|>"]
    plain_ids, _, _ = one(tok, c)
    assert ids == plain_ids  # the same tokens, only the mask differs


def test_train_on_prompt_trains_user_turns_too(tiny_tokenizer):
    tok = tiny_tokenizer
    c = conv("What is compost?", "Decomposed organic matter.", system="S")
    ids, labels, _ = one(tok, c, train_on_prompt=True)
    text = "".join(trained(tok, ids, labels))
    assert "<|im_start|>user\nWhat is compost?<|im_end|>\n<|im_start|>assistant\n" in text
    assert text.endswith("Decomposed organic matter.<|im_end|>\n")
    masked_ids, masked_labels, _ = one(tok, c)
    assert ids == masked_ids
    assert sum(lab != IGNORE for lab in labels) > sum(lab != IGNORE for lab in masked_labels)


def test_empty_reply_still_trains_the_end_of_turn(tiny_tokenizer):
    ids, labels, _ = one(tiny_tokenizer, conv("say nothing", ""))
    assert trained(tiny_tokenizer, ids, labels) == ["<|im_end|>"]


def test_cutoff_keeps_part_of_a_long_response(tiny_tokenizer):
    tok = tiny_tokenizer
    prompt = "Explain how to grow tomatoes on a balcony in detail. " * 20
    reply = "Choose a sunny spot, a deep pot and a determinate variety; water evenly and feed weekly. " * 20
    full_ids, full_labels, _ = one(tok, conv(prompt, reply))
    ids, labels, stats = one(tok, conv(prompt, reply), cutoff_len=128)
    assert len(full_ids) > 128 and len(ids) == 128
    assert stats.truncated == 1 and stats.kept == 1 and stats.dropped_no_target == 0
    n = sum(lab != IGNORE for lab in labels)
    assert n >= 64  # at least half the budget goes to the reply when the reply is long
    # the kept reply is the head of the full reply, right after the assistant header
    first = next(k for k, lab in enumerate(labels) if lab != IGNORE)
    full_first = next(k for k, lab in enumerate(full_labels) if lab != IGNORE)
    assert ids[first:] == full_ids[full_first : full_first + n]
    assert tok.decode(ids[:first]).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert stats.tokens == 128 and stats.trained_tokens == n


def test_cutoff_keeps_a_short_reply_whole_and_the_end_of_the_prompt(tiny_tokenizer):
    tok = tiny_tokenizer
    prompt = "Here is a very long description of my garden. " * 30 + "So, what should I plant?"
    ids, labels, _ = one(tok, conv(prompt, "Lettuce."), cutoff_len=64)
    assert len(ids) == 64
    assert trained(tok, ids, labels) == ["Lettuce.<|im_end|>"]
    assert "So, what should I plant?<|im_end|>\n<|im_start|>assistant\n" in tok.decode(ids)


def test_cutoff_drops_whole_later_exchanges_first(tiny_tokenizer):
    tok = tiny_tokenizer
    c = conv("first question", "first answer", "second question " * 30, "second answer " * 30)
    ids, labels, stats = one(tok, c, cutoff_len=60)
    assert stats.truncated == 1 and len(ids) <= 60
    assert trained(tok, ids, labels) == ["first answer<|im_end|>"]
    assert "second" not in tok.decode(ids)


def test_cutoff_with_mask_history_keeps_the_trained_last_exchange(tiny_tokenizer):
    tok = tiny_tokenizer
    c = conv("first question " * 30, "first answer " * 30, "second question", "second answer")
    ids, labels, stats = one(tok, c, cutoff_len=40, mask_history=True)
    assert stats.dropped_no_target == 0 and len(ids) == 40
    assert trained(tok, ids, labels) == ["second answer<|im_end|>"]
    assert tok.decode(ids).endswith(
        "<|im_start|>user\nsecond question<|im_end|>\n<|im_start|>assistant\nsecond answer<|im_end|>\n"
    )


def test_record_with_no_trained_token_is_dropped_and_counted(tiny_tokenizer):
    tok = tiny_tokenizer
    empty = get_template("empty")  # no end-of-turn marker: an empty reply has nothing to train
    convs = [
        conv("keep me?", "Yes.", source="data.json: record 0"),
        conv("drop me?", "", source="data.json: record 1"),
        conv("keep me too?", "Ok.", source="data.json: record 2"),
    ]
    enc, stats = encode(convs, empty, tok, cutoff_len=512)
    assert stats.records == 3 and stats.kept == 2 and stats.dropped_no_target == 1
    assert stats.dropped_examples == ["data.json: record 1"]
    assert [tok.decode(i) for i in enc["input_ids"]] == ["keep me?Yes.", "keep me too?Ok."]
    assert all(any(lab != IGNORE for lab in labels) for labels in enc["labels"])


def test_record_truncated_to_nothing_trained_is_dropped(tiny_tokenizer):
    enc, stats = encode([conv("q", "a"), conv("q2", "a2")], QWEN, tiny_tokenizer, cutoff_len=1)
    assert enc == {"input_ids": [], "labels": []}
    assert stats.dropped_no_target == 2 and stats.truncated == 2 and stats.kept == 0
    assert stats.dropped_examples == ["record 0", "record 1"]


def test_stats_add_caps_examples():
    a = EncodeStats(records=3, kept=1, dropped_no_target=2, dropped_examples=["a", "b", "c", "d"])
    b = EncodeStats(records=4, kept=4, tokens=10, dropped_no_target=2, dropped_examples=["e", "f"])
    a.add(b)
    assert (a.records, a.kept, a.tokens, a.dropped_no_target) == (7, 5, 10, 4)
    assert a.dropped_examples == ["a", "b", "c", "d", "e"]


def test_batch_encoding_equals_one_by_one(tiny_tokenizer):
    convs = [conv("a", "b"), conv("中文问题", "中文回答", system="系统"), conv("x", "y", "z", "w")]
    batch, _ = encode(convs, QWEN, tiny_tokenizer, cutoff_len=4096)
    for k, c in enumerate(convs):
        ids, labels, _ = one(tiny_tokenizer, c)
        assert batch["input_ids"][k] == ids and batch["labels"][k] == labels


def test_encode_prompts_end_with_the_assistant_header(tiny_tokenizer):
    (ids,) = encode_prompts([Conversation([Message(USER, "hi")])], QWEN, tiny_tokenizer)
    assert tiny_tokenizer.decode(ids).endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


GOLDEN_CASES = [
    (p.stem, c)
    for p in sorted(GOLDEN.glob("*.json"))
    for c in json.loads(p.read_text(encoding="utf-8"))["cases"]
]


@pytest.mark.parametrize(
    ("name", "case"), GOLDEN_CASES, ids=[f"{n}-{c['conversation']}-{c['setting']}" for n, c in GOLDEN_CASES]
)
def test_label_masks_match_golden(tiny_tokenizer, name, case):
    """tests/data/golden/label_masks (regenerate with tests/data/make_golden_masks.py and review the diff)."""
    template = resolve_template(name, None, tiny_tokenizer.eos_token)
    msgs = [Message(m["role"], m["content"]) for m in case["messages"]]
    c = Conversation(msgs, system=case["system"], tools=case.get("tools", ""))
    ids, labels, _ = one(tiny_tokenizer, c, template, **case["kwargs"])
    assert [list(r) for r in runs(tiny_tokenizer, ids, labels)] == case["runs"]
    assert (len(ids), sum(lab != IGNORE for lab in labels)) == (case["tokens"], case["trained"])


def test_golden_covers_the_settings():
    seen = {(n, c["setting"]) for n, c in GOLDEN_CASES}
    assert {s for _, s in seen} == {"default", "mask_history", "train_on_prompt", "cutoff_24"}
    assert {n for n, _ in seen} >= {"qwen", "qwen3", "glm4"}
