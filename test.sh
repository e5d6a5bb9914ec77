#!/usr/bin/env bash
# The test suite on a fresh machine: set-up, lint (ruff), then pytest (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
# The tests spread over the machine's cores (at most 4 processes), one test file per process at a
# time (a module's fixtures are built once); `./test.sh -n 0` runs them in this process.
exec python -m pytest -n auto --maxprocesses=4 --dist loadfile "$@"
