"""The data flow in one call: load (LLaMA-Factory directories unchanged), split, max_samples, eval set, cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tuneboard.config import Config
from tuneboard.data import pipeline as loader
from tuneboard.data.formats import ASSISTANT, FUNCTION, OBSERVATION, USER, Conversation, Message
from tuneboard.data.pipeline import (
    PackedSet,
    TokenizedSet,
    load_conversations,
    prepare_datasets,
    split,
    tokenize,
)
from tuneboard.data.templates.named import get_template
from tuneboard.data.tokenize import IGNORE
from tuneboard.errors import DataError

QWEN = get_template("qwen")


def pairs(conv: Conversation) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in conv.messages]


def make_convs(n: int) -> list[Conversation]:
    return [
        Conversation([Message(USER, f"question {i}?"), Message(ASSISTANT, f"Answer {i}.")]) for i in range(n)
    ]


def write_alpaca(root: Path, name: str, n: int, prefix: str = "q") -> None:
    root.mkdir(parents=True, exist_ok=True)
    recs = [
        {"instruction": f"{prefix} {i}?", "input": "", "output": f"Answer {prefix} {i}."} for i in range(n)
    ]
    (root / f"{name}.json").write_text(json.dumps(recs), encoding="utf-8")
    info_path = root / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    info[name] = {"file_name": f"{name}.json"}
    info_path.write_text(json.dumps(info), encoding="utf-8")


# ---- a LLaMA-Factory data directory loads unchanged


def test_llamafactory_directory_loads_unchanged(lf_data_dir):
    names = [
        "identity",
        "garden_zh",
        "garden_cols",
        "garden_lines",
        "kitchen_sharegpt",
        "weather_toolcall",
        "rolecontent_demo",
        "messages_sharegpt",
        "messages_openai",
    ]
    convs, specs = load_conversations(names, lf_data_dir)
    assert [s.name for s in specs] == names
    by_source = {}
    for c in convs:
        by_source.setdefault(Path(c.source.split(": record")[0]).name, []).append(c)
    assert {k: len(v) for k, v in by_source.items()} == {
        "identity.json": 3,
        "garden_zh.json": 3,
        "garden_cols.json": 2,
        "garden_lines.jsonl": 2,
        "kitchen_sharegpt.json": 2,
        "weather_toolcall.json": 1,
        "rolecontent_demo.json": 2,
        "messages_chat.json": 4,  # the same file through a sharegpt entry and an openai entry
    }
    assert len(convs) == 19

    # alpaca without columns: system and history still reach the conversation
    succulents = by_source["garden_zh.json"][2]
    assert succulents.system == "你是一位耐心的园艺顾问，回答要简短。"
    assert [m.role for m in succulents.messages] == [USER, ASSISTANT] * 3
    assert succulents.messages[0].content == "我刚买了几盆多肉。"
    assert pairs(by_source["garden_zh.json"][1])[0] == (
        USER,
        "把下面的句子翻译成英文。\n薄荷喜欢半阴和湿润的环境。",
    )

    # alpaca with a columns map
    garlic, harvest = by_source["garden_cols.json"]
    assert pairs(garlic)[0] == (USER, "How deep should I plant garlic cloves?\nZone 6, planting in October.")
    assert garlic.system == "You are a concise gardening assistant."
    assert pairs(harvest)[:2] == [
        (USER, "How deep should I plant garlic cloves?"),
        (ASSISTANT, "About 5 cm deep."),
    ]

    # sharegpt with system column, multi-turn
    rice = by_source["kitchen_sharegpt.json"][0]
    assert rice.system == "你是一位家常菜厨师。" and len(rice.turns) == 2

    # glaive-style tool calls: function_call / observation roles and a tools column
    (weather,) = by_source["weather_toolcall.json"]
    assert [m.role for m in weather.messages] == [USER, FUNCTION, OBSERVATION, ASSISTANT]
    assert json.loads(weather.tools)[0]["name"] == "get_forecast"

    # llava-style custom tags role/content/user/assistant
    assert [len(c.turns) for c in by_source["rolecontent_demo.json"]] == [1, 2]

    # openai-style messages list (system message first) through sharegpt tags and through formatting: openai
    via_sharegpt, via_openai = by_source["messages_chat.json"][:2], by_source["messages_chat.json"][2:]
    assert [pairs(c) for c in via_sharegpt] == [pairs(c) for c in via_openai]
    assert (
        [c.system for c in via_sharegpt]
        == [c.system for c in via_openai]
        == ["You answer in one short paragraph.", ""]
    )


def test_llamafactory_directory_tokenizes(lf_data_dir, tiny_tokenizer, token_cache):
    convs, _ = load_conversations(
        ["garden_zh", "kitchen_sharegpt", "weather_toolcall", "messages_openai"], lf_data_dir
    )
    ts = tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=1024)
    assert len(ts) == len(convs) == 8 and ts.stats.dropped_no_target == 0
    assert ts.stats.trained_tokens == sum(
        int((ts.labels[ts.offsets[i] : ts.offsets[i + 1]] != IGNORE).sum()) for i in range(len(ts))
    )


def test_tool_definitions_and_calls_are_trained_as_qwen_writes_them(lf_data_dir, tiny_tokenizer):
    convs, _ = load_conversations(["weather_toolcall"], lf_data_dir)
    ts = tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=1024)
    ids, labels = ts[0]["input_ids"], ts[0]["labels"]
    text = tiny_tokenizer.decode(ids)
    assert text.startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    )
    assert (
        '<tools>\n{"type": "function", "function": {"name": "get_forecast", "description": "Weather' in text
    )
    trained = tiny_tokenizer.decode([i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE])
    call = '<tool_call>\n{"name": "get_forecast", "arguments": {"city": "杭州", "day": "tomorrow"}}\n</tool_call>'
    assert trained.startswith(call + "<|im_end|>明天杭州很可能下雨")
    assert "<tools>" not in trained and "rain_probability" not in trained


def test_num_samples_of_an_entry(tmp_path):
    write_alpaca(tmp_path, "d", 5)
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    info["d"]["num_samples"] = 2
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    convs, _ = load_conversations(["d"], tmp_path)
    assert [c.messages[0].content for c in convs] == ["q 0?", "q 1?"]


def test_max_samples_applies_to_each_dataset(tmp_path):
    write_alpaca(tmp_path, "a", 5, "a")
    write_alpaca(tmp_path, "b", 5, "b")
    convs, _ = load_conversations(["a", "b"], tmp_path, max_samples=3)
    assert [c.messages[0].content for c in convs] == ["a 0?", "a 1?", "a 2?", "b 0?", "b 1?", "b 2?"]


def test_sources_name_file_and_record(tmp_path):
    write_alpaca(tmp_path, "a", 2)
    convs, _ = load_conversations(["a"], tmp_path)
    assert convs[1].source == f"{tmp_path / 'a.json'}: record 1"


def test_file_path_dataset_sniffs_sharegpt_and_openai(tmp_path):
    share = tmp_path / "s.jsonl"
    share.write_text(
        json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}) + "\n"
    )
    oai = tmp_path / "o.json"
    oai.write_text(
        json.dumps([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
    )
    convs, specs = load_conversations([str(share), str(oai)], tmp_path)
    assert [s.formatting for s in specs] == ["sharegpt", "openai"]
    assert [pairs(c) for c in convs] == [[(USER, "q"), (ASSISTANT, "a")]] * 2


def test_empty_file_has_no_records(tmp_path):
    (tmp_path / "e.json").write_text("[]")
    with pytest.raises(DataError, match=r"e\.json: no records"):
        load_conversations([str(tmp_path / "e.json")], tmp_path)


# ---- split


def test_val_size_fraction():
    convs = make_convs(50)
    train, val = split(convs, 0.1, seed=42)
    assert (len(train), len(val)) == (45, 5)
    assert sorted(id(c) for c in train + val) == sorted(id(c) for c in convs)
    assert not {id(c) for c in train} & {id(c) for c in val}


def test_val_size_fraction_of_a_tiny_set_is_at_least_one():
    assert len(split(make_convs(3), 0.01, seed=1)[1]) == 1


def test_val_size_count():
    train, val = split(make_convs(50), 7.0, seed=42)
    assert (len(train), len(val)) == (43, 7)


def test_split_is_deterministic_under_seed_and_keeps_order():
    convs = make_convs(100)
    a = split(convs, 0.2, seed=3)
    b = split(convs, 0.2, seed=3)
    c = split(convs, 0.2, seed=4)
    assert [id(x) for x in a[1]] == [id(x) for x in b[1]]
    assert [id(x) for x in a[1]] != [id(x) for x in c[1]]
    index = {id(x): i for i, x in enumerate(convs)}
    for part in (*a, *c):
        positions = [index[id(x)] for x in part]
        assert positions == sorted(positions)  # both parts keep the file order


def test_no_val_size_keeps_everything():
    convs = make_convs(4)
    assert split(convs, 0.0, seed=1) == (convs, [])


def test_val_size_leaving_no_training_records():
    with pytest.raises(DataError, match="val_size 5.0 leaves no training records"):
        split(make_convs(5), 5.0, seed=1)


# ---- prepare_datasets (train + eval from the config)


def cfg_for(root: Path, **kw) -> Config:
    base = dict(dataset="a", dataset_dir=str(root), template="qwen", cutoff_len=256, seed=7)
    base.update(kw)
    return Config(**base)


def test_prepare_with_val_size(tmp_path, tiny_tokenizer, token_cache):
    write_alpaca(tmp_path, "a", 20)
    bundle = prepare_datasets(cfg_for(tmp_path, val_size=0.25), tiny_tokenizer, QWEN)
    assert (len(bundle.train), len(bundle.eval)) == (15, 5)
    assert bundle.template_name == "qwen" and bundle.padding_free is False
    again = prepare_datasets(cfg_for(tmp_path, val_size=0.25), tiny_tokenizer, QWEN)
    assert [again.eval[i] for i in range(5)] == [bundle.eval[i] for i in range(5)]


def test_prepare_with_eval_dataset(tmp_path, tiny_tokenizer, token_cache):
    write_alpaca(tmp_path, "a", 12, "train")
    write_alpaca(tmp_path, "t", 4, "test")
    bundle = prepare_datasets(cfg_for(tmp_path, eval_dataset="t"), tiny_tokenizer, QWEN)
    assert (len(bundle.train), len(bundle.eval)) == (12, 4)
    assert "test 0?" in tiny_tokenizer.decode(bundle.eval[0]["input_ids"])


def test_prepare_refuses_val_size_with_eval_dataset(tmp_path, tiny_tokenizer, token_cache):
    write_alpaca(tmp_path, "a", 12)
    write_alpaca(tmp_path, "t", 4)
    with pytest.raises(DataError, match="either val_size .* or eval_dataset, not both"):
        prepare_datasets(cfg_for(tmp_path, eval_dataset="t", val_size=0.1), tiny_tokenizer, QWEN)


def test_prepare_max_samples(tmp_path, tiny_tokenizer, token_cache):
    write_alpaca(tmp_path, "a", 30)
    bundle = prepare_datasets(cfg_for(tmp_path, max_samples=10), tiny_tokenizer, QWEN)
    assert len(bundle.train) == 10 and bundle.eval is None


def test_prepare_empty_after_cutoff(tmp_path, tiny_tokenizer, token_cache):
    write_alpaca(tmp_path, "a", 3)
    with pytest.raises(DataError) as err:
        prepare_datasets(cfg_for(tmp_path, cutoff_len=1), tiny_tokenizer, QWEN)
    msg = str(err.value)
    assert "no training samples left: all 3 records" in msg and "cutoff_len=1" in msg
    assert f"{tmp_path / 'a.json'}: record 0" in msg


def test_prepare_packing(tmp_path, tiny_tokenizer, token_cache):
    write_alpaca(tmp_path, "a", 20)
    bundle = prepare_datasets(cfg_for(tmp_path, packing=True, cutoff_len=64), tiny_tokenizer, QWEN)
    assert isinstance(bundle.train, PackedSet) and bundle.padding_free
    groups = [bundle.train[i]["samples"] for i in range(len(bundle.train))]
    assert sum(len(g) for g in groups) == 20
    assert all(sum(len(s["input_ids"]) for s in g) <= 64 for g in groups)


# ---- the tokenization cache


@pytest.fixture
def count_encodes(monkeypatch):
    """Records tokenized, per chunk: in process (render_and_tokenize) or in a worker pool (encode)."""
    calls = []
    for name in ("encode", "render_and_tokenize"):
        real = getattr(loader, name)

        def counting(convs, *a, real=real, **k):
            calls.append(len(convs))
            return real(convs, *a, **k)

        monkeypatch.setattr(loader, name, counting)
    return calls


def test_second_call_hits_the_cache(tiny_tokenizer, token_cache, count_encodes):
    convs = make_convs(10)
    first = tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=128)
    assert count_encodes == [10] and len(list(token_cache.glob("*.npz"))) == 1
    second = tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=128)
    assert count_encodes == [10]
    assert [second[i] for i in range(10)] == [first[i] for i in range(10)]
    assert second.stats == first.stats


def test_overwrite_cache_rebuilds(tiny_tokenizer, token_cache, count_encodes):
    convs = make_convs(4)
    tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=128)
    tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=128, overwrite_cache=True)
    assert count_encodes == [4, 4]
    assert len(list(token_cache.glob("*.npz"))) == 1


def test_use_cache_false_writes_nothing(tiny_tokenizer, token_cache, count_encodes):
    tokenize(make_convs(4), QWEN, tiny_tokenizer, cutoff_len=128, use_cache=False)
    tokenize(make_convs(4), QWEN, tiny_tokenizer, cutoff_len=128, use_cache=False)
    assert count_encodes == [4, 4] and not token_cache.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"cutoff_len": 64},
        {"train_on_prompt": True},
        {"mask_history": True},
        {"template": "chatml"},
        {"data": True},
    ],
)
def test_different_settings_give_a_different_key(tiny_tokenizer, token_cache, count_encodes, change):
    convs = make_convs(4)
    tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=128)
    kw = {"cutoff_len": 128, **{k: v for k, v in change.items() if k not in ("template", "data")}}
    template = get_template(change.get("template", "qwen"))
    if "data" in change:
        convs = [*convs[:3], Conversation([Message(USER, "changed?"), Message(ASSISTANT, "Yes.")])]
    tokenize(convs, template, tiny_tokenizer, **kw)
    assert count_encodes == [4, 4]
    assert len(list(token_cache.glob("*.npz"))) == 2


def test_cached_stats_name_the_current_files(tmp_path, tiny_tokenizer, token_cache):
    """The same records copied elsewhere: a record dropped there is reported with its own path."""
    for name in ("a", "b"):
        write_alpaca(tmp_path / name, "d", 2)
        convs, _ = load_conversations(["d"], tmp_path / name)
        ts = tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=1)
        assert ts.stats.dropped_examples == [f"{tmp_path / name / 'd.json'}: record {i}" for i in range(2)]


def test_damaged_cache_entry_is_rebuilt(tiny_tokenizer, token_cache, count_encodes):
    convs = make_convs(3)
    tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=128)
    (entry,) = token_cache.glob("*.npz")
    entry.write_bytes(b"garbage")
    again = tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=128)
    assert count_encodes == [3, 3] and len(again) == 3
    assert TokenizedSet.load(entry).ids.tolist() == again.ids.tolist()


def test_workers_give_the_same_result(tiny_tokenizer, token_cache):
    convs = make_convs(2100)  # two chunks of 2000
    one = tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=64, use_cache=False)
    two = tokenize(convs, QWEN, tiny_tokenizer, cutoff_len=64, use_cache=False, num_workers=2)
    assert one.ids.tolist() == two.ids.tolist() and one.labels.tolist() == two.labels.tolist()
    assert one.offsets.tolist() == two.offsets.tolist() and one.stats == two.stats


def test_tokenized_set_round_trip(tmp_path):
    from tuneboard.data.tokenize import EncodeStats

    enc = {"input_ids": [[1, 2, 3], [4, 5]], "labels": [[IGNORE, 2, 3], [IGNORE, 5]]}
    ts = TokenizedSet.from_lists(enc, EncodeStats(records=2, kept=2))
    assert len(ts) == 2 and ts.lengths().tolist() == [3, 2]
    assert ts[1] == {"input_ids": [4, 5], "labels": [IGNORE, 5]}
    ts.save(tmp_path / "x.npz")
    back = TokenizedSet.load(tmp_path / "x.npz")
    assert [back[i] for i in range(2)] == [ts[i] for i in range(2)] and back.stats == ts.stats
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]  # no temporary file left behind


def test_rust_threads_are_lent_only_during_tokenization(tiny_tokenizer, token_cache, monkeypatch):
    """The CLI disables tokenizers' thread pool (forked DataLoader workers); tokenize turns it on for its
    batched calls and puts the setting back before anything can fork."""
    seen = []
    real = loader.render_and_tokenize

    def spy(*a, **k):
        seen.append(os.environ.get("TOKENIZERS_PARALLELISM"))
        return real(*a, **k)

    monkeypatch.setattr(loader, "render_and_tokenize", spy)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    tokenize(make_convs(3), QWEN, tiny_tokenizer, cutoff_len=128, use_cache=False)
    assert seen == ["true"] and os.environ["TOKENIZERS_PARALLELISM"] == "false"
