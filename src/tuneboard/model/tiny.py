"""`builtin:tiny`: a small Qwen2-architecture model with a byte-level BPE tokenizer trained on the bundled data.

Model layer. Built offline and deterministically in seconds, cached under the user's cache directory,
so the whole flow (train, evaluate, chat, export) runs with no network. Random weights: it knows only
what it is fine-tuned on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import TuneboardError
from ..rundir import write_tiny_marker

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = "chatml"
# the cache key sees the spec, the template and the corpus, not this code: bump on any change to the build
BUILD_VERSION = "4"  # 2: Qwen2 pre-tokenizer, re-saved as transformers loads it; 4: punctuation apart


@dataclass(frozen=True)
class TinySpec:
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 688
    vocab_size: int = 4096  # the BPE target; the small bundled corpus yields fewer tokens (~2,600)
    max_position_embeddings: int = 4096
    seed: int = 0
    # the model's vocabulary is at least this many rows (the extra rows are never produced by the tokenizer),
    # so a benchmark model has the requested size; 0 (builtin:tiny) = exactly the tokenizer's size
    min_vocab_size: int = 0

    @classmethod
    def sized(
        cls,
        hidden_size: int,
        layers: int,
        heads: int,
        kv_heads: int,
        intermediate_size: int | None = None,
        vocab_size: int | None = None,
    ) -> TinySpec:
        """A spec of the given shape: the MLP width follows Qwen2's ratio (about 2.69x the hidden size, a multiple
        of 8) unless given; an asked-for vocabulary is both the BPE target and the model's minimum size."""
        return cls(
            hidden_size=hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            intermediate_size=intermediate_size or int(hidden_size * 2.6875) // 8 * 8,
            vocab_size=vocab_size or cls.vocab_size,
            min_vocab_size=vocab_size or 0,
        )


def bundled_data_dir() -> Path:
    """The repository's data/ (the tutorial's data directory), next to src/."""
    return Path(__file__).resolve().parents[3] / "data"


def corpus_texts(data_dir: Path | None = None) -> list[str]:
    """Every string in the bundled data files (identity placeholders included), in a fixed order."""
    data_dir = data_dir or bundled_data_dir()
    texts: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for path in sorted(data_dir.glob("*.json")) if data_dir.is_dir() else []:
        if path.name == "dataset_info.json":
            continue
        try:
            walk(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    # words of the chat format and common English so the vocabulary is useful beyond the demo
    texts += [
        "system",
        "user",
        "assistant",
        "\n",
        "You are a helpful assistant.",
        "Hello! How can I help you?",
    ]
    return texts


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from ..data.templates.hf_jinja import to_jinja
    from ..data.templates.named import get_template

    tok = Tokenizer(models.BPE())
    qwen2 = [
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]
    # Learn merges with punctuation on its own: Qwen2's regex lets one punctuation mark lead a run of letters
    # ("，我摔了一跤"), and on this small corpus BPE would otherwise learn one token per punctuation + phrase
    # pair, so the same phrase would reach the model as different tokens after "，" and after "："
    punct = Regex(r"[^\s\p{L}\p{N}]")
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(punct, behavior="isolated"), *qwen2])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # encoding uses the pre-tokenizer transformers' Qwen2Tokenizer applies on load (digits one by one)
    tok.pre_tokenizer = pre_tokenizers.Sequence(qwen2)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL[1:],
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    fast.chat_template = to_jinja(get_template(TEMPLATE))
    return fast


def build(out_dir: Path, spec: TinySpec = TinySpec()) -> Path:
    """Write a complete HF model directory (safetensors, tokenizer, chat template, generation config)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tokenizer(corpus_texts(), spec.vocab_size)
    config = Qwen2Config(
        vocab_size=max(len(tokenizer), spec.min_vocab_size),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    torch.manual_seed(spec.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[config.eos_token_id, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # round trip through AutoTokenizer: tokenizer.json on disk is then exactly what training loads, so tools
    # that read the file directly (the light tokenizer of `data check`) tokenize the same way
    AutoTokenizer.from_pretrained(out_dir).save_pretrained(out_dir)
    write_tiny_marker(out_dir, {**asdict(spec), "template": TEMPLATE})
    return out_dir


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tuneboard" / "builtin"


def fingerprint(spec: TinySpec) -> str:
    from ..data.templates.hf_jinja import to_jinja
    from ..data.templates.named import get_template

    items = asdict(spec)
    if not items["min_vocab_size"]:  # unchanged key for the default model (field added later)
        del items["min_vocab_size"]
    h = hashlib.sha256(f"{BUILD_VERSION}{sorted(items.items())}".encode())
    h.update(to_jinja(get_template(TEMPLATE)).encode())
    for text in corpus_texts():
        h.update(text.encode())
    return h.hexdigest()[:16]


def ensure(spec: TinySpec = TinySpec()) -> Path:
    """The cached tiny model directory, built on first use (atomically: concurrent builders are safe)."""
    target = cache_root() / f"tiny-{fingerprint(spec)}"
    if (target / "config.json").exists():
        return target
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp, spec)
        if not target.exists():
            os.replace(tmp, target)
    except OSError as exc:
        raise TuneboardError(f"{target}: cannot build the builtin tiny model ({exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
