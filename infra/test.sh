#!/usr/bin/env bash
# Second command of the README: install what is missing, then lint, check schemas, test.
# The tests start their own embedded stack (separate ports and state) and stop it again.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/venv.sh
python -m choreo.cli install
# promtool (Debian's prometheus package) checks the shipped alert rules; nothing is started.
if ! command -v promtool >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
# Debian's kcat: a third-party Kafka client the tests point at the embedded broker.
if ! command -v kcat >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kcat
fi
# Debian's docker-compose (1.29) validates compose.yaml (`config -q`); no engine is needed.
if ! command -v docker-compose >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose
fi
# The console's browser test drives Debian's chromium with Playwright (the PyPI package
# only: it is pointed at /usr/bin/chromium, no browser is downloaded).
if ! command -v chromium >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
python -m ruff check .
python -m choreo.cli schemas check
python -m pytest "$@"
# The end-to-end and chaos suites and the relay's tests once more, with the polling relay
# in place of Debezium (CHOREO_RELAY=polling on the test stack; about three minutes more).
if [ "$#" -eq 0 ]; then
    CHOREO_TEST_RELAY=polling python -m pytest tests/e2e tests/chaos tests/outbox/test_poller.py
fi
