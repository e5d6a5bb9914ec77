#!/usr/bin/env bash
# The main job on a fresh machine: set-up, fetch the data with DVC, run the whole pipeline.
# Extra arguments go to `dvc repro` (e.g. ./run.sh validate, ./run.sh --force).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
if ! dvc pull data/raw/fer2013.zip.dvc data/raw/fer2013_ferplus_votes.csv.dvc; then
  echo "error: could not get data/raw/ (FER2013 archive, FER+ votes) from the DVC remote 'shared' ($(dvc remote list | head -1))." >&2
  echo "       Point the remote at your storage (dvc remote modify --local shared url <url>) or put the Kaggle" >&2
  echo "       FER2013 archive at data/raw/fer2013.zip and run 'dvc add data/raw/fer2013.zip' (README, Data)." >&2
  exit 1
fi
dvc pull --allow-missing >/dev/null 2>&1 || true   # reuse pipeline outputs others pushed, if any
dvc repro "$@"
dvc metrics show
