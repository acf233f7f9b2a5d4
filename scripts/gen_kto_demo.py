"""Writes data/kto_zh_demo.jsonl: 60 Chinese replies tagged desirable or not, for stage kto (seeded, deterministic).

A patient asks the triage desk which department to visit; half of the records hold a reply that names the
department with a short first-aid tip (`label: true`), the other half a reply that brushes the patient off
(`label: false`), in a random order. The layout is LLaMA-Factory's kto_en_demo: sharegpt `messages` with
role/content tags and the tag in `label`. The file is JSON lines on purpose: builtin:tiny's tokenizer is trained
on data/*.json, and this file must not change it. Registered in data/dataset_info.json by
scripts/gen_demo_data.py (DATASET_INFO). Run from the repository root: python scripts/gen_kto_demo.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "kto_zh_demo.jsonl"
CASES = [
    ("头痛头晕两天", "内科", "先量一下血压"),
    ("脚踝扭伤肿起来了", "外科", "先冰敷，少走动"),
    ("孩子三岁，拉肚子一整天", "儿科", "给孩子补充口服补液盐"),
    ("怀孕五个月，小腿抽筋", "妇产科", "注意补钙，睡前热敷小腿"),
    ("眼睛里进了沙子", "眼科", "眨眼让泪水冲洗，不要揉"),
    ("补过的牙掉了一块", "口腔科", "先别用那一侧咀嚼"),
    ("喉咙痛，吞咽困难", "耳鼻喉科", "多喝温水，少说话"),
    ("皮肤起了很多红疹，很痒", "皮肤科", "不要抓挠，穿宽松衣服"),
    ("烫伤了手背，起了水泡", "外科", "用凉水冲十分钟，别挑破水泡"),
    ("耳朵里嗡嗡响，听不清", "耳鼻喉科", "避免待在吵闹的地方"),
]
OPENERS = ["您好，", "医生，", "护士，", "请问，", ""]
ASKS = ["我该挂哪个科？", "应该去哪个科室？", "挂什么科比较好？", "需要看哪个科？"]
RUDE = ["自己看着办。", "别问我，我很忙。", "随便挂吧。", "这不归我管。", "去那边排队。"]


def make(n: int = 60, seed: int = 17) -> list[dict]:
    rng = random.Random(seed)
    tags = [k % 2 == 0 for k in range(n)]
    rng.shuffle(tags)
    records = []
    for k, good in enumerate(tags):
        symptom, dept, tip = CASES[k % len(CASES)]
        reply = f"建议您挂{dept}。{tip}，有不适请及时告诉我们。" if good else rng.choice(RUDE)
        question = f"{rng.choice(OPENERS)}我{symptom}，{rng.choice(ASKS)}"
        while any(r["messages"][0]["content"] == question for r in records):  # no duplicate questions
            question = f"{rng.choice(OPENERS)}我{symptom}，{rng.choice(ASKS)}"
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
        records.append({"messages": messages, "label": good})
    return records


if __name__ == "__main__":
    tmp = OUT.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in make()), encoding="utf-8")
    tmp.replace(OUT)
    print(f"wrote {OUT}")
