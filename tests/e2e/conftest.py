from __future__ import annotations

import pytest

from stack.settings import StackSettings
from testkit.shop import Shop


@pytest.fixture(scope="session")
def shop(running_services: StackSettings) -> Shop:
    return Shop(running_services)
