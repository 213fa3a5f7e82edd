"""compose.yaml as the engine reads it: services with their merged keys, and the command
and environment a container of each is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.wheel import REPO

COMPOSE = REPO / "compose.yaml"
CHOREO_IMAGE = "choreo:"


def services(path: Path = COMPOSE) -> dict[str, dict[str, Any]]:
    """PyYAML resolves the anchors and merge keys as compose does."""
    return yaml.safe_load(path.read_text())["services"]


def secret_files(path: Path = COMPOSE) -> dict[str, str]:
    """Each declared secret's file, relative to the checkout."""
    declared = yaml.safe_load(path.read_text())["secrets"]
    return {name: str(Path(entry["file"])) for name, entry in declared.items()}


def unescaped(value: str) -> str:
    """Compose turns ``$$`` into ``$`` (no ``${...}`` interpolation is used in the file)."""
    return value.replace("$$", "$")


def argv(service: dict[str, Any]) -> list[str]:
    """The process a container runs: entrypoint then command, as compose passes them."""
    entrypoint = service.get("entrypoint") or []
    command = service.get("command") or []
    return [unescaped(str(part)) for part in [*entrypoint, *command]]


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {name: unescaped(str(value)) for name, value in
            (service.get("environment") or {}).items()}


def is_choreo(service: dict[str, Any]) -> bool:
    return str(service.get("image", "")).startswith(CHOREO_IMAGE)


def replicas(service: dict[str, Any]) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))
