"""Export: workflow.py merges and writes a plain HF model directory; gguf.py and ollama.py write the other formats."""
