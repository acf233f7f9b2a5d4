"""`tuneboard chat`: terminal chat over ChatEngine with streaming output and history.

Interface layer. `clear` starts over, `exit` leaves; Ctrl-C stops the current reply, not the program.
"""

from __future__ import annotations

import sys
import threading

from ..config import Config


def run(cfg: Config, stdin=None, stdout=None) -> int:
    from ..inference import make_engine

    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    engine = make_engine(cfg)
    interactive = stdin.isatty()
    history: list[dict[str, str]] = []
    system = cfg.default_system
    out.write("Type your message; 'clear' starts a new conversation, 'exit' quits.\n")
    out.flush()
    while True:
        if interactive:
            out.write("\nUser: ")
            out.flush()
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            out.write("\n")
            continue
        if not line:
            break
        query = line.strip()
        if not query:
            continue
        if query == "exit":
            break
        if query == "clear":
            history = []
            out.write("History cleared.\n")
            continue
        history.append({"role": "user", "content": query})
        out.write("Assistant: ")
        out.flush()
        cancel = threading.Event()
        text = ""
        try:
            for piece in engine.stream(history, system=system, cancel=cancel):
                text += piece
                out.write(piece)
                out.flush()
        except KeyboardInterrupt:
            cancel.set()
            out.write(" [stopped]")
        out.write("\n")
        out.flush()
        history.append({"role": "assistant", "content": text})
    return 0
