"""DVC stage validate: Great Expectations checks; hard failures exit non-zero with one line (paths: dvc.yaml)."""

import json

from fer_pipeline.data import load_arrays
from fer_pipeline.stage import run_stage
from fer_pipeline.validation import run_validate


def main(params: dict, *, interim: str, ingest_report: str, metrics: str, details: str, html: str) -> None:
    images, manifest = load_arrays(interim)
    with open(ingest_report) as fh:
        ingest_summary = json.load(fh)
    s = run_validate(images, manifest, params["validate"], ingest_summary, metrics, details, html)
    soft = s["soft"]
    print(f"validation passed: {s['expectations']} expectations; soft findings: "
          f"{soft['duplicates_within_split']['count']} duplicates within splits, "
          f"{soft['duplicates_across_splits']['count']} val/test images also in train, "
          f"{soft['near_blank']['count']} near-blank; FER2013 label = FER+ most-voted on "
          + ", ".join(f"{k} {v['fer2013_agrees_with_most_voted']:.1%}" for k, v in s["ferplus"].items())
          + f" ({html})")


if __name__ == "__main__":
    run_stage("validate", main)
