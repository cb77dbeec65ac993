"""Exception types. Every error a user can cause is one of these, with a message that
says what was received and what is allowed; the CLI and the app show the message, never a
stack trace."""

__all__ = [
    "EchoAuditError",
    "VideoError",
    "DatasetError",
    "CheckpointError",
    "IndexMismatchError",
]


class EchoAuditError(Exception):
    """Base class of all errors a user can cause (bad input, mismatched files)."""


class VideoError(EchoAuditError):
    """A video that cannot be used: not a video, truncated, empty, too large, bad values."""


class DatasetError(EchoAuditError):
    """An EchoNet-format data set with problems; the message lists all of them."""


class CheckpointError(EchoAuditError):
    """A checkpoint that is missing, corrupt, or does not match its config."""


class IndexMismatchError(EchoAuditError):
    """An index queried with models or data other than those it was built from."""
