"""DVC stage validate: Great Expectations checks; hard failures exit non-zero with one line."""

import json

from fer_pipeline.cli import run_stage
from fer_pipeline.data import load_arrays
from fer_pipeline.validation import run_validate


def main(params: dict) -> None:
    images, manifest = load_arrays("data/interim")
    with open("reports/ingest.json") as fh:
        ingest_summary = json.load(fh)
    s = run_validate(images, manifest, params["validate"], ingest_summary, "reports/validation.json",
                     "reports/validation_details.json", "reports/validation.html")
    soft = s["soft"]
    print(f"validation passed: {s['expectations']} expectations; soft findings: "
          f"{soft['duplicates_within_split']['count']} duplicates within splits, "
          f"{soft['duplicates_across_splits']['count']} val/test images also in train, "
          f"{soft['near_blank']['count']} near-blank (reports/validation.html)")


if __name__ == "__main__":
    run_stage("validate", main)
