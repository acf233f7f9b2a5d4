"""Model layer: load a model and tokenizer, attach adapters, build the builtin tiny model."""
