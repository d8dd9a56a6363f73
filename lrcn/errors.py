"""One exception type per kind of user error.

The command line catches :class:`LrcnError` once and prints its message without a
traceback, so every message must name the file, key or id at fault and say what to do.
"""


class LrcnError(Exception):
    """Base class of every error caused by the user's input rather than by a bug."""


class ConfigError(LrcnError):
    """An unknown or ill-typed config key, a bad override, an unreadable YAML file."""


class DataError(LrcnError):
    """A missing or malformed dataset / annotation / results file, an escaping path."""


class MediaError(LrcnError):
    """An image or video that cannot be decoded, is empty, or is too large."""


class CheckpointError(LrcnError):
    """A run folder or checkpoint that is missing, unsafe or from an incompatible version."""


class WeightsUnavailableError(LrcnError):
    """Pretrained weights that cannot be fetched (offline) or found on disk."""


class TrainingError(LrcnError):
    """Training cannot go on (a NaN or infinite loss); the last good checkpoint is kept."""
