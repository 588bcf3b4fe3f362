"""The project's own error types: one-line messages the CLI prints without a traceback."""


class TexpressError(Exception):
    """Base of every user-facing error; str(err) is a single line meant for the user."""


class InputError(TexpressError):
    """An input file cannot be used (unreadable, not an image, too large, unsupported mode)."""


class BitstreamError(TexpressError):
    """A .tpx file is truncated, corrupt, or not a .tpx file at all."""


class ModelMismatchError(TexpressError):
    """A .tpx file was made by a different model than the one given to decode it."""


class CheckpointError(TexpressError):
    """A checkpoint file is missing, corrupt, or of an unknown format."""


class ConfigError(TexpressError):
    """A configuration value or preset name is invalid."""


class TrainingError(TexpressError):
    """Training could not run, or failed beyond what the trainer recovers from."""
