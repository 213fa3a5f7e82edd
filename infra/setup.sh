#!/usr/bin/env bash
# First command of the README: install what is missing, start everything, place an order.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --disable-pip-version-check -q -e '.[test]'
python3 -m cli up
python3 -m cli status
python3 -m cli order --sku mug-white --quantity 2
