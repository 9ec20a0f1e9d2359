"""One exception family. Every message says what went wrong and what to do about it."""


class RestyleError(Exception):
    """Base of every error restyle raises on purpose; the CLI prints it as one line."""


class InputError(RestyleError):
    """The input (video, image folder, style image) cannot be used."""


class ModelError(RestyleError):
    """A model cannot be loaded or run, or its parameters are wrong."""


class OutputError(RestyleError):
    """The output cannot be written where it was asked for."""


class WorkDirError(RestyleError):
    """The work directory cannot hold or give back chunk segments."""
