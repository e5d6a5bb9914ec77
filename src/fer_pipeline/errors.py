"""Errors that end a stage with one clear line instead of a traceback."""


class FerError(Exception):
    """A user-facing error: the message says what went wrong and what to do."""


class DataError(FerError):
    """The input data is missing, malformed or inconsistent."""


class ValidationFailed(FerError):
    """Hard data-validation expectations failed."""
