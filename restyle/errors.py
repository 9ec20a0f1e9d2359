"""One exception family, in one file (as httpx keeps its own). Every message says what went wrong and what to do.

The tree::

    RestyleError
      InputError          the input (video, image, folder, style picture) cannot be used
      ModelError          a model cannot be loaded or run, or its parameters are wrong
      OutputError         the output cannot be written where it was asked for
      WorkDirError        the work directory cannot hold or give back chunk segments
      StoreError          the object store refused or failed an operation
        BadKey            an object key that could name something outside the store
      JobStoreError       the job store cannot be reached or refused an operation
      Cancelled           a run was cancelled; finished chunks are kept
      ServiceError        (client side) the service refused a request or could not be reached
      Refusal             (service domain) a request the service will not take; no HTTP in here:
        Invalid           the request is malformed or does not fit (the web face answers 422)
        NotFound          what it names does not exist, or is not the caller's (404)
        Conflict          a name is taken, or the thing is in the wrong state (409)
        TooLarge          the body or the file is over a limit (413)

The web face maps these to statuses in one table (``service/http/app.py``); the CLI prints any of
them as one line on stderr with exit code 2.
"""


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


class StoreError(RestyleError):
    """The object store refused or failed an operation."""


class BadKey(StoreError):
    """An object key that could name something outside the store."""


class JobStoreError(RestyleError):
    """The job store cannot be reached or refused an operation."""


class Cancelled(RestyleError):
    """The run was cancelled; finished chunks are kept."""


class ServiceError(RestyleError):
    """The service refused a request or could not be reached (raised by the client)."""


class Refusal(RestyleError):
    """A request the service's domain will not take. Its children say why; none carries an HTTP status."""


class Invalid(Refusal):
    """The request is malformed, or what it brings does not fit (a model that is no model, a bad field)."""


class NotFound(Refusal):
    """What the request names does not exist, or is not the caller's to see."""


class Conflict(Refusal):
    """A name that is taken, or a thing in a state that does not allow the request."""


class TooLarge(Refusal):
    """A body or a file over its limit."""
