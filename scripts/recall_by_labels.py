"""Which emotions each model misses: per-class recall on PrivateTest against FER2013's labels and
against the FER+ most-voted label, from the test predictions each run committed.

    python scripts/recall_by_labels.py NAME=REV [NAME=REV ...]

REV is any git revision or DVC experiment ref whose committed test predictions
(``actual,predicted,ferplus``: the evaluate stage's, wherever that revision's dvc.yaml put them)
are the run's; prints a Markdown table.
"""

import csv
import io
import sys
from pathlib import Path

from fer_pipeline.labels import LABELS
from fer_pipeline.workflow import resolve_revision, stored_predictions_at


def recalls(text: str, column: str) -> dict[str, float]:
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r[column]]
    return {k: sum(r["predicted"] == k for r in rows if r[column] == k) / max(1, sum(r[column] == k for r in rows))
            for k in LABELS}


def main() -> None:
    runs = [a.split("=", 1) for a in sys.argv[1:]]
    if not runs:
        sys.exit(__doc__)
    tables = {}
    for name, rev in runs:
        text = stored_predictions_at(Path("."), resolve_revision(Path("."), rev))["test"]
        tables[name] = {"FER2013": recalls(text, "actual"), "FER+": recalls(text, "ferplus")}
    print("| emotion | " + " | ".join(f"{n}: FER2013 / FER+" for n, _ in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for k in LABELS:
        print(f"| {k} | " + " | ".join(f"{100 * tables[n]['FER2013'][k]:.0f}% / {100 * tables[n]['FER+'][k]:.0f}%"
                                       for n, _ in runs) + " |")


if __name__ == "__main__":
    main()
