"""Write Qwen2's real tokenizer (151,936 tokens) to a directory, from PyPI alone (no model hub).

llama-cpp-python's source distribution vendors llama.cpp's vocabulary-only GGUF files together with
reference tokenizations (`ggml-vocab-qwen2.gguf`, `.inp`, `.out`). transformers converts the GGUF into a fast
tokenizer; this script checks it against every reference case before writing it, so the preprocessing
benchmark can use a production tokenizer on a machine without hub access.

    .venv/bin/python bench/qwen2_tokenizer.py /tmp/qwen2tok
    .venv/bin/python bench/qwen2_tokenizer.py /tmp/qwen2tok --gguf path/to/ggml-vocab-qwen2.gguf
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VOCAB = "ggml-vocab-qwen2.gguf"
SEP = "\n__ggml_vocab_test__\n"


def fetch(work: Path) -> Path:
    """Download llama-cpp-python's sdist and extract the Qwen2 vocabulary with its reference cases."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(work)]
    subprocess.run([*cmd, "llama-cpp-python"], check=True)
    sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.isfile() and Path(member.name).name.startswith(VOCAB):
                member.name = Path(member.name).name
                tar.extract(member, work, filter="data")
    return work / VOCAB


def check(tokenizer_json: Path, gguf: Path) -> int:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    inputs = gguf.with_name(gguf.name + ".inp").read_text(encoding="utf-8").split(SEP)
    outputs = gguf.with_name(gguf.name + ".out").read_text(encoding="utf-8").split("\n")
    for text, want in zip(inputs, outputs, strict=False):
        got = tok.encode(text, add_special_tokens=False).ids
        if got != [int(x) for x in want.split()]:
            raise SystemExit(f"tokenizer differs from llama.cpp's reference on {text[:40]!r}")
    return len(inputs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="directory to write (tokenizer.json, tokenizer_config.json, config.json)")
    ap.add_argument("--gguf", default=None, help=f"an existing {VOCAB} (its .inp/.out beside it)")
    a = ap.parse_args(argv)
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="qwen2-vocab-") as tmp:
        gguf = Path(a.gguf) if a.gguf else fetch(Path(tmp))
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        out = Path(a.out)
        tok.save_pretrained(out)
        n = check(out / "tokenizer.json", gguf)
    # a model config so tools that read one next to the tokenizer (LLaMA-Factory) find the architecture
    (out / "config.json").write_text(json.dumps({"model_type": "qwen2", "vocab_size": len(tok)}, indent=2))
    shutil.rmtree(out / "__pycache__", ignore_errors=True)
    print(f"wrote {out}: {type(tok).__name__}, {len(tok)} tokens, {n}/{n} reference cases equal to llama.cpp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
