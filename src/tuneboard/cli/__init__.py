"""The command line (`tuneboard ...`): main.py parses and calls one workflow per command; chat.py is the terminal chat."""

from .main import main

__all__ = ["main"]
