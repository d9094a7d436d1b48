"""Errors that stop a job before it spends anything, with a message that says the fix."""

CONFIG_ERROR_EXIT = 2
"""The exit code of a job that no retry can fix: its flags, config or data are wrong."""


class ConfigError(ValueError):
    """Bad flags, config or environment: the job exits with CONFIG_ERROR_EXIT, writes nothing."""


class DatasetUnavailable(ConfigError):
    """The requested dataset cannot be had here (missing files, no network, bad checksum)."""
