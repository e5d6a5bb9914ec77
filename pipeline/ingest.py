"""DVC stage ingest: raw archive (params: ingest.input) and FER+ votes (ingest.votes) -> one image
array + manifest with the votes joined, and a report (paths: dvc.yaml)."""

from fer_pipeline.data import run_ingest
from fer_pipeline.stage import run_stage


def main(params: dict, *, interim: str, report: str) -> None:
    p = params["ingest"]
    s = run_ingest(p["input"], interim, report, max_per_class=p["max_per_class"], seed=p["seed"],
                   workers=p["workers"], votes=p["votes"])
    print(f"ingested {s['images']:,} images ({s['form']}): "
          + ", ".join(f"{k} {v['total']:,}" for k, v in s["counts"].items())
          + f"; skipped {s['skipped_total']}, converted {s['converted_total']}; FER+ votes for "
          + f"{s['ferplus']['with_votes']:,} ({s['ferplus']['without_votes']['count']} without)")


if __name__ == "__main__":
    run_stage("ingest", main)
