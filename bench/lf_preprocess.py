#!/usr/bin/env python
"""Time LLaMA-Factory 0.9.5 SFT preprocessing only (no model load, no training).

The LLaMA-Factory side of bench/README.md ("Preprocessing"); not part of tuneboard. Run it with the Python of a
separate virtual environment holding llamafactory==0.9.5 (see bench/README.md), e.g. /tmp/lf-venv/bin/python:
  python bench/lf_preprocess.py DATASET_DIR DATASETS MODEL_DIR [TEMPLATE] [CUTOFF_LEN]
        [--workers N] [--repeat R] [--dump out.jsonl] [--max-samples N] [--quiet]

  DATASETS is LF's comma-separated list of names from DATASET_DIR/dataset_info.json.
  TEMPLATE defaults to qwen, CUTOFF_LEN to 512.

Each repeat uses a fresh datasets cache dir + overwrite_cache=true + datasets.disable_caching(),
so nothing is reused between runs. Prints records/s for the whole get_dataset() call (JSON load ->
alpaca align -> tokenize) and separately for the tokenize (`Running tokenizer on dataset`) map.
"""

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset_dir")
    ap.add_argument("datasets", help="comma-separated dataset names from dataset_info.json")
    ap.add_argument("model_dir", help="local dir holding the tokenizer (model weights are not loaded)")
    ap.add_argument("template", nargs="?", default="qwen")
    ap.add_argument("cutoff_len", nargs="?", type=int, default=512)
    ap.add_argument(
        "--workers", type=int, default=None, help="preprocessing_num_workers (default None = in-process)"
    )
    ap.add_argument("--batch-size", type=int, default=1000, help="preprocessing_batch_size (LF default 1000)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--max-samples", type=int, default=None)
    ap.add_argument("--dump", default=None, help="write tokenized rows (input_ids, labels) as JSONL")
    ap.add_argument("--quiet", action="store_true", help="hide LF's printed training example")
    ap.add_argument(
        "--extra", default="{}", help="JSON dict of extra LF args, e.g. '{\"train_on_prompt\": true}'"
    )
    a = ap.parse_args()

    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    t_import = time.perf_counter()
    import datasets
    import llamafactory.data.loader as lf_loader
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    t_import = time.perf_counter() - t_import
    datasets.disable_caching()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()

    phase = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            phase[name] = phase.get(name, 0.0) + time.perf_counter() - t0
            return out

        return wrapper

    # get_dataset looks these up as module globals of llamafactory.data.loader
    lf_loader._get_preprocessed_dataset = timed("tokenize", lf_loader._get_preprocessed_dataset)
    lf_loader.align_dataset = timed("align", lf_loader.align_dataset)

    for rep in range(a.repeat):
        work = tempfile.mkdtemp(prefix="lfpre_")
        args = dict(
            stage="sft",
            do_train=True,
            model_name_or_path=os.path.abspath(a.model_dir),
            dataset=a.datasets,
            dataset_dir=os.path.abspath(a.dataset_dir),
            template=a.template,
            cutoff_len=a.cutoff_len,
            overwrite_cache=True,
            preprocessing_num_workers=a.workers,
            preprocessing_batch_size=a.batch_size,
            max_samples=a.max_samples,
            finetuning_type="lora",
            output_dir=os.path.join(work, "out"),
            cache_dir=os.path.join(work, "hf_cache"),  # fresh JSON->arrow cache each run
            report_to="none",
        )
        args.update(json.loads(a.extra))
        phase.clear()
        t0 = time.perf_counter()
        model_args, data_args, training_args, _, _ = get_train_args(args)
        tokenizer_module = load_tokenizer(model_args)
        template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
        t1 = time.perf_counter()
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink) if a.quiet else contextlib.nullcontext():
            module = get_dataset(
                template, model_args, data_args, training_args, stage="sft", **tokenizer_module
            )
        t2 = time.perf_counter()
        train = module["train_dataset"]
        n_out = len(train)
        n_tok = sum(len(x) for x in train["input_ids"])
        n_lab = sum(sum(1 for t in x if t != -100) for x in train["labels"])
        tok_s = phase.get("tokenize", float("nan"))
        print(
            json.dumps(
                {
                    "rep": rep,
                    "records_out": n_out,
                    "tokens": n_tok,
                    "label_tokens": n_lab,
                    "import_s": round(t_import, 3),
                    "args_tokenizer_template_s": round(t1 - t0, 3),
                    "get_dataset_s": round(t2 - t1, 3),
                    "align_s": round(phase.get("align", float("nan")), 3),
                    "tokenize_s": round(tok_s, 3),
                    "records_per_s_get_dataset": round(n_out / (t2 - t1), 1),
                    "records_per_s_tokenize": round(n_out / tok_s, 1),
                }
            ),
            flush=True,
        )
        if a.dump and rep == 0:
            with open(a.dump, "w") as f:
                for row in train:
                    f.write(json.dumps({"input_ids": row["input_ids"], "labels": row["labels"]}) + "\n")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
