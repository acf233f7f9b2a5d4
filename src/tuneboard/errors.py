"""The one exception type that reaches users: a message for a person, printed without a traceback.

Every layer raises `TuneboardError` (or a subclass) for bad input; cli.py prints it and exits 1.
"""


class TuneboardError(Exception):
    """A problem the user can fix: the message says what is wrong and where."""


class ConfigError(TuneboardError):
    pass


class DataError(TuneboardError):
    pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or the web UI's Stop, raised by tuneboard's own SIGINT handler.

    A subclass on purpose: CPython 3.11 marks the whole process "killed by SIGINT" (exit status -2 instead of
    the 130 the CLI returns) when a plain KeyboardInterrupt passes through `exec` of a string, which
    dataclasses and transformers do while importing; the mark is set only for exactly KeyboardInterrupt."""


def raise_interrupted(signum, frame) -> None:
    raise Interrupted
