"""Preprocessing benchmark: tuneboard's tokenization (records/s) on generated Alpaca data, plus the padding
fraction of random batches of 4 and the share of prompt tokens. See bench/README.md ("Preprocessing").

    .venv/bin/python bench/preprocess.py                         # 50,000 records, builtin tiny tokenizer
    .venv/bin/python bench/preprocess.py --model DIR --template qwen --cutoff-len 512 --workers 2 --repeat 3
    .venv/bin/python bench/preprocess.py --write-dataset /tmp/bench_data --no-run   # the same data for LLaMA-Factory
    .venv/bin/python bench/preprocess.py --dataset-dir /tmp/bench_data           # reuse written data

The data is generated (seeded, no download): Chinese and English instructions, optional inputs and outputs
of realistic, long-tailed lengths; some records carry a system prompt and history. It is registered as
`bench_alpaca` with a `columns` map (so LLaMA-Factory reads system and history too).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

NAME = "bench_alpaca"
ENTRY = {
    "file_name": f"{NAME}.json",
    "columns": {
        "prompt": "instruction",
        "query": "input",
        "response": "output",
        "system": "system",
        "history": "history",
    },
}

EN_WORDS = (
    "the a of and to in is for with on that this by from as it be are was at or an which can will your you "
    "data model system water plant soil light garden kitchen recipe bread rice sauce heat oven minute hour day "
    "week year city river mountain road train station ticket price market customer order product service team "
    "project plan report meeting email letter question answer reason result example step method problem error "
    "file folder network server client request response memory disk speed cost budget risk health sleep exercise "
    "study exam school teacher student book chapter story character history culture language music movie game "
    "simple quick careful clear useful important different common small large early late better best first last "
    "explain describe compare improve reduce increase choose check keep start finish write read learn teach build "
    "because however therefore usually often sometimes always never before after while during between around"
).split()
ZH_WORDS = (
    "我们 你 他们 这个 那个 一个 可以 需要 应该 因为 所以 但是 如果 就是 还是 已经 非常 比较 特别 一些 "
    "数据 模型 系统 方法 问题 原因 结果 例子 步骤 计划 报告 会议 邮件 客户 产品 服务 团队 项目 价格 市场 "
    "植物 土壤 阳光 浇水 花园 厨房 菜谱 面包 米饭 酱汁 温度 烤箱 分钟 小时 每天 每周 城市 河流 山区 道路 "
    "火车 车站 门票 健康 睡眠 运动 学习 考试 学校 老师 学生 书籍 章节 故事 历史 文化 语言 音乐 电影 游戏 "
    "简单 快速 仔细 清楚 有用 重要 不同 常见 较小 较大 提前 更好 首先 最后 解释 描述 比较 改进 减少 增加 "
    "选择 检查 保持 开始 完成 写作 阅读 了解 教学 建立 通常 经常 有时 总是 从不 之前 之后 同时 期间 之间"
).split()
EN_TOPICS = (
    "composting at home",
    "a balcony vegetable garden",
    "sourdough bread",
    "time management",
    "learning a new language",
    "saving money each month",
    "a weekend trip to the mountains",
    "writing a cover letter",
    "caching in web servers",
    "how vaccines work",
    "the water cycle",
    "training for a 10 km run",
    "a small online shop",
    "team meetings",
)
ZH_TOPICS = (
    "家庭堆肥",
    "阳台种菜",
    "做发面馒头",
    "时间管理",
    "学习一门外语",
    "每月存钱",
    "周末去山里旅行",
    "写求职信",
    "网站缓存",
    "疫苗的原理",
    "水循环",
    "准备十公里跑步",
    "开一家小网店",
    "开团队例会",
    "失眠的调理",
    "孩子发烧怎么办",
)
EN_INSTR = (
    "Explain {t} in simple terms.",
    "Write a short paragraph about {t}.",
    "Give me {n} practical tips on {t}.",
    "Summarize the text below.",
    "Translate the following text into Chinese.",
    "What are the pros and cons of {t}?",
    "Answer the question using the context.",
    "Rewrite the text below so that it is easier to read.",
    "Classify the text below as positive, negative or neutral.",
    "Write an email to a colleague about {t}.",
)
ZH_INSTR = (
    "用通俗的话解释{t}。",
    "写一段关于{t}的短文。",
    "给出{n}条关于{t}的实用建议。",
    "总结下面这段文字。",
    "把下面的内容翻译成英文。",
    "{t}有哪些优点和缺点？",
    "根据上下文回答问题。",
    "改写下面这段话，让它更容易读懂。",
    "判断下面这段话的情感是正面、负面还是中性。",
    "给同事写一封关于{t}的邮件。",
)
SYSTEMS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in at most five sentences.",
    "你是一个乐于助人的助手。",
    "你是一位耐心的老师，请用简单的语言回答。",
    "You are a customer-service agent for an online shop.",
)


def sentence(rng: random.Random, zh: bool) -> str:
    n = rng.randint(6, 22)
    if zh:
        return "".join(rng.choice(ZH_WORDS) for _ in range(n)) + rng.choice("。。。！？；")
    words = [rng.choice(EN_WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + rng.choice("....!?;")


def text_of(rng: random.Random, zh: bool, chars: int) -> str:
    """Sentences until about `chars` characters (a Chinese character is worth about 2.5 English ones)."""
    budget = chars / 2.5 if zh else chars
    parts, size = [], 0
    while size < budget:
        s = sentence(rng, zh)
        parts.append(s)
        size += len(s)
        if rng.random() < 0.15:
            parts.append("\n")
    return ("" if zh else " ").join(parts).replace(" \n ", "\n").strip()


def lognormal_chars(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, rng.lognormvariate(math.log(median), sigma))))


def record(rng: random.Random) -> dict:
    zh = rng.random() < 0.5
    topics, instrs = (ZH_TOPICS, ZH_INSTR) if zh else (EN_TOPICS, EN_INSTR)
    instruction = rng.choice(instrs).format(t=rng.choice(topics), n=rng.randint(3, 7))
    if rng.random() < 0.3:
        instruction += " " + sentence(rng, zh)
    rec = {
        "instruction": instruction,
        "input": text_of(rng, zh, lognormal_chars(rng, 150, 0.8, 20, 2500)) if rng.random() < 0.4 else "",
        "output": text_of(rng, zh, lognormal_chars(rng, 300, 0.85, 10, 6000)),
    }
    if rng.random() < 0.2:
        rec["system"] = rng.choice(SYSTEMS)
    if rng.random() < 0.1:
        rec["history"] = [
            [
                text_of(rng, zh, rng.randint(10, 120)),
                text_of(rng, zh, lognormal_chars(rng, 200, 0.7, 10, 1500)),
            ]
            for _ in range(rng.randint(1, 3))
        ]
    return rec


def generate(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [record(rng) for _ in range(n)]


def write_dataset(root: Path, records: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / ENTRY["file_name"]).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    (root / "dataset_info.json").write_text(json.dumps({NAME: ENTRY}, indent=2) + "\n", encoding="utf-8")
    return root


def batch_figures(
    lengths: list[int], trained: list[int], batch: int, seed: int, multiple: int | None
) -> dict:
    """Padding fraction of random batches (right padding to the longest, optionally to a multiple), and the
    share of real tokens that carry no label (prompt and template tokens)."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    slots = real = 0
    for i in range(0, len(order) - batch + 1, batch):
        group = [lengths[j] for j in order[i : i + batch]]
        longest = max(group)
        if multiple:
            longest = (longest + multiple - 1) // multiple * multiple
        slots += longest * batch
        real += sum(group)
    total = sum(lengths)
    return {"padding_fraction": 1 - real / slots, "prompt_share": 1 - sum(trained) / total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="tokenizer directory (default: the builtin tiny model)")
    ap.add_argument("--template", default="qwen")
    ap.add_argument("--cutoff-len", type=int, default=512)
    ap.add_argument(
        "--workers", type=int, default=None, help="preprocessing_num_workers (default: in-process)"
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write-dataset", default=None, metavar="DIR", help="write the generated data set here")
    ap.add_argument("--no-run", action="store_true", help="only write the data set (with --write-dataset)")
    ap.add_argument(
        "--dataset-dir", default=None, help="use a data set written earlier instead of generating"
    )
    ap.add_argument("--json", action="store_true", help="print one JSON line per run and a JSON summary")
    a = ap.parse_args(argv)

    tmp = None
    if a.dataset_dir:
        data_dir = Path(a.dataset_dir)
    else:
        t = time.perf_counter()
        records = generate(a.records, a.seed)
        if a.write_dataset:
            data_dir = Path(a.write_dataset)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="tb-bench-")
            data_dir = Path(tmp.name)
        write_dataset(data_dir, records)
        print(
            f"generated {len(records)} records into {data_dir} in {time.perf_counter() - t:.1f}s",
            file=sys.stderr,
        )
        if a.no_run:
            return 0

    from tuneboard.config import Config
    from tuneboard.data import fastbpe
    from tuneboard.data.pipeline import load_conversations, tokenize
    from tuneboard.data.templates.resolve import load_template
    from tuneboard.model import tiny
    from tuneboard.model.load import load_tokenizer

    model_dir = Path(a.model) if a.model else tiny.ensure()
    tokenizer = load_tokenizer(model_dir, Config())
    template = load_template(a.template, tokenizer, model_dir)

    runs = []
    ts = None
    for rep in range(a.repeat):
        fastbpe.clear()  # each run builds its fast tokenizer engine again, as a new process would
        t0 = time.perf_counter()
        convs, _ = load_conversations([NAME], data_dir)
        t1 = time.perf_counter()
        ts = tokenize(convs, template, tokenizer, a.cutoff_len, num_workers=a.workers, use_cache=False)
        t2 = time.perf_counter()
        run = {
            "rep": rep,
            "records": len(convs),
            "kept": len(ts),
            "load_s": round(t1 - t0, 3),
            "tokenize_s": round(t2 - t1, 3),
            "records_per_s_tokenize": round(len(convs) / (t2 - t1), 1),
            "records_per_s_load_tokenize": round(len(convs) / (t2 - t0), 1),
        }
        runs.append(run)
        if a.json:
            print(json.dumps(run), flush=True)

    assert ts is not None
    lengths = ts.lengths().tolist()
    trained = [int((ts.labels[ts.offsets[i] : ts.offsets[i + 1]] != -100).sum()) for i in range(len(ts))]
    figures = batch_figures(lengths, trained, 4, a.seed, multiple=None)
    padded8 = batch_figures(lengths, trained, 4, a.seed, multiple=8)["padding_fraction"]
    s = ts.stats
    summary = {
        "model": str(model_dir),
        "template": getattr(template, "name", "auto"),
        "cutoff_len": a.cutoff_len,
        "workers": a.workers,
        "records": s.records,
        "kept": s.kept,
        "truncated": s.truncated,
        "dropped_no_target": s.dropped_no_target,
        "tokens": s.tokens,
        "trained_tokens": s.trained_tokens,
        "median_records_per_s_tokenize": statistics.median(r["records_per_s_tokenize"] for r in runs),
        "median_records_per_s_load_tokenize": statistics.median(
            r["records_per_s_load_tokenize"] for r in runs
        ),
        "padding_fraction_batch4": round(figures["padding_fraction"], 4),
        "padding_fraction_batch4_multiple8": round(padded8, 4),
        "prompt_share": round(figures["prompt_share"], 4),
    }
    if a.json:
        print(json.dumps(summary))
    else:
        for r in runs:
            print(
                f"run {r['rep']}: load {r['load_s']:.2f}s, tokenize {r['tokenize_s']:.2f}s -> "
                f"{r['records_per_s_tokenize']:.0f} records/s (load+tokenize {r['records_per_s_load_tokenize']:.0f}/s)"
            )
        print(
            f"{s.records} records -> {s.kept} samples ({s.truncated} truncated to {a.cutoff_len}, "
            f"{s.dropped_no_target} dropped), {s.tokens} tokens, {s.trained_tokens} trained\n"
            f"median: {summary['median_records_per_s_tokenize']:.0f} records/s tokenize, "
            f"{summary['median_records_per_s_load_tokenize']:.0f} records/s load+tokenize\n"
            f"padding in random batches of 4: {100 * figures['padding_fraction']:.1f}% "
            f"({100 * padded8:.1f}% padding to a multiple of 8); prompt tokens: {100 * figures['prompt_share']:.1f}%"
        )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
