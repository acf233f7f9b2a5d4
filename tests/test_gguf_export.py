"""GGUF export (gguf_export.py): written with the `gguf` package, read back with its GGUFReader."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from tuneboard.data.templates.named import get_template  # noqa: E402
from tuneboard.errors import TuneboardError  # noqa: E402
from tuneboard.export.gguf import write_gguf  # noqa: E402
from tuneboard.export.gguf_families import FAMILIES  # noqa: E402
from tuneboard.export.gguf_vocab import _pre_tokenizer  # noqa: E402

LAYER_TENSORS = (
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
    "attn_norm",
    "ffn_norm",
)


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneboard.model import tiny as builtin

    d = builtin.ensure()
    return AutoModelForCausalLM.from_pretrained(d).eval(), AutoTokenizer.from_pretrained(d), d


@pytest.fixture(scope="module")
def tiny_llama(tiny):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok, _ = tiny
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # random norms, so a wrong tensor mapping cannot hide behind all-ones
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model, tok


def _field(reader, key):
    return reader.fields[key].contents()


def _hf_rows_for_gguf(n_rows: int, heads: int) -> np.ndarray:
    """For each GGUF row of a llama q/k projection, the transformers row it comes from: within a head,
    GGUF pairs rotary dimensions (2j, 2j+1) where transformers stores them as (j, j + head_dim/2)."""
    head_dim = n_rows // heads
    src = []
    for h in range(heads):
        for j in range(head_dim // 2):
            src += [h * head_dim + j, h * head_dim + head_dim // 2 + j]
    return np.array(src)


def _check_tensors(reader, model, dtype: str, permuted: dict[str, int]):
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    names = gguf.get_tensor_name_map(
        gguf.MODEL_ARCH.LLAMA if model.config.model_type == "llama" else gguf.MODEL_ARCH.QWEN2,
        model.config.num_hidden_layers,
    )
    by_name = {names.get_name(k, try_suffixes=(".weight", ".bias")): k for k in state}
    for t in reader.tensors:
        key = by_name[t.name]
        expected = state[key]
        assert list(t.shape) == list(reversed(expected.shape)), (
            t.name
        )  # GGUF lists dimensions innermost first
        want_half = dtype == "f16" and expected.ndim == 2
        assert t.tensor_type == (
            gguf.GGMLQuantizationType.F16 if want_half else gguf.GGMLQuantizationType.F32
        )
        for part, heads in permuted.items():
            if f".{part}." in t.name:
                expected = expected[_hf_rows_for_gguf(expected.shape[0], heads)]
        want = expected.astype(np.float16) if want_half else expected
        np.testing.assert_array_equal(np.asarray(t.data).reshape(expected.shape), want, err_msg=t.name)


@pytest.mark.parametrize("dtype", ["f16", "f32"])
def test_qwen2_tiny(tmp_path, tiny, dtype):
    model, tok, _ = tiny
    path = write_gguf(model, tok, get_template("chatml"), tmp_path / f"tiny-{dtype}.gguf", dtype)
    assert path == tmp_path / f"tiny-{dtype}.gguf"
    r = gguf.GGUFReader(path)
    n = model.config.num_hidden_layers
    expected = {"token_embd.weight", "output_norm.weight"}
    expected |= {f"blk.{i}.{t}.weight" for i in range(n) for t in LAYER_TENSORS}
    expected |= {f"blk.{i}.{t}.bias" for i in range(n) for t in ("attn_q", "attn_k", "attn_v")}
    assert {t.name for t in r.tensors} == expected  # tied embeddings: no separate output.weight
    _check_tensors(r, model, dtype, permuted={})  # qwen2 uses NeoX rope in llama.cpp: no reordering

    assert _field(r, "general.architecture") == "qwen2"
    assert _field(r, "general.file_type") == (1 if dtype == "f16" else 0)
    assert _field(r, "qwen2.block_count") == n
    assert _field(r, "qwen2.context_length") == model.config.max_position_embeddings
    assert _field(r, "qwen2.embedding_length") == model.config.hidden_size
    assert _field(r, "qwen2.feed_forward_length") == model.config.intermediate_size
    assert _field(r, "qwen2.attention.head_count") == model.config.num_attention_heads
    assert _field(r, "qwen2.attention.head_count_kv") == model.config.num_key_value_heads
    assert _field(r, "qwen2.rope.freq_base") == pytest.approx(10000.0)
    assert _field(r, "qwen2.attention.layer_norm_rms_epsilon") == pytest.approx(model.config.rms_norm_eps)
    assert _field(r, "tokenizer.ggml.model") == "gpt2"
    # transformers loads the builtin tokenizer as Qwen2Tokenizer, which splits text with the Qwen2 regex
    assert _field(r, "tokenizer.ggml.pre") == "qwen2"
    assert _field(r, "tokenizer.chat_template") == tok.chat_template
    assert _field(r, "tokenizer.ggml.eos_token_id") == tok.eos_token_id
    assert _field(r, "tokenizer.ggml.padding_token_id") == tok.pad_token_id
    assert _field(r, "tokenizer.ggml.eot_token_id") == tok.convert_tokens_to_ids("<|im_end|>")
    assert _field(r, "tokenizer.ggml.add_bos_token") is False
    assert "tokenizer.ggml.bos_token_id" not in r.fields
    tokens = _field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == len(tok) == model.get_input_embeddings().weight.shape[0]
    vocab = tok.get_vocab()
    assert all(tokens[i] == text for text, i in vocab.items())
    types = _field(r, "tokenizer.ggml.token_type")
    assert [types[tok.convert_tokens_to_ids(s)] for s in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [
        3
    ] * 3
    assert types[vocab["a"]] == 1  # NORMAL
    merges = _field(r, "tokenizer.ggml.merges")
    spec = json.loads(tok.backend_tokenizer.to_str())
    assert merges == [" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]]


@pytest.mark.parametrize("dtype", ["f16", "f32"])
def test_llama_permutes_q_and_k(tmp_path, tiny_llama, dtype):
    model, tok = tiny_llama
    path = write_gguf(model, tok, get_template("chatml"), tmp_path / "llama.gguf", dtype)
    r = gguf.GGUFReader(path)
    names = {t.name for t in r.tensors}
    assert "output.weight" in names and "blk.1.attn_q.bias" not in names
    assert len(names) == 3 + 2 * len(LAYER_TENSORS)
    _check_tensors(r, model, dtype, permuted={"attn_q": 4, "attn_k": 2})
    assert _field(r, "general.architecture") == "llama"
    assert _field(r, "llama.block_count") == 2
    assert _field(r, "llama.rope.dimension_count") == 16
    assert _field(r, "tokenizer.ggml.pre") == "qwen2"  # the tokenizer decides, not the architecture


def test_llama3_rope_scaling_writes_rope_freqs(tmp_path, tiny):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok, _ = tiny
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0}
    rope |= {"high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    config.rope_parameters = rope
    model = LlamaForCausalLM(config)
    r = gguf.GGUFReader(write_gguf(model, tok, get_template("chatml"), tmp_path / "l3.gguf", "f32"))
    freqs = {t.name: t for t in r.tensors}["rope_freqs.weight"]
    factors = np.asarray(freqs.data)
    assert factors.shape == (16,) and factors[0] == 1.0 and factors[-1] == pytest.approx(8.0)
    assert _field(r, "llama.rope.freq_base") == pytest.approx(500000.0)


def test_builtin_tokenizer_file_is_qwen2(tmp_path, tiny):
    """The builtin tokenizer.json as written (Qwen2 regex, then ByteLevel) maps to llama.cpp's 'qwen2'."""
    from transformers import PreTrainedTokenizerFast

    model, _, d = tiny
    tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(d) / "tokenizer.json"), eos_token="<|im_end|>")
    r = gguf.GGUFReader(write_gguf(model, tok, get_template("chatml"), tmp_path / "t.gguf", "f16"))
    assert _field(r, "tokenizer.ggml.pre") == "qwen2"
    assert "tokenizer.chat_template" not in r.fields  # this tokenizer has none


def test_plain_byte_level_is_gpt2():
    """A plain ByteLevel pre-tokenizer splits with the GPT-2 regex; with a prefix space it is something else."""
    assert (
        _pre_tokenizer({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}, FAMILIES["qwen2"])
        == "gpt-2"
    )
    with pytest.warns(UserWarning, match="unrecognised"):
        assert _pre_tokenizer({"type": "ByteLevel", "add_prefix_space": True}, FAMILIES["qwen2"]) == "qwen2"


def test_unknown_pre_tokenizer_warns():
    with pytest.warns(UserWarning, match="unrecognised pre-tokenizer"):
        assert _pre_tokenizer({"type": "Whitespace"}, FAMILIES["llama"]) == "llama-bpe"


def test_unsupported_architecture_and_tokenizer(tmp_path, tiny):
    fake = SimpleNamespace(config=SimpleNamespace(model_type="phi3"))
    with pytest.raises(TuneboardError, match="'phi3'"):  # the full message: tests/test_gguf_families.py
        write_gguf(fake, None, None, tmp_path / "x.gguf", "f16")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    word = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    word.pre_tokenizer = pre_tokenizers.Whitespace()
    model, _, _ = tiny
    with pytest.raises(TuneboardError, match="byte-level BPE"):
        write_gguf(model, PreTrainedTokenizerFast(tokenizer_object=word), None, tmp_path / "y.gguf", "f16")
    with pytest.raises(TuneboardError, match="dtype"):  # q8_0 is written now; k-quants are not
        write_gguf(model, None, None, tmp_path / "z.gguf", "q4_k_m")


def _gguf_forward(path: Path, ids: list[int]) -> np.ndarray:
    """Logits computed the way llama.cpp does, from the GGUF file alone: rope on neighbouring pairs for
    llama (GGML's normal mode), on the two halves of each head for qwen2 (NeoX mode); numpy, f32."""
    r = gguf.GGUFReader(path)
    w = {t.name: np.asarray(t.data, dtype=np.float32).reshape(list(reversed(t.shape))) for t in r.tensors}
    arch = _field(r, "general.architecture")
    n_head, n_kv = _field(r, f"{arch}.attention.head_count"), _field(r, f"{arch}.attention.head_count_kv")
    eps, base = _field(r, f"{arch}.attention.layer_norm_rms_epsilon"), _field(r, f"{arch}.rope.freq_base")
    x = w["token_embd.weight"][ids]
    n, hd = len(ids), x.shape[1] // n_head
    angles = np.arange(n)[:, None] * base ** (-np.arange(0, hd, 2) / hd)
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]

    def norm(v, weight):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * weight

    def rope(v):
        a, b = (v[..., : hd // 2], v[..., hd // 2 :]) if arch == "qwen2" else (v[..., 0::2], v[..., 1::2])
        ra, rb = a * cos - b * sin, a * sin + b * cos
        return np.concatenate([ra, rb], -1) if arch == "qwen2" else np.stack([ra, rb], -1).reshape(v.shape)

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
        att = np.einsum("hqk,khd->qhd", p / p.sum(-1, keepdims=True), v).reshape(n, -1)
        x = x + proj(att, f"blk.{i}.attn_output")
        h = norm(x, w[f"blk.{i}.ffn_norm.weight"])
        gate = proj(h, f"blk.{i}.ffn_gate")
        x = x + proj(gate / (1 + np.exp(-gate)) * proj(h, f"blk.{i}.ffn_up"), f"blk.{i}.ffn_down")
    return norm(x, w["output_norm.weight"]) @ w.get("output.weight", w["token_embd.weight"]).T


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_llama_cpp_semantics_reproduce_transformers_logits(tmp_path, tiny, tiny_llama, arch):
    """The GGUF tensors, run with llama.cpp's rope conventions, give the transformers logits."""
    model, tok = (tiny[0], tiny[1]) if arch == "qwen2" else tiny_llama
    path = write_gguf(model, tok, get_template("chatml"), tmp_path / "m.gguf", "f32")
    ids = tok("Hello, who are you? 12345")["input_ids"]
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    got = _gguf_forward(path, ids)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize(
    ("dtype", "tolerance", "logit_tolerance"),
    [("q8_0", 0.01, 0.03), ("q5_1", 0.05, 0.15), ("q5_0", 0.07, 0.2), ("q4_1", 0.1, 0.3), ("q4_0", 0.2, 0.4)],
)
def test_quantized_types_read_back_as_the_weights(tmp_path, tiny, dtype, tolerance, logit_tolerance):
    """Each matrix is stored in the quantized type (general.file_type says which) and dequantizes to the trained
    weights within the type's precision; transformers' GGUF reader loads the file and its logits stay close."""
    from gguf import GGMLQuantizationType, LlamaFileType
    from gguf.quants import dequantize
    from transformers import AutoModelForCausalLM

    model, tok, _ = tiny
    path = write_gguf(model, tok, get_template("chatml"), tmp_path / f"tiny-{dtype}.gguf", dtype)
    r = gguf.GGUFReader(path)
    assert _field(r, "general.file_type") == getattr(LlamaFileType, f"MOSTLY_{dtype.upper()}")
    qtype = getattr(GGMLQuantizationType, dtype.upper())
    state = model.state_dict()
    for t in r.tensors:
        if t.name == "blk.0.attn_q.weight":
            assert t.tensor_type == qtype
            got = dequantize(t.data, t.tensor_type).reshape(
                state["model.layers.0.self_attn.q_proj.weight"].shape
            )
            want = state["model.layers.0.self_attn.q_proj.weight"].numpy()
            assert np.abs(got - want).max() <= tolerance * np.abs(want).max()
        if t.name.endswith("_norm.weight"):
            assert t.tensor_type == GGMLQuantizationType.F32
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name).eval()
    ids = torch.tensor([tok("hello world, 你好")["input_ids"]])
    with torch.no_grad():
        a, b = model(ids).logits, back(ids).logits
    err = float((a - b).abs().max() / a.abs().max())
    assert err <= logit_tolerance, err


def test_a_row_that_is_not_whole_blocks_stays_f16(tmp_path, tiny):
    from tuneboard.export.gguf import _tensor_plan

    model, _, _ = tiny
    state = {"model.embed_tokens.weight": torch.zeros(8, 40), "model.norm.weight": torch.zeros(40)}
    kinds = {name: kind for name, _, _, kind in _tensor_plan(state, model.config, FAMILIES["qwen2"], "q8_0")}
    assert kinds == {"token_embd.weight": "f16", "output_norm.weight": "f32"}


def test_unknown_weight_type_names_the_valid_ones(tmp_path, tiny):
    model, tok, _ = tiny
    with pytest.raises(TuneboardError, match="q8_0, q5_1"):
        write_gguf(model, tok, get_template("chatml"), tmp_path / "x.gguf", "q4_k_m")


def _random_norms(model):
    with torch.no_grad():  # random norms, so a wrong tensor mapping cannot hide behind all-ones
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_families(tiny):
    """Random Qwen3 (q/k norms, head_dim apart from hidden/heads) and Mistral models on the builtin tokenizer.

    head_dim is 128 as in every released Qwen3: transformers' GGUF reader does not read attention.key_length
    for qwen3 and assumes Qwen3Config's default of 128 (llama.cpp reads the key we write)."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen3Config, Qwen3ForCausalLM

    _, tok, _ = tiny
    common = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    qwen3 = Qwen3ForCausalLM(Qwen3Config(head_dim=128, tie_word_embeddings=True, **common))
    mistral = MistralForCausalLM(MistralConfig(sliding_window=None, tie_word_embeddings=False, **common))
    return {"qwen3": _random_norms(qwen3), "mistral": _random_norms(mistral)}, tok


@pytest.mark.parametrize(("family", "arch"), [("qwen3", "qwen3"), ("mistral", "llama")])
def test_more_families_load_back_with_the_same_logits(tmp_path, tiny_families, family, arch):
    """Qwen3 (its q/k norms, NeoX rope) and Mistral (llama.cpp's llama: pairwise rope) written as f32 and read
    back by transformers' GGUF reader give the model's own logits."""
    from transformers import AutoModelForCausalLM

    models, tok = tiny_families
    model = models[family]
    # not named after the family: transformers' reader takes a llama file whose general.name says "mistral" for
    # its own mistral type and then fails to map its tensors (llama.cpp reads it either way)
    path = write_gguf(model, tok, get_template("chatml"), tmp_path / "model.gguf", "f32")
    r = gguf.GGUFReader(path)
    assert _field(r, "general.architecture") == arch
    if family == "qwen3":
        assert {"blk.0.attn_q_norm.weight", "blk.0.attn_k_norm.weight"} <= {t.name for t in r.tensors}
        assert _field(r, "qwen3.attention.key_length") == 128
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name).eval()
    ids = torch.tensor([tok("Hello, who are you? 12345 你好")["input_ids"]])
    with torch.no_grad():
        want, got = model(ids).logits, back(ids).logits
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-3)


def test_a_sliding_window_mistral_is_exported_with_a_warning(tmp_path, tiny_families):
    import copy

    models, tok = tiny_families
    model = copy.deepcopy(models["mistral"])
    model.config.sliding_window = 4096
    with pytest.warns(UserWarning, match="sliding"):
        write_gguf(model, tok, get_template("chatml"), tmp_path / "m.gguf", "f16")
