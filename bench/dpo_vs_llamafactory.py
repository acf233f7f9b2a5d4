"""DPO throughput: tuneboard and LLaMA-Factory 0.9.5 training DPO with LoRA on the same tiny model, data and YAML,
on the CPU, alternating runs (tb, lf, tb, lf, ...), one process each. See bench/README.md ("DPO").

    .venv/bin/python bench/dpo_vs_llamafactory.py --llamafactory /tmp/lf-venv --repeat 2

Data: seeded Chinese sharegpt preference pairs (chosen: a polite answer repeating the question's words, rejected:
a refusal), registered with ranking: true. Model: builtin:tiny (its cached directory, a Qwen2-architecture
model). Figures: trained pairs/s = pairs x epochs / the Trainer's train_runtime (the training loop only: no
imports, model load or tokenization), and the peak RSS of the whole process (os.wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = "天 地 人 山 水 花 草 树 鸟 鱼 风 雨 云 雪 日 月 星 光 河 海 石 林 城 路".split()


def write_data(root: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    records = []
    for _ in range(n):
        q = "".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30)))
        records.append(
            {
                "conversations": [{"from": "human", "value": f"请用一句话描述：{q}"}],
                "chosen": {
                    "from": "gpt",
                    "value": f"好的。{q}，" + "这是一幅美丽的画面。" * rng.randint(1, 6),
                },
                "rejected": {"from": "gpt", "value": "不知道。" * rng.randint(1, 4)},
            }
        )
    (data / "dpo_bench.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    entry = {
        "file_name": "dpo_bench.json",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
    }
    (data / "dataset_info.json").write_text(json.dumps({"dpo_bench": entry}), encoding="utf-8")
    return data


def yaml_text(model: Path, data: Path, out: Path, a: argparse.Namespace) -> str:
    """LLaMA-Factory's qwen3_lora_dpo.yaml keys, model and sizes swapped; fp32 on the CPU."""
    return f"""model_name_or_path: {model}
stage: dpo
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
pref_beta: 0.1
pref_loss: sigmoid
dataset: dpo_bench
dataset_dir: {data}
template: qwen
cutoff_len: {a.cutoff_len}
overwrite_cache: true
output_dir: {out}
logging_steps: 10
save_strategy: "no"
overwrite_output_dir: true
report_to: none
per_device_train_batch_size: {a.batch}
gradient_accumulation_steps: 1
learning_rate: 5.0e-6
num_train_epochs: 1.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
seed: 42
"""


def run_one(tool: str, a: argparse.Namespace, model: Path, data: Path, work: Path, tag: str) -> dict:
    out = work / tag
    cfg = work / f"{tag}.yaml"
    cfg.write_text(yaml_text(model, data, out, a), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(a.threads)}
    if tool == "tb":
        cmd = [sys.executable, "-m", "tuneboard", "train", str(cfg)]
        env["PYTHONPATH"] = str(ROOT / "src")
    else:
        cmd = [str(Path(a.llamafactory) / "bin" / "llamafactory-cli"), "train", str(cfg)]
        env.pop("PYTHONPATH", None)
    with open(work / f"{tag}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{tag}: failed; see {work / f'{tag}.log'}")
    results = json.loads((out / "all_results.json").read_text())
    return {
        "tag": tag,
        "train_runtime_s": results["train_runtime"],
        "pairs_per_s": a.pairs / results["train_runtime"],
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "train_loss": results.get("train_loss"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--llamafactory", default="/tmp/lf-venv", help="LLaMA-Factory 0.9.5's virtual environment")
    p.add_argument("--workdir", default="/tmp/dpo-bench")
    p.add_argument("--pairs", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--cutoff-len", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from tuneboard.model import tiny

    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model, data = tiny.ensure(), write_data(work, a.pairs, 0)
    runs: dict[str, list[dict]] = {"tb": [], "lf": []}
    for i in range(a.repeat):
        for tool in ("tb", "lf"):
            r = run_one(tool, a, model, data, work, f"{tool}{i}")
            runs[tool].append(r)
            print(json.dumps(r))
    med = {
        t: {k: statistics.median(r[k] for r in rs) for k in ("pairs_per_s", "peak_rss_mb")}
        for t, rs in runs.items()
    }
    print(
        json.dumps(
            {
                "median": med,
                "pairs_per_s_ratio_tb_over_lf": med["tb"]["pairs_per_s"] / med["lf"]["pairs_per_s"],
                "peak_rss_ratio_tb_over_lf": med["tb"]["peak_rss_mb"] / med["lf"]["peak_rss_mb"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
