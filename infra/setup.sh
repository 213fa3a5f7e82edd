#!/usr/bin/env bash
# First command of the README: install what is missing, start everything, place an order.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/venv.sh
python -m choreo.cli up
python -m choreo.cli status
python -m choreo.cli order --sku mug-white --quantity 2
echo "choreo is installed in $VIRTUAL_ENV: '. .venv/bin/activate' puts it on your PATH"
