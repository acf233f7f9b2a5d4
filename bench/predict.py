"""Evaluation throughput: samples/s of batched greedy generation at batch sizes 1, 8 and 32 on builtin:tiny.

.venv/bin/python bench/predict.py [--model DIR] [--samples 64] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import time

from tuneboard.config import Config
from tuneboard.data.pipeline import load_conversations
from tuneboard.data.tokenize import encode_prompts
from tuneboard.evaluate.workflow import generate_batched
from tuneboard.model.load import load_for_inference
from tuneboard.model.tiny import bundled_data_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="builtin:tiny")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-sizes", default="1,8,32")
    args = ap.parse_args()
    loaded = load_for_inference(Config(model_name_or_path=args.model))
    convs, _ = load_conversations(["triage_test"], bundled_data_dir(), max_samples=args.samples)
    for c in convs:
        c.messages = c.messages[:-1]
    prompts = encode_prompts(convs, loaded.template, loaded.tokenizer)
    # a fixed number of new tokens (no early stop) so every batch size does the same work
    gen = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens, do_sample=False)
    generate_batched(loaded, prompts[:4], Config(per_device_eval_batch_size=4), gen)  # warm-up
    rates = {}
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        start = time.perf_counter()
        generate_batched(loaded, prompts, Config(per_device_eval_batch_size=bs), gen)
        rates[bs] = len(prompts) / (time.perf_counter() - start)
        print(f"batch {bs:>3}: {rates[bs]:8.2f} samples/s", flush=True)
    first = min(rates)
    for bs in rates:
        print(f"batch {bs:>3} / batch {first}: {rates[bs] / rates[first]:.2f}x")


if __name__ == "__main__":
    main()
