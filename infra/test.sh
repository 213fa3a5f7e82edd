#!/usr/bin/env bash
# Second command of the README: install what is missing, then lint, check schemas, test.
# The tests start their own embedded stack (separate ports and state) and stop it again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --disable-pip-version-check -q -e '.[test]'
python3 -m cli install
# promtool (Debian's prometheus package) checks the shipped alert rules; nothing is started.
if ! command -v promtool >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
# The console's browser test drives Debian's chromium with Playwright (the PyPI package
# only: it is pointed at /usr/bin/chromium, no browser is downloaded).
if ! command -v chromium >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
python3 -m ruff check .
python3 -m cli schemas check
python3 -m pytest "$@"
