"""Chat templates: base.py (the Template contract), named.py (the named templates), hf_jinja.py (`auto` and the
exported Jinja), resolve.py (which template a model uses)."""
