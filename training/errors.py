"""Errors that stop a job before it spends anything, with a message that says the fix."""


class ConfigError(ValueError):
    """Bad flags, config or environment: the job exits with code 2 and writes nothing."""


class DatasetUnavailable(ConfigError):
    """The requested dataset cannot be had here (missing files, no network, bad checksum)."""
