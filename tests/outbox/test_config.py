"""The shared ``CHOREO_*`` parser: each reader's default, a valid value, and a bad value
raising the one ConfigError with the variable and the value in its message."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from choreo.outbox import config
from choreo.outbox.errors import ConfigError
from choreo.stack.errors import ConfigError as StackConfigError
from choreo.stack.settings import StackSettings

NAME = "CHOREO_SOMETHING"
Reader = Callable[[Mapping[str, str]], Any]

READERS: dict[str, tuple[Reader, Any, list[tuple[str, Any]], list[str]]] = {
    # reader, its default, (raw, parsed) pairs, bad raws
    "text": (lambda env: config.text(env, NAME, "fallback"), "fallback",
             [("value", "value"), ("  padded ", "padded")], []),
    "integer": (lambda env: config.integer(env, NAME, 5, ge=1, le=1000), 5,
                [("1", 1), (" 1000 ", 1000)], ["0", "1001", "2.5", "five", "nan"]),
    "integer unbounded": (lambda env: config.integer(env, NAME, -3), -3,
                          [("-7", -7), ("0", 0)], ["1e3", "many"]),
    "number": (lambda env: config.number(env, NAME, 5.0, gt=0, le=300), 5.0,
               [("0.5", 0.5), ("300", 300.0)], ["0", "-1", "300.5", "soon", "nan", "inf"]),
    "number unbounded": (lambda env: config.number(env, NAME, 1.5), 1.5,
                         [("-2", -2.0), ("1e3", 1000.0)], ["-inf", "x"]),
    "port": (lambda env: config.port(env, NAME, 18090), 18090,
             [("1024", 1024), ("65535", 65535)], ["80", "65536", "http", "18090.0"]),
    "url": (lambda env: config.url(env, NAME, "http://127.0.0.1:1"), "http://127.0.0.1:1",
            [("https://psp.example:8443", "https://psp.example:8443")],
            ["psp:8090", "ftp://psp.example", "http://"]),
    "redis url": (lambda env: config.url(env, NAME, "", schemes=("redis", "rediss", "unix")),
                  "", [("redis://redis:6379/0", "redis://redis:6379/0"),
                       ("unix:///run/redis.sock", "unix:///run/redis.sock")],
                  ["http://redis:6379", "redis:6379"]),
    "boolean": (lambda env: config.boolean(env, NAME, False), False,
                [("1", True), ("Yes", True), ("on", True), ("false", False), ("0", False)],
                ["maybe", "2"]),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("env", [{}, {NAME: ""}, {NAME: "   "}])
def test_unset_or_blank_gives_the_default(reader: str, env: dict[str, str]) -> None:
    read, default, _, _ = READERS[reader]
    assert read(env) == default


@pytest.mark.parametrize(("reader", "raw", "parsed"), [
    (reader, raw, parsed) for reader, (_, _, valid, _) in READERS.items()
    for raw, parsed in valid])
def test_a_valid_value_is_parsed(reader: str, raw: str, parsed: Any) -> None:
    value = READERS[reader][0]({NAME: raw})
    assert value == parsed and type(value) is type(parsed)


@pytest.mark.parametrize(("reader", "raw"), [
    (reader, raw) for reader, (_, _, _, bad) in READERS.items() for raw in bad])
def test_a_bad_value_names_the_variable_and_the_value(reader: str, raw: str) -> None:
    with pytest.raises(ConfigError) as raised:
        READERS[reader][0]({NAME: raw})
    assert f"{NAME}={raw.strip()!r}" in str(raised.value)


@pytest.mark.parametrize(("read", "message"), [
    (lambda env: config.integer(env, NAME, 5, ge=1, le=1000),
     f"{NAME}='0' is not a whole number in [1, 1000]"),
    (lambda env: config.number(env, NAME, 5.0, gt=0, le=300), f"{NAME}='0' is outside (0, 300]"),
    (lambda env: config.number(env, NAME, 5.0, ge=0), f"{NAME}='-1' is outside [0, inf)"),
    (lambda env: config.port(env, NAME, 18090), f"{NAME}='0' is not a port in 1024..65535"),
])
def test_the_bounds_are_in_the_message(read: Reader, message: str) -> None:
    raw = message.split("'")[1]
    with pytest.raises(ConfigError) as raised:
        read({NAME: raw})
    assert str(raised.value) == message


def test_required_and_dsn_say_what_is_missing_without_echoing_a_dsn() -> None:
    dsn = "postgresql://postgres@127.0.0.1:15432/psp"
    assert config.required({NAME: f" {dsn} "}, NAME, "a DSN") == dsn
    assert config.dsn({NAME: dsn}, NAME, "a DSN") == dsn
    assert config.dsn({NAME: "host=db dbname=psp"}, NAME, "a DSN") == "host=db dbname=psp"
    for read in (config.required, config.dsn):
        with pytest.raises(ConfigError, match=rf"{NAME} is required \(the ledger\)"):
            read({NAME: " "}, NAME, "the ledger")
    assert config.dsn({NAME: " "}, NAME, "a DSN", required=False) == ""
    with pytest.raises(ConfigError, match=f"{NAME} is not a valid DSN"):
        config.dsn({NAME: "nonsense"}, NAME, "a DSN", required=False)
    with pytest.raises(ConfigError, match=f"{NAME} is not a valid DSN") as raised:
        config.dsn({NAME: "password=s3cret nonsense"}, NAME, "a DSN")
    assert "s3cret" not in str(raised.value)


def test_check_port_is_the_port_readers_rule_for_a_value_already_built() -> None:
    assert config.check_port(NAME, 18080) == 18080
    with pytest.raises(ConfigError, match=f"{NAME}='80' is not a port"):
        config.check_port(NAME, 80)


def test_one_config_error_for_the_whole_project() -> None:
    assert StackConfigError is ConfigError


def test_the_default_ports_are_the_stacks_and_distinct() -> None:
    """The infrastructure's table and the manifest's services together: one variable
    each, no port twice, each a port the readers accept."""
    ports = StackSettings.port_variables()
    assert len(set(ports.values())) == len(ports)
    assert all(config.PORT_RANGE[0] <= port <= config.PORT_RANGE[1] for port in ports.values())
    assert {f"CHOREO_{field.name.upper()}" for field in fields(StackSettings)
            if field.name.endswith("_port")} <= set(ports)


@pytest.mark.parametrize(("raw", "parsed"), [
    ("payments=2", {"payments": 2}),
    (" payments = 2 , orders-worker=3 ", {"payments": 2, "orders-worker": 3}),
])
def test_counts_are_parsed_per_key(raw: str, parsed: dict[str, int]) -> None:
    assert config.parse_counts(NAME, raw, ("payments", "orders-worker"), le=8) == parsed


@pytest.mark.parametrize("raw", ["payments", "payments=", "psp=2", "payments=0", "payments=9",
                                 "payments=2.5", "payments=2,payments=3", ","])
def test_bad_counts_name_the_variable_and_the_value(raw: str) -> None:
    with pytest.raises(ConfigError, match=f"^{NAME}={raw!r}: "):
        config.parse_counts(NAME, raw, ("payments", "orders-worker"), le=8)


def test_a_value_may_come_from_a_file_as_docker_and_kubernetes_secrets_do(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    assert config.text({f"{NAME}_FILE": str(secret)}, NAME) == "s3cret"
    (tmp_path / "n").write_text("12")
    assert config.integer({f"{NAME}_FILE": str(tmp_path / "n")}, NAME, 5) == 12
    with pytest.raises(ConfigError, match=f"{NAME} and {NAME}_FILE are both set"):
        config.text({NAME: "inline", f"{NAME}_FILE": str(secret)}, NAME)
    with pytest.raises(ConfigError, match=f"{NAME}_FILE='/nonexistent/x' cannot be read"):
        config.text({f"{NAME}_FILE": "/nonexistent/x"}, NAME)
