"""Stream a reply from an exported model directory with plain transformers (no tuneboard at run time).

python examples/inference/stream_transformers.py demo_output/export "你是谁？"
"""

import sys
from threading import Thread

from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer


def main(model_dir: str, question: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto", device_map="auto")
    messages = [{"role": "user", "content": question}]
    # the exported tokenizer carries the chat template used in training
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    # generation_config.json (eos ids include the end-of-turn token) makes generation stop at the turn's end
    thread = Thread(target=model.generate, kwargs=dict(**inputs, streamer=streamer, max_new_tokens=256))
    thread.start()
    for piece in streamer:
        print(piece, end="", flush=True)
    print()
    thread.join()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "你是谁？")
