"""The one parser of ``CHOREO_*`` variables.

Each process's settings (a frozen dataclass with ``from_env(env)``, built once by its
``__main__``) read their variables with these functions, so every setting in the project
treats a value the same way:

- unset, empty or blank means the default (which is returned as given, unchecked);
- a value is stripped of surrounding white space before it is parsed;
- a value that does not parse, or is outside its bounds, raises the one
  :class:`~outbox.errors.ConfigError`, naming the variable and the value:
  ``CHOREO_PSP_TIMEOUT_S='soon' is not a number``, ``... '0' is outside (0, 300]``,
  ``CHOREO_PSP_BREAKER_FAILURES='0' is not a whole number in [1, 1000]``,
  ``CHOREO_PSP_PORT='80' is not a port in 1024..65535``.

Numbers are finite: ``nan`` and ``inf`` are refused wherever a number is read. Bounds are
given as in pydantic: ``gt``/``ge`` below, ``lt``/``le`` above.

A DSN's value is left out of its error, since it may carry a password.

Any variable may instead be given as a file, the convention of Docker and Kubernetes
secrets: ``CHOREO_KAFKA_SASL_PASSWORD_FILE=/run/secrets/kafka`` reads the value from that
file (stripped of its trailing newline), so a password need never sit in an environment
that ``ps``, ``docker inspect`` or a crash report shows. Giving both is an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from choreo.outbox.errors import ConfigError

PORT_RANGE = (1024, 65535)
"""Unprivileged, and the ports a test offset moves them to stay inside it too."""

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def raw_value(env: Mapping[str, str], name: str) -> str | None:
    """The variable's stripped value, or its ``_FILE``'s content; None when unset or blank."""
    raw = env.get(name)
    given = raw is not None and bool(raw.strip())
    path = env.get(f"{name}_FILE", "").strip()
    if path:
        if given:
            raise ConfigError(f"{name} and {name}_FILE are both set: give one")
        try:
            raw = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{name}_FILE={path!r} cannot be read: {error.strerror}") from None
    if raw is None or not raw.strip():
        return None
    return raw.strip()


def text(env: Mapping[str, str], name: str, default: str = "") -> str:
    """A string as it is (stripped); ``default`` when unset or blank."""
    raw = raw_value(env, name)
    return default if raw is None else raw


def required(env: Mapping[str, str], name: str, hint: str) -> str:
    """A string that must be given; ``hint`` says what it is, in the error."""
    return _required(env, name, hint)


def _required(env: Mapping[str, str], name: str, hint: str) -> str:
    raw = raw_value(env, name)
    if raw is None:
        raise ConfigError(f"{name} is required ({hint})")
    return raw


def integer(env: Mapping[str, str], name: str, default: int, *, gt: int | None = None,
            ge: int | None = None, lt: int | None = None, le: int | None = None) -> int:
    """A whole number (``2.5`` is refused), optionally bounded."""
    raw = raw_value(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not _within(value, gt, ge, lt, le):
        bounds = _interval(gt, ge, lt, le)
        raise ConfigError(f"{name}={raw!r} is not a whole number"
                          + (f" in {bounds}" if bounds else ""))
    return value


def number(env: Mapping[str, str], name: str, default: float, *, gt: float | None = None,
           ge: float | None = None, lt: float | None = None, le: float | None = None) -> float:
    """A finite number (a float), optionally bounded."""
    raw = raw_value(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not a number")
    if not _within(value, gt, ge, lt, le):
        raise ConfigError(f"{name}={raw!r} is outside {_interval(gt, ge, lt, le)}")
    return value


def check_port(name: str, value: object) -> int:
    """``value`` as a port in :data:`PORT_RANGE`, or a ConfigError naming ``name``."""
    low, high = PORT_RANGE
    try:
        port = int(str(value).strip())
    except ValueError:
        port = 0
    if not low <= port <= high:
        raise ConfigError(f"{name}={str(value).strip()!r} is not a port in {low}..{high}")
    return port


def port(env: Mapping[str, str], name: str, default: int) -> int:
    """A TCP port to listen on or connect to, in 1024..65535."""
    raw = raw_value(env, name)
    return default if raw is None else check_port(name, raw)


def url(env: Mapping[str, str], name: str, default: str = "",
        schemes: tuple[str, ...] = ("http", "https")) -> str:
    """A URL with one of ``schemes`` and a host (or, for ``unix``, a path)."""
    raw = raw_value(env, name)
    if raw is None:
        return default
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "unix"):
        article = "an" if schemes[0][0] in "aehiou" else "a"
        raise ConfigError(f"{name}={raw!r} is not {article} {'/'.join(schemes)} URL")
    return raw


def dsn(env: Mapping[str, str], name: str, hint: str, *, required: bool = True) -> str:
    """A PostgreSQL DSN (URL or ``key=value`` form) that libpq can parse; when not
    ``required``, unset or blank gives ``""``."""
    if not required and raw_value(env, name) is None:
        return ""
    raw = _required(env, name, hint)
    try:
        conninfo_to_dict(raw)
    except psycopg.ProgrammingError as error:
        raise ConfigError(f"{name} is not a valid DSN: {error}") from None
    return raw


def boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``, in any case."""
    raw = raw_value(env, name)
    if raw is None:
        return default
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (1/0, true/false, yes/no, on/off)")


def parse_counts(name: str, raw: str, keys: Sequence[str], *, ge: int = 1,
                 le: int = 64) -> dict[str, int]:
    """``KEY=N,KEY=N`` (``CHOREO_REPLICAS=payments=2,inventory=2``), a whole number per key.

    The value is read as text first (so it can be handed on to another process as it
    is) and parsed here wherever it is used. A key not in ``keys``, a key given twice, or
    a count that is not a whole number in ``[ge, le]`` fails, naming the variable, the
    value and what was expected."""
    parsed: dict[str, int] = {}
    for part in raw.replace(" ", "").split(","):
        key, _, value = part.partition("=")
        if key not in keys or key in parsed or not value:
            raise ConfigError(f"{name}={raw!r}: expected KEY=N,... with each KEY once,"
                              f" one of {', '.join(keys)}")
        try:
            parsed[key] = integer({key: value}, key, 0, ge=ge, le=le)
        except ConfigError as error:
            raise ConfigError(f"{name}={raw!r}: {error}") from None
    return parsed


def _within(value: float, gt: float | None, ge: float | None, lt: float | None,
            le: float | None) -> bool:
    return ((gt is None or value > gt) and (ge is None or value >= ge)
            and (lt is None or value < lt) and (le is None or value <= le))


def _interval(gt: float | None, ge: float | None, lt: float | None, le: float | None) -> str:
    """The bounds in interval notation, ``(0, 300]``; empty when there are none."""
    if all(bound is None for bound in (gt, ge, lt, le)):
        return ""
    low = f"({gt:g}" if gt is not None else f"[{ge:g}" if ge is not None else "(-inf"
    high = f"{lt:g})" if lt is not None else f"{le:g}]" if le is not None else "inf)"
    return f"{low}, {high}"
