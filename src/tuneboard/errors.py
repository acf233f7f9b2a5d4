"""The one exception type that reaches users: a message for a person, printed without a traceback.

Every layer raises `TuneboardError` (or a subclass) for bad input; cli.py prints it and exits 1.
"""


class TuneboardError(Exception):
    """A problem the user can fix: the message says what is wrong and where."""


class ConfigError(TuneboardError):
    pass


class DataError(TuneboardError):
    pass
