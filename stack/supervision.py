"""What the supervisor tells everyone else: its phase and, per process, restarts and exits.

The supervisor is a process of its own, so ``choreo up`` (waiting for it to start the
stack) and ``choreo status`` learn what it did from one JSON file it rewrites after every
change. The file is replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from choreo.stack.settings import StackSettings

SUPERVISOR = "supervisor"
"""Its name in the pid registry, beside the processes it watches."""


@dataclass
class ProcessRecord:
    restarts: int = 0
    last_exit: str | None = None
    """``signal SIGKILL``, ``code 1``, ``unknown`` (not our child) or why a restart failed."""
    gave_up: bool = False
    requested_restarts: int = 0
    """Restarts ``choreo restart`` asked for: drained stops, not counted as exits."""


@dataclass
class SupervisorState:
    phase: str = "starting"
    """``starting`` the stack, ``supervising`` it, ``failed`` to start it, or ``stopped``."""
    error: str | None = None
    config_error: bool = False
    """The start failed for a setting (a port in use, say): ``choreo up`` exits 2, not 3."""
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    shape: dict[str, str] = field(default_factory=dict)
    """The settings that decide which processes run (``shape_of``), as it was started."""

    def save(self, path: Path) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=1))
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> SupervisorState | None:
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        processes = {name: ProcessRecord(**record) for name, record in data["processes"].items()}
        return cls(data["phase"], data["error"], data.get("config_error", False), processes,
                   data.get("shape", {}))


def state_file(settings: StackSettings) -> Path:
    return settings.state_dir / "supervisor.json"


SHAPE_VARIABLES = ("CHOREO_RELAY", "CHOREO_LINKS", "CHOREO_REPLICAS", "CHOREO_BROKERS",
                   "CHOREO_EMBEDDED_KAFKA_SECURITY")
"""What a running supervisor cannot change: which processes it starts."""


def shape_of(settings: StackSettings) -> dict[str, str]:
    env = settings_env(settings)
    return {name: env[name] for name in SHAPE_VARIABLES}


def shape_changes(running: SupervisorState, settings: StackSettings) -> list[str]:
    """``NAME=running -> asked`` for each setting that differs between a running
    supervisor and these settings: ``up`` would otherwise leave it unchanged, silently
    (the old behaviour for a changed ``CHOREO_RELAY``)."""
    asked = shape_of(settings)
    return [f"{name}={running.shape.get(name, '')!r} -> {asked[name]!r}"
            for name in SHAPE_VARIABLES
            if running.shape and running.shape.get(name) != asked[name]]


def settings_env(settings: StackSettings) -> dict[str, str]:
    """The ``CHOREO_*`` variables that make ``StackSettings.from_env`` give these settings
    back in the supervisor's own process (tests pass settings, not an environment)."""
    env = {"CHOREO_STATE_DIR": str(settings.state_dir)}
    if settings.artifact_cache is not None:
        env["CHOREO_ARTIFACT_CACHE"] = str(settings.artifact_cache)
    for item in fields(settings):
        # A secret (``repr=False``) is not copied into every child's environment: the
        # children inherit the caller's, where it is, or the ``_FILE`` that names it.
        if item.repr and item.name not in ("state_dir", "artifact_cache", "service_ports"):
            env[f"CHOREO_{item.name.upper()}"] = str(getattr(settings, item.name))
    env.update({variable: str(port) for variable, port in settings.own_ports().items()})
    return env
