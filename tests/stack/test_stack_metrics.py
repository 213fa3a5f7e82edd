"""The supervisor's connector gauges follow what Connect's REST API says, and fall to 0
when Connect does not answer."""

from __future__ import annotations

from choreo.stack.metrics import CONNECTOR_RUNNING, TASK_RUNNING, publish_connector_states


def running(name: str, *task_states: str, state: str = "RUNNING") -> dict[str, object]:
    return {"name": name, "connector": {"state": state},
            "tasks": [{"id": i, "state": s} for i, s in enumerate(task_states)]}


def value(gauge, **labels: str) -> float:  # noqa: ANN001
    return gauge.labels(**labels)._value.get()


def test_states_become_gauges_and_a_silent_connect_reads_as_down() -> None:
    publish_connector_states({"a-outbox": running("a-outbox", "RUNNING"),
                              "b-outbox": running("b-outbox", "FAILED", state="RUNNING")})
    assert value(CONNECTOR_RUNNING, connector="a-outbox") == 1
    assert value(TASK_RUNNING, connector="a-outbox", task="0") == 1
    assert value(TASK_RUNNING, connector="b-outbox", task="0") == 0

    publish_connector_states(None)

    assert value(CONNECTOR_RUNNING, connector="a-outbox") == 0
    assert value(TASK_RUNNING, connector="a-outbox", task="0") == 0
