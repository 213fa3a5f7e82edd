"""``python -m choreo.chaos``: the same run as ``choreo chaos``, without the rest of the CLI."""

from __future__ import annotations

import argparse
import os
import sys

from choreo.chaos.command import add_arguments, cmd_chaos
from choreo.stack.errors import ConfigError, StackError
from choreo.stack.settings import StackSettings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m choreo.chaos", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args()
    try:
        return cmd_chaos(args, StackSettings.from_env(os.environ))
    except (ConfigError, StackError) as error:
        print(f"chaos: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
