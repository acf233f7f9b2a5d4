"""Memory estimate: formulas, config reading, advice, and accuracy against published measurements."""

import json

import pytest

from tuneboard.hardware import advice
from tuneboard.hardware import estimate as est
from tuneboard.hardware.estimate import GIB, estimate, shape_from_config

GB = 1e9


def qwen1(hidden, layers, intermediate, vocab, heads):
    """Qwen-1 config.json values (Hugging Face Qwen/Qwen-*): intermediate_size is 2x each MLP branch."""
    return shape_from_config(
        dict(
            model_type="qwen",
            hidden_size=hidden,
            num_hidden_layers=layers,
            intermediate_size=intermediate,
            vocab_size=vocab,
            num_attention_heads=heads,
        )
    )


def llama(hidden, layers, intermediate, vocab, heads, kv):
    return shape_from_config(
        dict(
            model_type="llama",
            hidden_size=hidden,
            num_hidden_layers=layers,
            intermediate_size=intermediate,
            vocab_size=vocab,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            tie_word_embeddings=False,
        )
    )


QWEN_1_8B = qwen1(2048, 24, 11008, 151936, 16)
QWEN_7B = qwen1(4096, 32, 22016, 151936, 32)
QWEN_14B = qwen1(5120, 40, 27392, 152064, 40)
QWEN_72B = qwen1(8192, 80, 49152, 152064, 64)
LLAMA31_8B = llama(4096, 32, 14336, 128256, 32, 8)
LLAMA33_70B = llama(8192, 80, 28672, 128256, 64, 8)
LLAMA_65B = llama(8192, 80, 22016, 32000, 64, 64)

# Source A: QwenLM/Qwen README.md, "Profiling of Memory and Speed" (https://github.com/QwenLM/Qwen):
# measured on A100-SXM4-80G, PyTorch 2.0, CUDA 11.8, flash-attention 2, batch size 1, inputs padded to the
# length, memory in GB. Their scripts (finetune/*.sh, finetune.py): gradient checkpointing on, LoRA r=64 on
# all linear layers (c_attn, c_proj, w1, w2); LoRA single-GPU = torch AMP bf16 without DeepSpeed; Q-LoRA =
# GPTQ Int4 model, fp16 through DeepSpeed ZeRO-2 on one GPU (no autocast, so the loss runs in fp16:
# logit_bytes=6); full-parameter = DeepSpeed ZeRO-3; multi-GPU figures are sums over the GPUs.
SEQ = (256, 512, 1024, 2048, 4096, 8192)
LORA = dict(method="lora", lora_rank=64)
QLORA_DS = dict(method="qlora", lora_rank=64, precision="fp16", zero_stage=2, logit_bytes=6)
QWEN_TABLE = [
    # (label, shape, settings, GPUs the published figure is summed over, GB at 256 ... 8192)
    ("Qwen-1.8B LoRA", QWEN_1_8B, LORA, 1, (6.7, 7.4, 8.4, 11.0, 16.2, 21.8)),
    ("Qwen-7B LoRA", QWEN_7B, LORA, 1, (20.1, 20.4, 21.5, 23.8, 29.7, 36.6)),
    ("Qwen-14B LoRA", QWEN_14B, LORA, 1, (34.6, 35.1, 35.3, 37.4, 42.5, 55.2)),
    (
        "Qwen-7B LoRA ZeRO-2 2x2 GPUs",
        QWEN_7B,
        dict(LORA, zero_stage=2, num_gpus=4),
        4,
        (74.7, 77.6, 84.9, 95.1, 121.1, 155.5),
    ),
    (
        "Qwen-72B LoRA ZeRO-3 4 GPUs",
        QWEN_72B,
        dict(LORA, zero_stage=3, num_gpus=4),
        4,
        (215.4, 217.7, 222.6, 228.8, 249.0, 289.2),
    ),
    ("Qwen-1.8B Q-LoRA", QWEN_1_8B, QLORA_DS, 1, (5.8, 6.0, 6.6, 7.8, 10.2, 15.8)),
    ("Qwen-7B Q-LoRA", QWEN_7B, QLORA_DS, 1, (11.5, 11.5, 12.3, 13.9, 16.9, 23.5)),
    ("Qwen-14B Q-LoRA", QWEN_14B, QLORA_DS, 1, (18.7, 18.4, 18.9, 19.9, 23.0, 27.9)),
    ("Qwen-72B Q-LoRA", QWEN_72B, QLORA_DS, 1, (61.4, 61.4, 62.9, 64.1, 68.0, 75.6)),
    (
        "Qwen-1.8B full ZeRO-3",
        QWEN_1_8B,
        dict(method="full", zero_stage=3),
        1,
        (43.5, 43.5, 43.5, 43.5, 47.1, 48.3),
    ),
    (
        "Qwen-7B full ZeRO-3 2 GPUs",
        QWEN_7B,
        dict(method="full", zero_stage=3, num_gpus=2),
        2,
        (139.2, 148.0, 162.0),
    ),
]
QWEN_CASES = [
    pytest.param(shape, kw, seq, gb / n_gpus * GB, id=f"{label}@{seq}")
    for label, shape, kw, n_gpus, row in QWEN_TABLE
    for seq, gb in zip(SEQ[: len(row)], row, strict=True)
]

# Source B: unslothai/unsloth README.md, "Context length benchmarks" (https://github.com/unslothai/unsloth):
# "Hugging Face + FA2" column, 4-bit QLoRA on all linear layers, rank 32, batch size 1, sequences padded:
# the longest context that fits a GPU of the given size, so the memory used there is about that size (GiB).
# That stack (transformers 4.4x + peft's prepare_model_for_kbit_training) upcast the logits in the model
# and copied them to shift (16 bytes per logit) and kept embeddings and head in fp32.
HF_2024 = dict(method="qlora", lora_rank=32, logit_bytes=16, upcast_unquantized=True)
UNSLOTH_CASES = [
    pytest.param(LLAMA31_8B, 932, 12, id="Llama-3.1-8B@12GB"),
    pytest.param(LLAMA31_8B, 2551, 16, id="Llama-3.1-8B@16GB"),
    pytest.param(LLAMA31_8B, 5789, 24, id="Llama-3.1-8B@24GB"),
    pytest.param(LLAMA31_8B, 12264, 40, id="Llama-3.1-8B@40GB"),
    pytest.param(LLAMA31_8B, 15502, 48, id="Llama-3.1-8B@48GB"),
    pytest.param(LLAMA31_8B, 28454, 80, id="Llama-3.1-8B@80GB"),
    pytest.param(LLAMA33_70B, 6916, 80, id="Llama-3.3-70B@80GB"),
]


@pytest.mark.parametrize("shape, settings, seq, published", QWEN_CASES)
def test_qwen_published_measurements(shape, settings, seq, published):
    e = estimate(
        None, cutoff_len=seq, batch_size=1, gradient_checkpointing=True, model_shape=shape, **settings
    )
    assert abs(e.total - published) / published < 0.20, (e.total / GB, published / GB)


@pytest.mark.parametrize("shape, seq, vram_gib", UNSLOTH_CASES)
def test_unsloth_hf_fa2_max_context(shape, seq, vram_gib):
    e = estimate(None, cutoff_len=seq, model_shape=shape, **HF_2024)
    assert abs(e.total / GIB - vram_gib) / vram_gib < 0.20
    # with tuneboard's own defaults (fp32 loss without the copy, 16-bit embeddings) it needs less
    assert estimate(None, "qlora", cutoff_len=seq, model_shape=shape, lora_rank=32).total < e.total


# Source C: modelscope/ms-swift docs/source_en/LLM/Benchmark.md, "Use Flash Attn & Gradient Checkpointing"
# (https://github.com/modelscope/ms-swift): qwen-7b-chat LoRA (rank 8), max_length 2048, batch size 1, A100,
# GiB. Their absolute figures sit ~25% above Qwen's own table for the same model (source A), so only the
# differences are used: they measure the activation memory that each switch adds.
MS_SWIFT = {(True, True): 27.74, (True, False): 37.70, (False, True): 27.71, (False, False): 57.67}


@pytest.mark.parametrize(
    "base, changed",
    [
        pytest.param((True, True), (True, False), id="flash: checkpointing off"),
        pytest.param((False, True), (False, False), id="eager: checkpointing off"),
        pytest.param((True, False), (False, False), id="no checkpointing: eager instead of flash"),
    ],
)
def test_ms_swift_activation_differences(base, changed):
    def total(flash, gc):
        return estimate(None, "lora", "bf16", 2048, 1, gc, QWEN_7B, lora_rank=8, flash_attention=flash).total

    published = (MS_SWIFT[changed] - MS_SWIFT[base]) * GIB
    estimated = total(*changed) - total(*base)
    assert abs(estimated - published) / published < 0.20, (estimated / GIB, published / GIB)


def test_qlora_paper_65b_fits_48gb():
    # Dettmers et al. 2023, "QLoRA" (arXiv:2305.14314), abstract: finetunes "a 65B parameter model on a
    # single 48GB GPU" (LLaMA-65B, LoRA r=64 on all linear layers, gradient checkpointing). An upper bound.
    e = estimate(None, "qlora", "bf16", 512, 1, True, LLAMA_65B, lora_rank=64)
    assert 0.8 * 48 * GIB < e.total < 48 * GIB


@pytest.mark.parametrize(
    "name, billions",
    [
        ("qwen2.5-0.5b", 0.49),
        ("qwen2.5-1.5b", 1.54),
        ("qwen2.5-7b", 7.61),
        ("llama-3-8b", 8.03),
        ("glm-4-9b", 9.40),
    ],
)
def test_known_shapes_match_model_cards(name, billions):
    # parameter counts as stated on the Hugging Face model cards
    assert est.count_params(est.KNOWN_SHAPES[name]) / 1e9 == pytest.approx(billions, rel=0.02)


def test_qwen1_counts_match_published_sizes():
    # ms-swift docs/source_en/LLM/Benchmark.md: qwen-7b-chat full fine-tuning trains 7721.3245M parameters
    assert QWEN_7B["params"] / 1e6 == pytest.approx(7721.3, rel=0.001)
    assert QWEN_1_8B["params"] / 1e9 == pytest.approx(1.84, rel=0.01)


@pytest.mark.parametrize(
    "text, value",
    [
        ("7B", 7e9),
        ("0.5b", 5e8),
        ("13B", 13e9),
        ("350M", 3.5e8),
        (" 1.5 B ", 1.5e9),
        (1e9, 1e9),
        ("42", 42.0),
    ],
)
def test_parse_model_size(text, value):
    assert est.parse_model_size(text) == pytest.approx(value)


def test_parse_model_size_rejects_garbage():
    with pytest.raises(ValueError, match="7B"):
        est.parse_model_size("seven billion")


def test_shape_from_config_file_directory_and_hub_cache(tmp_path, monkeypatch):
    cfg = {
        "model_type": "qwen2",
        "hidden_size": 896,
        "num_hidden_layers": 24,
        "intermediate_size": 4864,
        "vocab_size": 151936,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
    }
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(cfg))
    snap = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for ref in (cfg, model_dir, str(model_dir / "config.json"), "Qwen/Qwen2.5-0.5B"):
        shape = shape_from_config(ref)
        assert shape["num_kv_heads"] == 2 and shape["tie_word_embeddings"]
        assert shape["params"] / 1e9 == pytest.approx(0.494, rel=0.01)
    with pytest.raises(FileNotFoundError):
        shape_from_config("nobody/not-downloaded")


def test_shape_from_config_glm_and_multimodal():
    glm = shape_from_config(
        {
            "model_type": "chatglm",
            "hidden_size": 4096,
            "num_layers": 40,
            "ffn_hidden_size": 13696,
            "padded_vocab_size": 151552,
            "num_attention_heads": 32,
            "multi_query_attention": True,
            "multi_query_group_num": 2,
        }
    )
    assert glm["num_kv_heads"] == 2 and glm["params"] / 1e9 == pytest.approx(9.40, rel=0.02)
    vl = shape_from_config(
        {"model_type": "qwen2_vl", "text_config": est.KNOWN_SHAPES["llama-3-8b"] | {"num_hidden_layers": 32}}
    )
    assert vl["hidden_size"] == 4096


def test_resolve_model():
    assert est.resolve_model("7B") == (7e9, None)
    params, shape = est.resolve_model("meta-llama/Meta-Llama-3.1-8B-Instruct")
    assert shape["hidden_size"] == 4096 and params / 1e9 == pytest.approx(8.03, rel=0.01)
    with pytest.raises(ValueError, match="cannot size"):
        est.resolve_model("nobody/unknown-model")


def test_weights_per_parameter():
    n = 1e9
    full = estimate(n, "full", "bf16")
    assert (full.weights, full.gradients, full.optimizer_states) == (6 * n, 4 * n, 8 * n)  # torch AMP: 18 B
    ds = estimate(n, "full", "bf16", zero_stage=1)
    assert (ds.weights, ds.optimizer_states) == (2 * n, 12 * n)  # ZeRO paper: 2 + 2 + 12, plus fp32 grads
    assert estimate(n, "full", "fp32").weights == 4 * n
    assert estimate(n, "lora", "bf16", lora_rank=8).weights == pytest.approx(2 * n, rel=0.05)
    qlora = estimate(7 * n, "qlora", "bf16")  # 4-bit linear layers, 16-bit embeddings and head
    assert 0.5 * 7 * n < qlora.weights < 0.8 * 7 * n


def test_orderings():
    shape = est.KNOWN_SHAPES["qwen2.5-7b"]
    by_method = [
        estimate(None, m, "bf16", 2048, 2, True, shape).total for m in ("qlora", "lora", "freeze", "full")
    ]
    assert by_method == sorted(by_method)
    e = estimate(None, "lora", "bf16", 4096, 4, False, shape)
    assert e.activations == e.activations_without_gc > 3 * e.activations_with_gc
    assert estimate(None, "lora", "bf16", 4096, 4, False, shape, flash_attention=False).total > e.total
    assert estimate(None, "lora", "fp32", 4096, 4, False, shape).total > e.total
    z = [
        estimate(None, "full", "bf16", 1024, 1, True, shape, zero_stage=s, num_gpus=8).total
        for s in (1, 2, 3)
    ]
    assert z == sorted(z, reverse=True)
    off = estimate(None, "full", "bf16", 1024, 1, True, shape, zero_stage=3, num_gpus=8, offload=True)
    assert off.optimizer_states == 0 and off.cpu_offloaded > 0


def test_estimate_without_shape_guesses_one():
    e = estimate("7B", "lora", "bf16", 1024, 1, True)
    assert 14 * GIB < e.total < 24 * GIB


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="dora"), "method"),
        (dict(precision="int8"), "precision"),
        (dict(zero_stage=4), "zero_stage"),
        (dict(cutoff_len=0), "cutoff_len"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate("7B", **kwargs)


def test_format_estimate():
    text = advice.format_estimate(estimate("7B", "lora", "bf16", 1024, 1, True))
    for word in ("weights", "gradients", "optimizer states", "activations", "total", "GiB", "7.00B"):
        assert word in text


GPU_24 = {"name": "RTX 4090", "memory_total": 24 * GIB, "memory_used": 0}
GPU_80 = {"name": "A100 80GB", "memory_total": 80 * GIB, "memory_used": 0}


def test_advise_without_gpu():
    lines = advice.advise(estimate("7B", "lora"), [], ram=16 * GIB)
    assert len(lines) == 1 and lines[0].startswith("No CUDA GPU") and "RAM" in lines[0]


def test_advise_fits_and_suggests_batch_size():
    lines = advice.advise(
        estimate(None, "lora", "bf16", 1024, 1, True, est.KNOWN_SHAPES["qwen2.5-1.5b"]), [GPU_80]
    )
    assert "fits" in lines[0] and any("batch_size up to" in line for line in lines)


def test_advise_suggests_qlora_on_small_gpu():
    lines = advice.advise(
        estimate(None, "lora", "bf16", 4096, 1, True, est.KNOWN_SHAPES["glm-4-9b"]), [GPU_24]
    )
    assert "does not fit" in lines[0] and "QLoRA" in lines[-1]


def test_advise_warns_when_tight():
    e = estimate(None, "lora", "bf16", 2048, 1, True, est.KNOWN_SHAPES["glm-4-9b"])
    gpu = {"name": "tight", "memory_total": int(e.total * 1.03), "memory_used": 0}
    assert "barely" in advice.advise(e, [gpu])[0]


def test_advise_suggests_zero_for_full_on_many_gpus():
    lines = advice.advise(
        estimate(None, "full", "bf16", 2048, 1, True, est.KNOWN_SHAPES["llama-3-8b"]), [GPU_80] * 4
    )
    assert all("does not fit" in line for line in lines[:4]) and "ZeRO" in lines[-1]
