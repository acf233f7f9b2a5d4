"""`tuneboard eval` and `tuneboard export` on runs trained by the test."""

from __future__ import annotations

import json

import pytest

from tuneboard.cli.main import main as tuneboard
from tuneboard.config import Config, replace

from .conftest import write_yaml

pytestmark = pytest.mark.slow


def test_eval_writes_predictions_and_metrics(workspace, small_lora, capsys):
    out = workspace / "eval-small"
    cfg = write_yaml(
        workspace / "eval.yaml",
        model_name_or_path="builtin:tiny",
        adapter_name_or_path=str(small_lora),
        eval_dataset="triage_test",
        dataset_dir=str(workspace / "data"),
        max_samples=12,
        max_new_tokens=4,
        per_device_eval_batch_size=5,
        output_dir=str(out),
    )
    assert tuneboard(["eval", str(cfg)]) == 0
    lines = [json.loads(x) for x in (out / "generated_predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and set(lines[0]) == {"prompt", "predict", "label"}
    assert lines[0]["prompt"].endswith("<|im_start|>assistant\n")
    results = json.loads((out / "predict_results.json").read_text())
    for key in (
        "predict_bleu-4",
        "predict_rouge-1",
        "predict_rouge-2",
        "predict_rouge-l",
        "predict_accuracy",
    ):
        assert 0 <= results[key] <= 100
    assert results["predict_samples"] == 12
    assert "true \\ pred" in capsys.readouterr().out  # the confusion table of a single-choice set


def test_batched_generation_equals_one_by_one(workspace, identity_full):
    """Sharing the batch (rows joining and leaving, left padding) must not change greedy outputs; nor does
    beam search's padded `generate` path."""
    from tuneboard.data.pipeline import load_conversations
    from tuneboard.data.tokenize import encode_prompts
    from tuneboard.evaluate.workflow import load_engine
    from tuneboard.inference.generation import GenerationSettings
    from tuneboard.model.load import load_for_inference

    cfg = Config(model_name_or_path=str(identity_full), max_new_tokens=16)
    loaded = load_for_inference(cfg)
    convs, _ = load_conversations(["identity"], workspace / "data", max_samples=6)
    for c in convs:
        c.messages = c.messages[:-1]
    prompts = encode_prompts(convs, loaded.template, loaded.tokenizer)
    for beams in (1, 2):
        settings = GenerationSettings.from_config(cfg, do_sample=False, num_beams=beams)
        texts = {}
        for width in (6, 1):
            engine = load_engine(replace(cfg, per_device_eval_batch_size=width), loaded)
            texts[width] = [r.text for r in engine.complete(prompts, settings)]
            engine.close()
        assert texts[6] == texts[1]


def test_merged_export_equals_base_plus_adapter(workspace, small_lora):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneboard.model import tiny

    export_dir = workspace / "export-merged"
    cfg = write_yaml(
        workspace / "export.yaml",
        model_name_or_path="builtin:tiny",
        adapter_name_or_path=str(small_lora),
        export_dir=str(export_dir),
        export_size=0.001,
    )
    assert tuneboard(["export", str(cfg)]) == 0
    names = {p.name for p in export_dir.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "README.md", "Modelfile"} <= names
    shards = sorted(export_dir.glob("model-*.safetensors"))
    assert len(shards) > 1 and "model.safetensors.index.json" in names  # 1 MB shards of a ~15 MB model
    index = json.loads((export_dir / "model.safetensors.index.json").read_text())
    per_shard: dict[str, int] = {}
    for shard in index["weight_map"].values():
        per_shard[shard] = per_shard.get(shard, 0) + 1
    for p in shards:  # within the limit, unless one tensor alone is larger than a shard
        assert p.stat().st_size <= 1.05 * 1024**2 or per_shard[p.name] == 1, p.name
    assert not list(workspace.glob(".export-merged.partial-*"))
    saved = json.loads((export_dir / "config.json").read_text())["dtype"]  # builtin:tiny is saved in fp32
    assert f"- weights: {saved} safetensors" in (export_dir / "README.md").read_text()

    base = AutoModelForCausalLM.from_pretrained(tiny.ensure(), dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, str(small_lora)).eval()
    merged = AutoModelForCausalLM.from_pretrained(export_dir, dtype=torch.float32).eval()
    ids = torch.randint(0, 2000, (2, 24))
    with torch.no_grad():
        diff = (with_adapter(input_ids=ids).logits - merged(input_ids=ids).logits).abs().max().item()
    assert diff < 1e-4

    tok = AutoTokenizer.from_pretrained(export_dir)
    gc = json.loads((export_dir / "generation_config.json").read_text())
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    assert eot in (gc["eos_token_id"] if isinstance(gc["eos_token_id"], list) else [gc["eos_token_id"]])


def test_plain_transformers_reproduces_chat_reply(workspace, identity_full):
    """The exported directory alone (no tuneboard) gives the same greedy reply as `tuneboard chat`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneboard.inference.hf import ChatEngine

    export_dir = workspace / "export-full"
    cfg = write_yaml(
        workspace / "export-full.yaml", model_name_or_path=str(identity_full), export_dir=str(export_dir)
    )
    assert tuneboard(["export", str(cfg)]) == 0
    messages = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "你是谁？"}]
    ours = ChatEngine(Config(model_name_or_path=str(identity_full), max_new_tokens=40, do_sample=False)).chat(
        messages
    )

    tok = AutoTokenizer.from_pretrained(export_dir)
    model = AutoModelForCausalLM.from_pretrained(export_dir)
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    theirs = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert theirs == ours.text


def test_export_refuses_existing_dir_and_quantized_base(workspace, small_lora, capsys):
    target = workspace / "export-exists"
    target.mkdir()
    (target / "keep.txt").write_text("user file")
    cfg = write_yaml(
        workspace / "export-x.yaml", adapter_name_or_path=str(small_lora), export_dir=str(target)
    )
    assert tuneboard(["export", str(cfg)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (target / "keep.txt").read_text() == "user file"
    cfg = write_yaml(
        workspace / "export-q.yaml",
        adapter_name_or_path=str(small_lora),
        export_dir=str(workspace / "export-q"),
        quantization_bit=4,
    )
    assert tuneboard(["export", str(cfg)]) == 1
    assert "quantized base" in capsys.readouterr().err
