#!/usr/bin/env bash
# The test suite on a fresh machine: set-up, lint (ruff), then pytest (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
exec python -m pytest "$@"
