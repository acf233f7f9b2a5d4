"""Use a model served by `tuneboard api CONFIG` from your application with the official openai client.

API_KEY=sk-local tuneboard api examples/tiny-lora.yaml &      # serves http://127.0.0.1:8000/v1
API_KEY=sk-local python examples/inference/openai_client.py "你是谁？"
"""

import os
import sys

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("API_BASE", "http://127.0.0.1:8000/v1"), api_key=os.environ.get("API_KEY", "none")
)
model = client.models.list().data[0].id
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": sys.argv[1] if len(sys.argv) > 1 else "你是谁？"}],
    stream=True,
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
