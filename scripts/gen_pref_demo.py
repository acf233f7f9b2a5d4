"""Writes data/dpo_zh_demo.jsonl: 60 Chinese preference pairs for stages dpo and rm (seeded, deterministic).

A patient asks the triage desk which department to visit; the chosen reply names the department with a short
first-aid tip, the rejected one brushes the patient off. The file is JSON lines on purpose: builtin:tiny's
tokenizer is trained on data/*.json, and this file must not change it. Registered in data/dataset_info.json by
scripts/gen_demo_data.py (DATASET_INFO). Run from the repository root: python scripts/gen_pref_demo.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "dpo_zh_demo.jsonl"
CASES = [
    ("发烧咳嗽三天", "内科", "多喝温水，注意休息"),
    ("膝盖摔伤流血", "外科", "先用干净纱布按压止血"),
    ("孩子五岁，夜里一直哭闹肚子疼", "儿科", "记录孩子疼痛的时间和部位"),
    ("怀孕八周，出现少量出血", "妇产科", "尽量卧床，避免剧烈活动"),
    ("眼睛发红发痒，看东西模糊", "眼科", "不要用手揉眼睛"),
    ("牙龈肿痛，吃饭时更疼", "口腔科", "用温盐水漱口"),
    ("胸口闷，爬楼梯气短", "内科", "避免劳累，尽快就诊"),
    ("手指被刀割了很深的口子", "外科", "抬高伤口并压住止血"),
    ("婴儿出疹子并且发烧", "儿科", "给宝宝穿宽松的衣服"),
    ("月经推迟两个月", "妇产科", "可以先做一次早孕检测"),
    ("被飞溅的碎屑打到眼睛", "眼科", "用清水冲洗，不要揉"),
    ("智齿长出来一直疼", "口腔科", "避免吃太硬的食物"),
]
OPENERS = ["您好，", "医生，", "护士，", "请问，", ""]
ASKS = ["我该挂哪个科？", "应该去哪个科室？", "挂什么科比较好？", "需要看哪个科？"]
RUDE = ["不知道，自己去问。", "随便挂一个吧。", "这个我不管。", "你自己看指示牌。", "排队去，别问我。"]


def make(n: int = 60, seed: int = 16) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for k in range(n):
        symptom, dept, tip = CASES[k % len(CASES)]
        records.append(
            {
                "instruction": f"{rng.choice(OPENERS)}我{symptom}，{rng.choice(ASKS)}",
                "chosen": f"建议您挂{dept}。{tip}，有不适请及时告诉我们。",
                "rejected": rng.choice(RUDE),
            }
        )
    return records


if __name__ == "__main__":
    tmp = OUT.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in make()), encoding="utf-8")
    tmp.replace(OUT)
    print(f"wrote {OUT}")
