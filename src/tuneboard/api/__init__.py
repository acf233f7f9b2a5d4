"""OpenAI-compatible HTTP API over ChatEngine."""
