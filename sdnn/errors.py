"""Errors a user can fix: each message names the config key or file and the fix."""


class SDNNError(Exception):
    """Base class; the CLI prints the message (no traceback) and exits with status 2."""


class ConfigError(SDNNError):
    """An impossible or inconsistent configuration value."""


class DataError(SDNNError):
    """A missing, unreadable or malformed data file."""
