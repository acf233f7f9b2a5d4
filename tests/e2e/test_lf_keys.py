"""LLaMA-Factory keys its example configs use, end to end on builtin:tiny: a predict-only config (nlg_eval),
tokenized_path, rope_scaling, the Muon optimizer and the DFT loss."""

from __future__ import annotations

import json

import pytest

from tuneboard.cli.main import main as tuneboard

from .conftest import write_yaml

pytestmark = pytest.mark.slow


def test_predict_config_without_do_train_only_predicts(workspace, small_lora):
    """LLaMA-Factory's nlg_eval config: do_predict and predict_with_generate, no do_train, an adapter: the
    replies are generated and scored, nothing is trained."""
    out = workspace / "lf-predict"
    cfg = write_yaml(
        workspace / "lf-predict.yaml",
        model_name_or_path="builtin:tiny",
        adapter_name_or_path=str(small_lora),
        stage="sft",
        do_predict=True,
        finetuning_type="lora",
        eval_dataset="identity",
        dataset_dir=str(workspace / "data"),
        max_samples=4,
        max_new_tokens=4,
        output_dir=str(out),
        overwrite_output_dir=True,
        per_device_eval_batch_size=1,
        predict_with_generate=True,
    )
    assert tuneboard(["train", str(cfg)]) == 0
    lines = (out / "generated_predictions.jsonl").read_text().splitlines()
    assert len(lines) == 4 and {"prompt", "predict", "label"} == set(json.loads(lines[0]))
    assert json.loads((out / "predict_results.json").read_text())["predict_samples"] == 4
    assert not (out / "adapter_model.safetensors").exists() and not (out / "trainer_log.jsonl").exists()


def test_tokenized_path_is_written_then_read_and_guarded(workspace, capsys):
    """First run: the tokenized sets are saved and the run stops (LLaMA-Factory's preprocess example); the next
    run trains on them without tokenizing; other settings, other data or a foreign directory are refused."""
    from unittest import mock

    from tuneboard.data import pipeline

    store, out = workspace / "tok-store", workspace / "saves" / "tok-run"
    keys = dict(
        model_name_or_path="builtin:tiny",
        dataset="identity",
        dataset_dir=str(workspace / "data"),
        cutoff_len=64,
        max_samples=8,
        max_steps=2,
        output_dir=str(out),
        tokenized_path=str(store),
    )
    cfg = write_yaml(workspace / "tok.yaml", **keys)
    assert tuneboard(["train", str(cfg)]) == 0
    assert (store / "train.npz").exists() and (store / "tuneboard_tokenized.json").exists()
    assert not (out / "adapter_model.safetensors").exists()
    assert "run the same command again" in capsys.readouterr().out
    with mock.patch.object(pipeline, "tokenize", side_effect=AssertionError("tokenized again")):
        assert tuneboard(["train", str(cfg)]) == 0
    assert (out / "adapter_model.safetensors").exists()
    capsys.readouterr()

    stale = write_yaml(
        workspace / "tok-stale.yaml", **{**keys, "cutoff_len": 32, "output_dir": str(out) + "2"}
    )
    assert tuneboard(["train", str(stale)]) != 0
    assert "cutoff_len (64, now 32)" in capsys.readouterr().err
    other = write_yaml(
        workspace / "tok-other.yaml", **{**keys, "max_samples": 6, "output_dir": str(out) + "3"}
    )
    assert tuneboard(["train", str(other)]) != 0
    assert "the training data changed" in capsys.readouterr().err

    foreign = workspace / "lf-tokenized"
    foreign.mkdir()
    (foreign / "dataset_dict.json").write_text('{"splits": ["train"]}')
    lf = write_yaml(
        workspace / "tok-lf.yaml", **{**keys, "tokenized_path": str(foreign), "output_dir": str(out) + "4"}
    )
    assert tuneboard(["train", str(lf)]) != 0
    err = capsys.readouterr().err
    assert "not a tokenized set written by tuneboard" in err and "LLaMA-Factory" in err


def test_muon_trains_hidden_matrices_with_muon_and_the_rest_with_adamw(workspace):
    """use_muon (LLaMA-Factory's muon example, full fine-tuning): the loss falls, every weight moves, the layer
    matrices are stepped by torch.optim.Muon and the embeddings, norms and biases by AdamW."""
    import torch

    from tuneboard.config import from_dict
    from tuneboard.model.adapters import prepare
    from tuneboard.model.load import load_model
    from tuneboard.model.tiny import ensure
    from tuneboard.train import muon

    from .conftest import read_log, train

    if not hasattr(torch.optim, "Muon"):
        pytest.skip("this torch has no torch.optim.Muon")
    run = train(
        workspace, "muon", finetuning_type="full", use_muon=True, max_steps=12, logging_steps=1,
        learning_rate=2e-3, save_strategy="no",
    )  # fmt: skip
    seen = [r["loss"] for r in read_log(run) if "loss" in r]
    assert len(seen) >= 10 and sum(seen[-3:]) / 3 < sum(seen[:3]) / 3 - 0.3, seen
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(ensure(), dtype=torch.float32).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run, dtype=torch.float32).state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k != "lm_head.weight"), (
        "a weight stayed"
    )

    cfg, _ = from_dict({"finetuning_type": "full", "use_muon": True})
    model = prepare(load_model(ensure(), cfg, dtype=torch.float32), cfg, [])
    opt = muon.build(model, 1e-3, 0.0, (0.9, 0.999), 1e-8)
    by_id = {id(p): n for n, p in model.named_parameters()}
    muon_names = {by_id[id(p)] for g in opt.parts[0].param_groups for p in g["params"]}
    adam_names = {by_id[id(p)] for g in opt.parts[1].param_groups for p in g["params"]}
    assert muon_names and all(".layers." in n and model.get_parameter(n).ndim == 2 for n in muon_names)
    assert any("embed_tokens" in n for n in adam_names) and any("norm" in n for n in adam_names)
    assert muon_names | adam_names == set(by_id.values()) and not muon_names & adam_names
    state = opt.state_dict()
    opt.load_state_dict(state)  # checkpoints: both parts round-trip
    assert len(opt.param_groups) == len(opt.parts[0].param_groups) + len(opt.parts[1].param_groups)


def _first_samples(workspace, n: int = 4):
    """A padded batch of the identity data, as the trainer sees it."""
    from tuneboard.config import from_dict
    from tuneboard.data.collate import PadCollator
    from tuneboard.data.pipeline import prepare_datasets
    from tuneboard.data.templates.resolve import load_template
    from tuneboard.model.load import load_tokenizer
    from tuneboard.model.tiny import ensure

    cfg, _ = from_dict({"dataset": "identity", "dataset_dir": str(workspace / "data"), "cutoff_len": 64})
    tok = load_tokenizer(ensure(), cfg)
    data = prepare_datasets(cfg, tok, load_template(None, tok, ensure(), []))
    return PadCollator(pad_id=tok.pad_token_id)([data.train[i] for i in range(n)])


def test_dft_loss_weights_each_token_by_its_probability_and_trains(workspace):
    """use_dft_loss (LLaMA-Factory's dft example): the loss is sum(p.detach() * CE) over labelled tokens, its
    gradient is the cross-entropy's scaled per token, and a run with it learns the data (plain CE falls)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tuneboard.model.tiny import ensure
    from tuneboard.train.stages.sft import labelled_loss

    from .conftest import train

    batch = _first_samples(workspace)
    model = AutoModelForCausalLM.from_pretrained(ensure(), dtype=torch.float32)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    valid = targets.ne(-100)
    logp = torch.log_softmax(logits.float(), -1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    want = float((-(logp.exp()) * logp)[valid].sum() / valid.sum())
    got, n = labelled_loss(model, dict(batch), dft=True)
    plain, _ = labelled_loss(model, dict(batch), dft=False)
    assert n == int(valid.sum()) and abs(float(got) - want) < 1e-5 and float(got) < float(plain) / 10

    run = train(
        workspace, "dft", finetuning_type="full", use_dft_loss=True, max_steps=12, logging_steps=1,
        learning_rate=2e-3, save_strategy="no",
    )  # fmt: skip
    trained = AutoModelForCausalLM.from_pretrained(run, dtype=torch.float32)
    with torch.no_grad():
        after, _ = labelled_loss(trained, dict(batch))
    assert float(after) < float(plain) - 1.0, (float(plain), float(after))


@pytest.mark.parametrize("kind", ["linear", "dynamic", "yarn", "llama3"])
def test_rope_scaling_is_applied_at_load(workspace, kind):
    """rope_scaling with cutoff_len beyond the model's 4096 positions: factor ceil(8192 / 4096) = 2, and the
    model's outputs change; a cutoff_len that fits leaves the model as it is."""
    import torch

    from tuneboard.config import from_dict
    from tuneboard.model.load import load_model
    from tuneboard.model.tiny import ensure

    ids = torch.randint(0, 2000, (1, 64), generator=torch.Generator().manual_seed(0))
    plain = load_model(ensure(), from_dict({})[0], torch.float32).eval()
    scaled = load_model(
        ensure(), from_dict({"rope_scaling": kind, "cutoff_len": 8192})[0], torch.float32
    ).eval()
    fits = load_model(
        ensure(), from_dict({"rope_scaling": kind, "cutoff_len": 1024})[0], torch.float32
    ).eval()
    params = scaled.config.rope_parameters
    assert (
        params["rope_type"] == kind
        and params["factor"] == 2.0
        and scaled.config.max_position_embeddings == 8192
    )
    assert fits.config.rope_parameters["rope_type"] == "default"
    with torch.no_grad():
        want = plain(input_ids=ids).logits
        assert torch.equal(want, fits(input_ids=ids).logits)
        if kind in ("linear", "yarn", "llama3"):  # dynamic NTK only changes beyond the original length
            assert (want - scaled(input_ids=ids).logits).abs().max() > 1e-5


def test_rope_scaling_of_a_lora_run_is_kept_in_its_export(workspace):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneboard.config import from_dict
    from tuneboard.model.load import load_model
    from tuneboard.model.tiny import ensure

    from .conftest import train

    run = train(
        workspace, "rope-lora", finetuning_type="lora", rope_scaling="linear", cutoff_len=8192, max_steps=4,
        learning_rate=5e-3, save_strategy="no",
    )  # fmt: skip
    export_dir = workspace / "export-rope"
    cfg = write_yaml(workspace / "export-rope.yaml", model_name_or_path=str(run), export_dir=str(export_dir))
    assert tuneboard(["export", str(cfg)]) == 0
    conf = json.loads((export_dir / "config.json").read_text())
    assert conf["rope_parameters"]["rope_type"] == "linear" and conf["rope_parameters"]["factor"] == 2.0
    assert conf["max_position_embeddings"] == 8192
    scaled = load_model(ensure(), from_dict({"rope_scaling": "linear", "cutoff_len": 8192})[0], torch.float32)
    with_adapter = PeftModel.from_pretrained(scaled, str(run)).eval()
    merged = AutoModelForCausalLM.from_pretrained(export_dir, dtype=torch.float32).eval()
    ids = torch.randint(0, 2000, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (with_adapter(input_ids=ids).logits - merged(input_ids=ids).logits).abs().max() < 1e-4


def test_badam_layer_mode_trains_one_block_at_a_time(workspace):
    """use_badam, badam_mode layer (LLaMA-Factory's badam example): the loss falls and, with the block switched
    every 100 steps, only the first block in ascending order (decoder layer 0) has changed after 12 steps."""
    pytest.importorskip("badam")
    import torch
    from transformers import AutoModelForCausalLM

    from tuneboard.model.tiny import ensure

    from .conftest import read_log, train

    run = train(
        workspace, "badam", finetuning_type="full", use_badam=True, badam_mode="layer",
        badam_switch_mode="ascending", badam_switch_interval=100, max_steps=12, logging_steps=1,
        learning_rate=3e-3, save_strategy="no",
    )  # fmt: skip
    seen = [r["loss"] for r in read_log(run) if "loss" in r]
    assert sum(seen[-3:]) / 3 < sum(seen[:3]) / 3 - 0.2, seen
    before = AutoModelForCausalLM.from_pretrained(ensure(), dtype=torch.float32).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run, dtype=torch.float32).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.layers.0.") for k in changed), sorted(changed)
    assert any(k.endswith("q_proj.weight") for k in changed)


def test_adam_mini_trains_with_one_second_moment_per_block(workspace):
    """use_adam_mini (LLaMA-Factory's adam_mini example): the loss falls, every weight moves, and the optimizer
    keeps fewer second-moment values than there are weights."""
    pytest.importorskip("adam_mini")
    import torch
    from transformers import AutoModelForCausalLM

    from tuneboard.model.tiny import ensure
    from tuneboard.train import block_optim

    from .conftest import read_log, train

    run = train(
        workspace, "adam-mini", finetuning_type="full", use_adam_mini=True, max_steps=12, logging_steps=1,
        learning_rate=2e-3, save_strategy="no",
    )  # fmt: skip
    seen = [r["loss"] for r in read_log(run) if "loss" in r]
    assert sum(seen[-3:]) / 3 < sum(seen[:3]) / 3 - 0.3, seen
    before = AutoModelForCausalLM.from_pretrained(ensure(), dtype=torch.float32).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run, dtype=torch.float32).state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k != "lm_head.weight")

    model = AutoModelForCausalLM.from_pretrained(ensure(), dtype=torch.float32)
    args = type("Args", (), dict(learning_rate=1e-3, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                                 weight_decay=0.0))  # fmt: skip
    opt = block_optim.adam_mini(model, args)
    model(input_ids=torch.arange(16)[None], labels=torch.arange(16)[None]).loss.backward()
    opt.step()
    second = sum(s["v"].numel() if "v" in s else s["vmean"].numel() for s in opt.state.values() if s)
    weights = sum(p.numel() for p in model.parameters())
    assert 0 < second < weights / 2, (second, weights)


def test_eaft_loss_weights_each_token_by_its_top20_entropy_and_trains(workspace):
    """use_eaft_loss (LLaMA-Factory's eaft example): the loss is sum((H20 / 3) ** alpha * CE), H20 the entropy of
    the renormalised 20 most likely tokens, computed here independently; a run with it learns the data."""
    import math

    import torch
    from transformers import AutoModelForCausalLM

    from tuneboard.model.tiny import ensure
    from tuneboard.train.stages.sft import labelled_loss

    from .conftest import train

    batch = _first_samples(workspace)
    model = AutoModelForCausalLM.from_pretrained(ensure(), dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    total, count = 0.0, 0
    for row, col in targets.ne(-100).nonzero().tolist():
        values = sorted(logits[row, col].tolist(), reverse=True)[:20]
        norm = math.log(sum(math.exp(v - values[0]) for v in values)) + values[0]
        entropy = -sum(math.exp(v - norm) * (v - norm) for v in values)
        full = math.log(sum(math.exp(v) for v in logits[row, col].tolist()))
        ce = full - float(logits[row, col, targets[row, col]])
        total, count = total + (entropy / 3) ** 0.5 * ce, count + 1
    got, n = labelled_loss(model, dict(batch), eaft_alpha=0.5)
    assert n == count and abs(float(got) - total / count) < 1e-4 * max(1.0, total / count)

    run = train(
        workspace, "eaft", finetuning_type="full", use_eaft_loss=True, max_steps=12, logging_steps=1,
        learning_rate=2e-3, save_strategy="no",
    )  # fmt: skip
    plain, _ = labelled_loss(model, dict(batch))
    trained = AutoModelForCausalLM.from_pretrained(run, dtype=torch.float32)
    with torch.no_grad():
        after, _ = labelled_loss(trained, dict(batch))
    assert float(after) < float(plain) - 1.0, (float(plain), float(after))


def test_asft_loss_is_dft_plus_kl_to_the_reference_and_trains(workspace):
    """use_asft_loss (LLaMA-Factory's asft examples): DFT's loss plus asft_alpha x KL(reference || model) per
    labelled token, computed here independently; the KL is 0 while the model is its reference, and a LoRA and
    a full run (adapter off / frozen copy as the reference) both train."""
    import torch
    from transformers import AutoModelForCausalLM

    from tuneboard.model.tiny import ensure
    from tuneboard.train.stages.sft import labelled_loss

    from .conftest import train

    batch = _first_samples(workspace)
    model = AutoModelForCausalLM.from_pretrained(ensure(), dtype=torch.float32)
    other = AutoModelForCausalLM.from_pretrained(ensure(), dtype=torch.float32)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # a reference that differs from the model
    fields = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**fields).logits[:, :-1].float()
    ref = other(**fields).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    valid = targets.ne(-100)
    logp = torch.log_softmax(logits, -1)
    picked = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    q = torch.softmax(ref, -1)
    kl = (q * (torch.log(q) - logp)).sum(-1)
    want = float(((-(picked.exp()) * picked + 0.05 * kl)[valid]).sum() / valid.sum())

    def reference(inputs, keep):
        return other(**inputs, logits_to_keep=keep).logits

    got, _ = labelled_loss(model, dict(batch), reference=reference, asft_alpha=0.05)
    assert abs(float(got) - want) < 1e-5, (float(got), want)
    same, _ = labelled_loss(model, dict(batch), reference=lambda i, k: model(**i, logits_to_keep=k).logits)
    dft, _ = labelled_loss(model, dict(batch), dft=True)
    assert abs(float(same) - float(dft)) < 1e-6  # policy = reference: the KL term is 0

    plain, _ = labelled_loss(model, dict(batch))
    run = train(
        workspace, "asft-full", finetuning_type="full", use_asft_loss=True, asft_alpha=0.05, max_steps=12,
        logging_steps=1, learning_rate=2e-3, save_strategy="no",
    )  # fmt: skip
    trained = AutoModelForCausalLM.from_pretrained(run, dtype=torch.float32)
    with torch.no_grad():
        after, _ = labelled_loss(trained, dict(batch))
    assert float(after) < float(plain) - 1.0, (float(plain), float(after))  # it learns the data
    lora = train(
        workspace, "asft-lora", finetuning_type="lora", use_asft_loss=True, max_steps=2, logging_steps=1,
        save_strategy="no",
    )  # fmt: skip
    logged = [json.loads(line) for line in (lora / "trainer_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in logged if "loss" in r] and (lora / "adapter_model.safetensors").exists()
