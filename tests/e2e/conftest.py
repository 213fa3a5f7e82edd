from __future__ import annotations

import pytest

from infra.settings import StackSettings
from infra.shop import Shop


@pytest.fixture(scope="session")
def shop(running_services: StackSettings) -> Shop:
    return Shop(running_services)
