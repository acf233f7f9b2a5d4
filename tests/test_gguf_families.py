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
