"""`tuneboard eval`: generation over a test set, then BLEU-4 / ROUGE / exact-match accuracy.

Jobs layer: uses data/ (conversations, templates) and the inference engine (`Engine.complete`: the whole
split goes to its batcher, or to vLLM, at once); metrics.py holds the maths.
Writes the predictions and their metrics in output_dir (rundir.write_predictions, LLaMA-Factory's names).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import rundir
from ..config import Config, replace
from ..data.formats import Conversation
from ..data.pipeline import load_conversations, split
from ..errors import ConfigError, TuneboardError
from ..inference.generation import GenerationSettings
from . import metrics


def eval_conversations(cfg: Config) -> list[Conversation]:
    if cfg.eval_datasets:
        convs, _ = load_conversations(cfg.eval_datasets, cfg.dataset_dir, cfg.max_samples)
        return convs
    if cfg.datasets and cfg.val_size:
        convs, _ = load_conversations(cfg.datasets, cfg.dataset_dir, cfg.max_samples)
        return split(convs, cfg.val_size, cfg.seed)[1]
    if cfg.datasets and (cfg.do_predict or not cfg.do_train):
        convs, _ = load_conversations(cfg.datasets, cfg.dataset_dir, cfg.max_samples)
        return convs
    raise ConfigError(f"{cfg.source}: set eval_dataset (or dataset with val_size) to evaluate")


def load_engine(cfg: Config, loaded: Any = None) -> Any:
    """The engine that writes the predictions: vLLM with `infer_backend: vllm`, else the transformers engine
    generating `per_device_eval_batch_size` replies together (dynamic batching: a finished row's place goes
    to the next prompt at once)."""
    from ..inference import make_engine
    from ..inference.hf import ChatEngine

    if cfg.infer_backend == "vllm":
        return make_engine(cfg)
    return ChatEngine(replace(cfg, max_concurrent=cfg.per_device_eval_batch_size), loaded)


def generation_settings(cfg: Config) -> GenerationSettings:
    """Evaluation is greedy unless do_sample was set (in the YAML or on the command line)."""
    sample = cfg.do_sample if "do_sample" in cfg.explicit else False
    return GenerationSettings.from_config(cfg, do_sample=sample)


def run(cfg: Config, loaded: Any = None) -> dict[str, Any]:
    from ..data.tokenize import encode_prompts

    convs = eval_conversations(cfg)
    undesirable = sum(1 for c in convs if c.kto_tag is False)
    if undesirable:  # KTO data: an undesirable reply is no reference for what the model should answer
        print(
            f"note: {undesirable} of {len(convs)} records hold an undesirable reply (kto_tag false); evaluated "
            "on the other records"
        )
        convs = [c for c in convs if c.kto_tag is not False]
        if not convs:
            raise TuneboardError("every record to evaluate holds an undesirable reply (kto_tag false)")
    prompts_conv, labels = [], []
    for c in convs:
        last = c.messages[-1]
        if last.role not in ("assistant", "function"):
            raise TuneboardError(f"{c.source}: the last message must be the reference reply")
        prompts_conv.append(Conversation(c.messages[:-1], c.system, c.tools, c.source))
        labels.append(last.content)
    engine = load_engine(cfg, loaded)
    prompt_ids = encode_prompts(prompts_conv, engine.template, engine.tokenizer)
    too_long = sum(1 for p in prompt_ids if len(p) > cfg.cutoff_len)
    prompt_ids = [p[-cfg.cutoff_len :] for p in prompt_ids]
    start = time.time()
    try:
        preds = [reply.text for reply in engine.complete(prompt_ids, generation_settings(cfg))]
    finally:
        engine.close()
    runtime = time.time() - start
    results = metrics.compute_metrics(preds, labels)
    results["predict_runtime"] = round(runtime, 4)
    results["predict_samples_per_second"] = round(len(preds) / max(runtime, 1e-9), 3)
    results["predict_samples"] = len(preds)
    if too_long:
        results["predict_prompts_truncated"] = too_long

    out = Path(cfg.output_dir)
    records = [
        {"prompt": engine.template.prompt_text(conv), "predict": pred, "label": label}
        for conv, pred, label in zip(prompts_conv, preds, labels, strict=False)
    ]
    rundir.write_predictions(out, records, results)
    print(format_results(results))
    if metrics.is_classification(labels):
        print(metrics.format_confusion(metrics.confusion(preds, labels)))
    print(f"wrote {rundir.predictions_path(out)} and {rundir.predict_results_path(out)}")
    return results


def format_results(results: dict[str, Any]) -> str:
    width = max(len(k) for k in results)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in results.items())
