"""Data layer: registry -> read -> Conversation -> template -> tokens + labels -> batches."""
