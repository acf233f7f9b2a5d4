"""ChatEngine against a bare `model.generate` on the same model and prompt: time to first token and tokens/s.

.venv/bin/python bench/chat.py [--model DIR] [--new-tokens 128] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import TextIteratorStreamer

from tuneboard.config import Config
from tuneboard.inference.hf import ChatEngine

PROMPT = [{"role": "user", "content": "你是谁？请介绍一下你自己。"}]


def bare(engine: ChatEngine, n: int) -> tuple[float, float]:
    """model.generate with a streamer in a thread, as a hand-written app would do it."""
    import threading

    ids = torch.tensor([engine.encode(PROMPT)])
    streamer = TextIteratorStreamer(engine.tokenizer, skip_prompt=True)
    kw = dict(input_ids=ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, streamer=streamer)
    start = time.perf_counter()
    thread = threading.Thread(target=engine.model.generate, kwargs=kw)
    thread.start()
    first = None
    for _ in streamer:
        first = first or time.perf_counter()
    thread.join()
    total = time.perf_counter() - start
    return first - start, n / total


def ours(engine: ChatEngine, n: int) -> tuple[float, float]:
    start = time.perf_counter()
    first = None
    for _ in engine.stream(PROMPT, max_new_tokens=n, min_new_tokens=n, do_sample=False):
        first = first or time.perf_counter()
    total = time.perf_counter() - start
    return first - start, n / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="builtin:tiny")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    engine = ChatEngine(Config(model_name_or_path=args.model, do_sample=False))
    engine.stop_ids = []  # generate exactly --new-tokens in both paths
    results = {"generate": [], "engine": []}
    for _ in range(args.runs + 1):  # the first pair is a warm-up
        results["generate"].append(bare(engine, args.new_tokens))
        results["engine"].append(ours(engine, args.new_tokens))
    for name, rows in results.items():
        ttft = statistics.median(r[0] for r in rows[1:]) * 1000
        tps = statistics.median(r[1] for r in rows[1:])
        print(f"{name:>9}: time to first token {ttft:7.1f} ms, {tps:8.1f} tokens/s (median of {args.runs})")
    g = statistics.median(r[1] for r in results["generate"][1:])
    e = statistics.median(r[1] for r in results["engine"][1:])
    print(f"engine / generate tokens/s: {e / g:.3f}")


if __name__ == "__main__":
    main()
