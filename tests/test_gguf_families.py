"""GGUF export of the Gemma 2, Gemma 3 and GLM families (export/gguf_families.py), and the message for a family
that is not supported. Llama, Mistral and Qwen are in test_gguf_export.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from tuneboard.data.templates.named import get_template  # noqa: E402
from tuneboard.errors import TuneboardError  # noqa: E402
from tuneboard.export.gguf import write_gguf  # noqa: E402
from tuneboard.export.gguf_families import FAMILIES  # noqa: E402
from tuneboard.export.gguf_vocab import _LLAMA3_REGEX, _pre_tokenizer  # noqa: E402

PROMPT = "Hello, who are you? 12345 你好"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from tuneboard.model import tiny as builtin

    return AutoTokenizer.from_pretrained(builtin.ensure())


def _common(tok, **kw):
    return dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        max_position_embeddings=512,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        **kw,
    )


def _randomise(model):
    """Random norms (around 0 for Gemma's 1 + w, around 1 otherwise) and biases, so that a wrong mapping or a
    missing offset cannot hide behind all-ones norms or all-zero biases."""
    gemma = model.config.model_type.startswith("gemma")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(-0.5, 0.5) if gemma else p.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                p.uniform_(-0.2, 0.2)
    return model.eval()


def _gemma(tok, family):
    """head_dim and query_pre_attn_scalar are 256, as in every Gemma below 27B and as transformers' GGUF reader
    assumes (it reads neither); a 4-token window, so that the prompt runs past it."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    common = _common(tok, num_attention_heads=2, num_key_value_heads=1, head_dim=256, sliding_window=4)
    torch.manual_seed(0)
    if family == "gemma2":
        return _randomise(Gemma2ForCausalLM(Gemma2Config(num_hidden_layers=2, **common)))
    return _randomise(Gemma3ForCausalLM(Gemma3TextConfig(num_hidden_layers=6, **common)))


def _field(reader, key):
    return reader.fields[key].contents()


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
def test_gemma_loads_back_with_the_same_logits(tmp_path, tok, family):
    """Gemma 2 / Gemma 3 text, f32, read back by transformers' GGUF reader (which subtracts the 1 that llama.cpp's
    norms carry): the logits are the model's own. The metadata that reader ignores is checked by value."""
    from transformers import AutoModelForCausalLM

    model = _gemma(tok, family)
    path = write_gguf(model, tok, get_template("chatml"), tmp_path / "model.gguf", "f32")
    r = gguf.GGUFReader(path)
    tensors = {t.name: np.asarray(t.data) for t in r.tensors}
    assert _field(r, "general.architecture") == family
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    norm = model.model.layers[0].post_feedforward_layernorm.weight.detach().numpy()
    np.testing.assert_allclose(tensors["blk.0.post_ffw_norm.weight"], 1 + norm, rtol=1e-6)
    assert {"blk.0.post_attention_norm.weight", "blk.0.ffn_norm.weight"} <= set(tensors)
    if family == "gemma3":
        assert {"blk.0.attn_q_norm.weight", "blk.0.attn_k_norm.weight"} <= set(tensors)
    c = model.config
    assert _field(r, f"{family}.attention.key_length") == _field(r, f"{family}.attention.value_length") == 256
    assert _field(r, f"{family}.attention.sliding_window") == 4
    assert _field(r, f"{family}.rope.freq_base") == pytest.approx(10000.0 if family == "gemma2" else 1e6)
    if family == "gemma2":
        assert _field(r, "gemma2.attn_logit_softcapping") == pytest.approx(c.attn_logit_softcapping)
        assert _field(r, "gemma2.final_logit_softcapping") == pytest.approx(c.final_logit_softcapping)
    else:  # Gemma 3 has no softcapping
        assert not [k for k in r.fields if "softcapping" in k]

    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name).eval()
    assert back.config.layer_types == c.layer_types
    ids = torch.tensor([tok(PROMPT)["input_ids"]])
    assert ids.shape[1] > 4
    with torch.no_grad():
        want, got = model(ids).logits, back(ids).logits
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-3)


def test_gemma_quantized(tmp_path, tok):
    """q8_0 keeps the norms (with their offset) in f32 and the logits close (f16: 0.2% of the largest logit;
    q8_0 on this random 6-layer model: 4%, the quantization's own noise)."""
    from transformers import AutoModelForCausalLM

    model = _gemma(tok, "gemma3")
    path = write_gguf(model, tok, get_template("chatml"), tmp_path / "model.gguf", "q8_0")
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name).eval()
    ids = torch.tensor([tok(PROMPT)["input_ids"]])
    with torch.no_grad():
        want, got = model(ids).logits, back(ids).logits
    assert float((want - got).abs().max() / want.abs().max()) < 0.06


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"query_pre_attn_scalar": 128}, "query_pre_attn_scalar"),
        ({"layer_types": ["full_attention", "sliding_attention"]}, "layer_types"),
    ],
)
def test_gemma_that_llama_cpp_would_run_differently_is_refused(tmp_path, tok, change, match):
    model = _gemma(tok, "gemma2")
    for key, value in change.items():
        setattr(model.config, key, value)
    with pytest.raises(TuneboardError, match=match):
        write_gguf(model, tok, get_template("chatml"), tmp_path / "model.gguf", "f16")


def test_unsupported_family_names_the_families_and_the_formats(tmp_path):
    fake = SimpleNamespace(config=SimpleNamespace(model_type="phi3"))
    with pytest.raises(TuneboardError) as err:
        write_gguf(fake, None, None, tmp_path / "x.gguf", "f16")
    message = str(err.value)
    assert "this model is 'phi3'" in message
    assert "Llama, Mistral, Qwen2/2.5, Qwen3, Gemma 2, Gemma 3 (text), GLM-4 (glm4 and glm)" in message
    assert "model types llama, mistral, qwen2, qwen3, gemma2, gemma3_text, glm4, glm" in message
    formats = "hf, gguf, gguf-f16, gguf-f32, gguf-q8_0, gguf-q5_1, gguf-q5_0, gguf-q4_1, gguf-q4_0"
    assert f"Valid export_format values: {formats};" in message
    assert "safetensors" not in message  # not an export_format value


@pytest.fixture(scope="module")
def glm_models(tok):
    """GLM-4-0414 (model type glm4: sandwich norms) and GLM-4-9B-chat-hf (model type glm), with q/k/v biases and
    half-rotated heads as released; untied output as released."""
    from transformers import Glm4Config, Glm4ForCausalLM, GlmConfig, GlmForCausalLM

    common = _common(tok, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    common |= dict(attention_bias=True, tie_word_embeddings=False)
    torch.manual_seed(0)
    return {
        "glm4": _randomise(Glm4ForCausalLM(Glm4Config(**common))),
        "glm": _randomise(GlmForCausalLM(GlmConfig(**common))),
    }


def _llama_cpp_glm(path, ids: list[int]) -> np.ndarray:
    """Logits computed from the GGUF file alone the way llama.cpp's glm4 / chatglm graphs do: rope on neighbouring
    pairs (GGML's normal mode) over the first rope.dimension_count dimensions of each head, one fused ffn_up whose
    first half is the gate, and for glm4 a norm after attention and after the feed-forward (numpy, f32)."""
    r = gguf.GGUFReader(path)
    w = {t.name: np.asarray(t.data, dtype=np.float32).reshape(list(reversed(t.shape))) for t in r.tensors}
    arch = _field(r, "general.architecture")
    n_head, n_kv = _field(r, f"{arch}.attention.head_count"), _field(r, f"{arch}.attention.head_count_kv")
    eps, base = _field(r, f"{arch}.attention.layer_norm_rms_epsilon"), _field(r, f"{arch}.rope.freq_base")
    n_rot, n_ff = _field(r, f"{arch}.rope.dimension_count"), _field(r, f"{arch}.feed_forward_length")
    x = w["token_embd.weight"][ids]
    n, hd = len(ids), w["blk.0.attn_q.weight"].shape[0] // n_head
    angles = np.arange(n)[:, None] * base ** (-np.arange(0, n_rot, 2) / n_rot)
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]

    def norm(v, weight):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * weight

    def rope(v):
        rot, rest = v[..., :n_rot], v[..., n_rot:]
        a, b = rot[..., 0::2], rot[..., 1::2]
        pairs = np.stack([a * cos - b * sin, a * sin + b * cos], -1).reshape(rot.shape)
        return np.concatenate([pairs, rest], -1)

    def proj(v, name):
        return v @ w[f"{name}.weight"].T + w.get(f"{name}.bias", 0.0)

    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(_field(r, f"{arch}.block_count")):
        h = norm(x, w[f"blk.{i}.attn_norm.weight"])
        q = rope(proj(h, f"blk.{i}.attn_q").reshape(n, n_head, hd))
        k = rope(proj(h, f"blk.{i}.attn_k").reshape(n, n_kv, hd)).repeat(n_head // n_kv, axis=1)
        v = proj(h, f"blk.{i}.attn_v").reshape(n, n_kv, hd).repeat(n_head // n_kv, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        p = np.exp(scores - scores.max(-1, keepdims=True))
        att = proj(
            np.einsum("hqk,khd->qhd", p / p.sum(-1, keepdims=True), v).reshape(n, -1), f"blk.{i}.attn_output"
        )
        x = x + (norm(att, w[f"blk.{i}.post_attention_norm.weight"]) if arch == "glm4" else att)
        up = proj(norm(x, w[f"blk.{i}.ffn_norm.weight"]), f"blk.{i}.ffn_up")
        gate, up = up[:, :n_ff], up[:, n_ff:]
        f = proj(gate / (1 + np.exp(-gate)) * up, f"blk.{i}.ffn_down")
        x = x + (norm(f, w[f"blk.{i}.post_ffw_norm.weight"]) if arch == "glm4" else f)
    return norm(x, w["output_norm.weight"]) @ w.get("output.weight", w["token_embd.weight"]).T


@pytest.mark.parametrize(("family", "arch"), [("glm4", "glm4"), ("glm", "chatglm")])
def test_glm_tensors_metadata_and_logits(tmp_path, tok, glm_models, family, arch):
    """transformers has no GGUF reader for glm4 or chatglm, so the file is checked with the gguf package's reader:
    every tensor's llama.cpp name, shape and values against the HF weights (no permutation: transformers' GLM
    already ropes neighbouring pairs, as llama.cpp does; ffn_up is transformers' fused gate_up_proj), the keys
    llama.cpp's loader needs for the arch, and logits recomputed from the file with llama.cpp's graph."""
    model = glm_models[family]
    path = write_gguf(model, tok, get_template("chatml"), tmp_path / "model.gguf", "f32")
    r = gguf.GGUFReader(path)
    assert _field(r, "general.architecture") == arch
    names = gguf.get_tensor_name_map(
        next(e for e, name in gguf.MODEL_ARCH_NAMES.items() if name == arch), model.config.num_hidden_layers
    )
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    expected = {names.get_name(k, try_suffixes=(".weight", ".bias")): k for k in state}
    assert None not in expected
    tensors = {t.name: t for t in r.tensors}
    assert set(tensors) == set(expected)
    per_layer = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_up", "ffn_down"}
    if arch == "glm4":
        per_layer |= {"post_attention_norm", "post_ffw_norm"}
    assert {n.split(".")[2] for n in tensors if n.startswith("blk.")} == per_layer
    assert {"token_embd.weight", "output_norm.weight", "output.weight", "blk.1.attn_q.bias"} <= set(tensors)
    for name, t in tensors.items():
        want = state[expected[name]]
        assert list(t.shape) == list(reversed(want.shape)), name
        np.testing.assert_array_equal(np.asarray(t.data).reshape(want.shape), want, err_msg=name)
    assert tuple(tensors["blk.0.ffn_up.weight"].shape) == (64, 2 * 128)  # gate and up, fused

    c = model.config
    required = {
        "context_length": c.max_position_embeddings,
        "embedding_length": 64,
        "block_count": 2,
        "feed_forward_length": 128,
        "attention.head_count": 4,
        "attention.head_count_kv": 2,
        "rope.dimension_count": 8,  # half of head_dim 16 (partial_rotary_factor 0.5)
    }
    for key, value in required.items():
        assert _field(r, f"{arch}.{key}") == value, key
    assert _field(r, f"{arch}.attention.layer_norm_rms_epsilon") == pytest.approx(c.rms_norm_eps)
    assert _field(r, f"{arch}.rope.freq_base") == pytest.approx(10000.0)

    ids = tok(PROMPT)["input_ids"]
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    np.testing.assert_allclose(_llama_cpp_glm(path, ids), want, atol=2e-4, rtol=1e-3)


def test_glm_tokenizer_split_is_chatglm_bpe():
    """GLM-4's tokenizer splits with Llama 3's regex then ByteLevel: llama.cpp's 'chatglm-bpe' for GLM models
    (which puts no BOS in front; the chat template starts with [gMASK]<sop>), 'llama-bpe' for Llama."""
    spec = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": _LLAMA3_REGEX}, "behavior": "Isolated"},
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
        ],
    }
    assert _pre_tokenizer(spec, FAMILIES["glm4"]) == _pre_tokenizer(spec, FAMILIES["glm"]) == "chatglm-bpe"
    assert _pre_tokenizer(spec, FAMILIES["llama"]) == "llama-bpe"


def test_end_of_turn_prefers_a_stop_word_other_than_eos(tok):
    """llama.cpp stops at EOS anyway; the end-of-turn key should name the template's other stop marker (GLM-4's
    template stops at <|endoftext|>, the EOS, and at <|user|>, which llama.cpp's own converter writes as EOT)."""
    from tuneboard.export.gguf_vocab import _special_tokens

    class Writer:
        def __getattr__(self, name):
            return lambda value: calls.setdefault(name, value)

    other = next(t for t in ("<|im_start|>", "<|endoftext|>", "<|im_end|>") if t != tok.eos_token)
    for stops, want in [((tok.eos_token, other, "no such token"), other), ((tok.eos_token,), tok.eos_token)]:
        calls = {}
        _special_tokens(Writer(), tok, SimpleNamespace(stop_words=stops), SimpleNamespace(bos_token_id=None))
        assert calls["add_eot_token_id"] == tok.convert_tokens_to_ids(want)
