"""``--json``: one JSON document on stdout instead of a table, for scripts.

The tables are for people and change as the commands learn more; the JSON keeps its
keys (new ones may be added), says units in its names (``_bytes``, ``_percent``, ``_s``)
and carries no colour or padding. Errors still go to stderr as one line, and the exit
status means the same either way (``choreo --help``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="one JSON document on stdout instead of the table")


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, default=str))
