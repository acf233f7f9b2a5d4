"""tuneboard: fine-tune open LLMs on your own data, LLaMA-Factory compatible."""

__version__ = "0.1.0"
