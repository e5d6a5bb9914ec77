"""Errors that end a stage with one clear line instead of a traceback."""


class FerError(Exception):
    """A user-facing error: the message says what went wrong and what to do."""


class DataError(FerError):
    """The input data is missing, malformed or inconsistent."""


class ValidationFailed(FerError):
    """Hard data-validation expectations failed."""


class PeerLost(FerError):
    """Another process of a multi-process run failed or cannot be reached. After its one line the
    process exits at once: an ordinary exit runs JAX's shutdown, which waits at a barrier for the
    lost peer until its heartbeat times out, then aborts with a stack trace."""
