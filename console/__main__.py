"""``python -m choreo.console``: serve the web console on 127.0.0.1 until SIGTERM or SIGINT.

What ``choreo up`` starts (and the supervisor restarts); ``choreo console`` runs the same
in the foreground. Exit status 2 means bad settings, 1 that the port was unavailable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from choreo.console.app import serve
from choreo.outbox import logs
from choreo.stack.errors import ConfigError
from choreo.stack.settings import StackSettings

log = logging.getLogger("console")


def main() -> int:
    logs.configure("console")
    try:
        settings = StackSettings.from_env(os.environ)
    except ConfigError as error:
        log.error("invalid settings: %s", error)
        return 2
    try:
        asyncio.run(serve(settings, log.info))
    except OSError as error:
        log.error("console could not start on port %d: %s", settings.console_port, error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
