"""Writes data/pt_zh_demo.txt: 80 lines of Chinese hospital-guide text for stage pt (seeded, deterministic).

Each line is one document, as LLaMA-Factory reads a .txt file: a short paragraph saying which department
treats a complaint and what to do before the visit. A .txt file on purpose: builtin:tiny's tokenizer is
trained on data/*.json, and this file must not change it. Registered in data/dataset_info.json as
pt_zh_demo. Run from the repository root: python scripts/gen_pt_demo.py
"""

from __future__ import annotations

import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "pt_zh_demo.txt"
DEPARTMENTS = {
    "内科": (["发烧", "咳嗽", "胸闷", "腹泻", "头晕"], "先测量体温，带上平时吃的药"),
    "外科": (["摔伤", "割伤", "扭伤", "烫伤"], "用干净纱布按压伤口，不要自己涂药膏"),
    "儿科": (["孩子发烧", "婴儿出疹子", "孩子呕吐"], "记录孩子的体温和吃奶情况"),
    "妇产科": (["怀孕后出血", "月经推迟", "孕期腹痛"], "带上产检记录，尽量卧床休息"),
    "眼科": (["眼睛发红", "看东西模糊", "眼睛进了异物"], "用清水冲洗，不要用手揉眼睛"),
    "口腔科": (["牙疼", "牙龈出血", "智齿发炎"], "用温盐水漱口，避免吃太硬的食物"),
}
OPENINGS = ["在医院里，", "分诊台提醒大家：", "很多病人不知道，", "就诊指南写道：", ""]
CLOSINGS = ["如果症状加重，请立即就医。", "夜间可以去急诊。", "挂号前请准备好身份证和医保卡。", ""]


def make(n: int = 80, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    names = sorted(DEPARTMENTS)
    lines: list[str] = []
    k = 0
    while len(lines) < n:  # distinct lines: `data check` counts duplicates
        dept = names[k % len(names)]
        complaints, advice = DEPARTMENTS[dept]
        complaint = rng.choice(complaints)
        line = (
            f"{rng.choice(OPENINGS)}{complaint}应该去{dept}就诊。就诊之前，{advice}。{rng.choice(CLOSINGS)}"
        )
        if line not in lines:
            lines.append(line)
        k += 1
    return lines


if __name__ == "__main__":
    OUT.write_text("\n".join(make()) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
