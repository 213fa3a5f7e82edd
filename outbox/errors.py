"""One error hierarchy for the outbox library and the handlers built on it.

The consumer runtime decides what to do by branch: a ``TransientError`` is retried with
backoff, a ``PermanentError`` goes straight to the dead-letter topic, and ``RetryLater``
(a signal, not a failure) pauses the consumer and handles the event again afterwards.
Driver errors are sorted into these at the boundary (``outbox.retry.is_transient`` and
``is_permanent``).
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


class UndeclaredEvent(PermanentError):
    """A service emitted an event type its definition does not declare (``emits``).

    A bug in the service, caught before the row is written: what the service says it
    emits is what the contract check (``choreo schemas contracts``) checks against every
    consumer, so an undeclared emit would reach topics nobody checked. Raised inside a
    handler, the event is dead-lettered with this as its reason and can be replayed once
    the declaration (or the code) is fixed."""


class RetryLater(ChoreoError):
    """Control flow: a dependency is unavailable for a while, so no event can succeed now.

    Not a failure of the event, and no attempt of it is counted: the runtime rolls the
    event back, pauses its partitions for ``after_s`` (keeping their leases) and then
    reads it again. Raised by an open circuit breaker (``outbox.breaker``).
    """

    def __init__(self, message: str, after_s: float) -> None:
        super().__init__(message)
        self.after_s = after_s


class ConfigError(ChoreoError):
    """A setting is missing or malformed; raised at start-up, naming the variable."""
