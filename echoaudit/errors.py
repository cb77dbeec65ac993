"""Exception types. Every error a user can cause is one of these, with a message that
says what was received and what is allowed; the CLI and the app show the message, never a
stack trace."""

__all__ = [
    "EchoAuditError",
    "VideoError",
    "DatasetError",
    "CheckpointError",
    "IndexMismatchError",
    "ConfigError",
    "ReviewError",
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


class ConfigError(EchoAuditError):
    """A JSON manifest or config file that cannot be used: unreadable, not UTF-8, not
    valid JSON, too large, too deeply nested, numbers out of range, or the wrong types."""


class ReviewError(EchoAuditError):
    """A reviewer decision that cannot be recorded or read: a bad verdict, an empty
    reviewer, a score outside [0, 1], a bad row of an imported CSV, an unusable database."""
