"""DVC stage ingest: raw archive (params: ingest.input) -> one image array + manifest, and a report
(paths: dvc.yaml)."""

from fer_pipeline.cli import run_stage
from fer_pipeline.data import run_ingest


def main(params: dict, *, interim: str, report: str) -> None:
    p = params["ingest"]
    s = run_ingest(p["input"], interim, report, max_per_class=p["max_per_class"], seed=p["seed"],
                   workers=p["workers"])
    print(f"ingested {s['images']:,} images ({s['form']}): "
          + ", ".join(f"{k} {v['total']:,}" for k, v in s["counts"].items())
          + f"; skipped {s['skipped_total']}, converted {s['converted_total']}")


if __name__ == "__main__":
    run_stage("ingest", main)
