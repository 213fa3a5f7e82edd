from __future__ import annotations

import pytest

from choreo.stack.settings import StackSettings
from choreo.testkit.shop import Shop


@pytest.fixture(scope="session")
def shop(running_services: StackSettings) -> Shop:
    return Shop(running_services)
