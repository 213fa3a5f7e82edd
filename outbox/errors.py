"""One error hierarchy for the outbox library and the handlers built on it.

The consumer runtime decides what to do by branch: a ``TransientError`` is retried with
backoff, a ``PermanentError`` goes straight to the dead-letter topic. Driver errors are
sorted into the two at the boundary (``outbox.retry.is_transient`` and ``is_permanent``).
"""


class ChoreoError(Exception):
    """Root of every error the library raises on purpose."""


class TransientError(ChoreoError):
    """Worth retrying: the same input may succeed later (lost connection, deadlock)."""


class PermanentError(ChoreoError):
    """Retrying cannot help; the event is dead-lettered with this error as the reason."""


class PoisonMessage(PermanentError):
    """The message cannot be read: headers missing, unknown writer schema, bad Avro."""


class EventValidationError(PermanentError):
    """A payload does not match its schema; raised before anything is written."""


class ConfigError(ChoreoError):
    """A setting is missing or malformed; raised at start-up, naming the variable."""
