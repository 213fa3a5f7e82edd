"""Errors the launcher reports to a user: each message says what to do next."""


class StackError(Exception):
    """Root of every launcher failure; the command line prints it without a traceback."""


class ConfigError(StackError):
    """A setting, port or template is wrong; raised before anything is started."""


class InstallError(StackError):
    """A package or artifact could not be installed or failed verification."""


class StartError(StackError):
    """A component did not become healthy in time; the message names its log file."""


class ConnectorError(StackError):
    """A connector or its task failed; the message carries Connect's trace."""
