"""Errors that describe bad input; the runner records them on the episode instead of stopping the run."""


class EpisodeInputError(ValueError):
    """An episode's files are missing, unreadable or inconsistent. The message names the file and the cause."""


class ConfigurationError(ValueError):
    """The requested backends cannot work on this input (e.g. `--depth given` on a plain video)."""
