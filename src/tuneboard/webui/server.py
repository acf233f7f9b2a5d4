"""Starting a gradio page: bind 127.0.0.1 unless told otherwise, and warn when bound elsewhere.

Interface layer helper shared by `tuneboard webui` and `tuneboard webchat`.
"""

from __future__ import annotations

import sys
from typing import Any

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORT = 7860


def bind_host(host: str | None, what: str) -> str:
    host = host or "127.0.0.1"
    if host not in LOCAL_HOSTS:
        print(
            f"warning: {what} is bound to {host}: anyone who can reach this address can use it "
            "(there is no login); bind 127.0.0.1 and use an SSH tunnel to reach it from elsewhere",
            file=sys.stderr,
        )
    return host


def launch(blocks: Any, host: str | None, port: int | None, what: str, **kwargs: Any) -> int:
    host = bind_host(host, what)
    port = port or DEFAULT_PORT
    print(f"{what}: http://{'[' + host + ']' if ':' in host else host}:{port}", flush=True)
    blocks.queue(default_concurrency_limit=4).launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=True,
        ssr_mode=False,
        quiet=True,
        **kwargs,
    )
    return 0
