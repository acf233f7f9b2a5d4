"""Prediction throughput on builtin:tiny: samples/s of `tuneboard eval`'s engine path (the whole split queued in
the dynamic batcher, `Engine.complete`) against the padded-batch `generate` it replaced, at a few batch widths.

PYTHONPATH=src .venv/bin/python bench/predict.py [--model DIR] [--samples 64] [--max-new-tokens 32]

Greedy, with the model's own end of turn: rows end at different steps, which is where padded batches wait
for their longest row and the batcher admits the next prompt instead. Predictions are checked equal.
"""

from __future__ import annotations

import argparse
import time

import torch

from tuneboard.config import Config
from tuneboard.data.pipeline import load_conversations
from tuneboard.data.tokenize import encode_prompts
from tuneboard.evaluate.workflow import load_engine
from tuneboard.inference.generation import GenerationSettings
from tuneboard.model.tiny import bundled_data_dir


def padded(engine, prompts: list[list[int]], width: int, settings: GenerationSettings) -> list[str]:
    """The old path: sorted prompts, left-padded batches of `width`, one `generate` each."""
    tok, pad = engine.tokenizer, engine.tokenizer.pad_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out = [""] * len(prompts)
    for start in range(0, len(order), width):
        rows = order[start : start + width]
        longest = max(len(prompts[i]) for i in rows)
        ids = torch.full((len(rows), longest), pad)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, longest - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[r, longest - len(prompts[i]) :] = 1
        with torch.inference_mode():
            gen = engine.model.generate(
                input_ids=ids,
                attention_mask=mask,
                eos_token_id=engine.stop_ids,
                pad_token_id=pad,
                **settings.generate_kwargs(),
            )
        for r, i in enumerate(rows):
            out[i] = tok.decode(gen[r, longest:], skip_special_tokens=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="builtin:tiny")
    ap.add_argument("--dataset", default="identity")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--widths", default="8,16")
    args = ap.parse_args()
    cfg = Config(model_name_or_path=args.model)
    base = load_engine(cfg)
    convs, _ = load_conversations([args.dataset], bundled_data_dir(), max_samples=args.samples)
    for c in convs:
        c.messages = c.messages[:-1]
    prompts = encode_prompts(convs, base.template, base.tokenizer)
    settings = GenerationSettings.from_config(cfg, do_sample=False, max_new_tokens=args.max_new_tokens)
    padded(base, prompts[:4], 4, settings)  # warm-up
    base.close()
    for width in [int(w) for w in args.widths.split(",")]:
        engine = load_engine(
            Config(model_name_or_path=args.model, per_device_eval_batch_size=width), base.loaded
        )
        start = time.perf_counter()
        old = padded(engine, prompts, width, settings)
        t_old = time.perf_counter() - start
        start = time.perf_counter()
        replies = engine.complete(prompts, settings)
        t_new = time.perf_counter() - start
        engine.close()
        same = [r.text for r in replies] == old
        tokens = sum(r.completion_tokens for r in replies)
        print(
            f"width {width:>3}: padded generate {len(prompts) / t_old:7.2f} samples/s, engine "
            f"{len(prompts) / t_new:7.2f} samples/s ({t_old / t_new:.2f}x), {tokens} tokens, "
            f"predictions equal: {same}",
            flush=True,
        )


if __name__ == "__main__":
    main()
