from __future__ import annotations

import pytest

from infra.settings import StackSettings
from tests.e2e.shop import Shop


@pytest.fixture(scope="session")
def shop(running_services: StackSettings) -> Shop:
    return Shop(running_services)
