"""Pre-training text (stage pt): which records are documents, how they become blocks, which stage takes them."""

from __future__ import annotations

import json

import pytest

from tuneboard.data.documents import blocks, document_ids, encode_documents, is_document
from tuneboard.data.formats import ASSISTANT, USER, Conversation, Message
from tuneboard.data.pairs import check_stage
from tuneboard.data.pipeline import load_conversations
from tuneboard.errors import DataError


class CharTokenizer:
    """One id per character (its code point); 1 = BOS, 2 = EOS: golden blocks are easy to write by hand."""

    bos_token_id, eos_token_id = 1, 2

    def __init__(self, add_bos_token: bool = False) -> None:
        self.add_bos_token = add_bos_token

    def __call__(self, texts, add_special_tokens=False):
        assert not add_special_tokens
        return {"input_ids": [[ord(ch) for ch in t] for t in texts]}


def doc(text: str) -> Conversation:
    return Conversation([Message(USER, text)])


def test_blocks_golden_every_token_trained_nothing_dropped():
    enc, stats = encode_documents([doc("abc"), doc("de"), doc("f")], CharTokenizer(), cutoff_len=4)
    a, b, c, d, e, f = map(ord, "abcdef")
    # the documents end to end, each closed by EOS, cut every 4 tokens; the short last block is kept
    assert enc["input_ids"] == [[a, b, c, 2], [d, e, 2, f], [2]]
    assert enc["labels"] == enc["input_ids"]
    assert (stats.records, stats.kept, stats.tokens, stats.trained_tokens) == (3, 3, 9, 9)


def test_bos_only_where_the_tokenizer_adds_one():
    assert document_ids([doc("ab")], CharTokenizer(add_bos_token=True)) == [[1, 97, 98, 2]]
    assert document_ids([doc("ab")], CharTokenizer()) == [[97, 98, 2]]
    assert blocks([[5, 6], [7]], 8) == [[5, 6, 7]]


def test_text_entries_txt_files_and_text_records_are_documents(tmp_path):
    (tmp_path / "c4.jsonl").write_text('{"text": "第一篇"}\n{"text": "second"}\n', encoding="utf-8")
    (tmp_path / "notes.txt").write_text("line one\n\n  \nline two\n", encoding="utf-8")
    (tmp_path / "bare.json").write_text(json.dumps([{"text": "x", "meta": 1}]), encoding="utf-8")
    (tmp_path / "qa.json").write_text(json.dumps([{"question": "q", "output": "a"}]), encoding="utf-8")
    info = {
        "c4_demo": {"file_name": "c4.jsonl", "columns": {"prompt": "text"}},  # LLaMA-Factory's entry
        "notes": {"file_name": "notes.txt"},
        "qa": {
            "file_name": "qa.json",
            "columns": {"prompt": "question"},
        },  # the default `output` still a reply
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    convs, _ = load_conversations(["c4_demo", "notes", str(tmp_path / "bare.json")], tmp_path)
    assert [c.messages[0].content for c in convs] == ["第一篇", "second", "line one", "line two", "x"]
    assert all(is_document(c) for c in convs)
    (qa,), _ = load_conversations(["qa"], tmp_path)
    assert not is_document(qa) and [m.content for m in qa.messages] == ["q", "a"]


def test_a_text_record_without_text_is_named(tmp_path):
    (tmp_path / "c4.jsonl").write_text('{"text": "ok"}\n{"text": ""}\n', encoding="utf-8")
    info = {"c4": {"file_name": "c4.jsonl", "columns": {"prompt": "text"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(DataError, match=r"record 1: field 'text' \(the text\) is missing or empty"):
        load_conversations(["c4"], tmp_path)


def test_stage_pt_takes_only_documents_and_only_pt_takes_them():
    chat = Conversation([Message(USER, "q"), Message(ASSISTANT, "a")])
    check_stage("pt", [doc("t")], ["c4"])
    with pytest.raises(DataError, match="stage pt trains on plain text, but 1 of 2 records of d"):
        check_stage("pt", [doc("t"), chat], ["d"])
    for stage in ("sft", "dpo", "rm"):
        with pytest.raises(DataError, match="records are plain text|have no rejected reply"):
            check_stage(stage, [doc("t")], ["c4"])
    with pytest.raises(
        DataError,
        match=r"c4: 1 of 2 records are plain text \(no reply\); continue pre-training on them with stage: pt",
    ):
        check_stage("sft", [doc("t"), chat], ["c4"])
