"""Errors the launcher reports to a user: each message says what to do next.

A wrong setting, port or template is the project's one ``ConfigError``
(``outbox.errors``), re-exported here so the launcher's modules find all their errors in
one place; the command line prints it, like a ``StackError``, without a traceback.
"""

from choreo.outbox.errors import ConfigError

__all__ = ["ConfigError", "ConnectorError", "InstallError", "StackError", "StartError"]


class StackError(Exception):
    """Root of the launcher's own failures; the command line prints it without a traceback."""


class InstallError(StackError):
    """A package or artifact could not be installed or failed verification."""


class StartError(StackError):
    """A component did not become healthy in time; the message names its log file."""


class ConnectorError(StackError):
    """A connector or its task failed; the message carries Connect's trace."""
