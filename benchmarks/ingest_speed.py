"""Ingest speed on the real archive: prints images/s and seconds (decode uses --workers processes).

    python benchmarks/ingest_speed.py [--archive data/raw/fer2013.zip] [--workers 2] [--repeat 3]
"""

import argparse
import time

from records import add_argument, record, table

from fer_pipeline.data import ingest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive", default="data/raw/fer2013.zip")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    add_argument(ap)
    a = ap.parse_args()
    times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        images, manifest, _ = ingest(a.archive, workers=a.workers, progress=False)
        times.append(time.perf_counter() - t)
    best = min(times)
    print(f"ingest {len(images):,} images from {a.archive} with {a.workers} workers: best of {a.repeat} "
          f"{best:.2f} s ({len(images) / best:,.0f} images/s); all runs: {', '.join(f'{t:.2f}' for t in times)} s")
    record(a, "ingest_speed", [table(f"Ingest of {a.archive} with {a.workers} workers",
                                     ["images", "best of runs (s)", "images/s", "all runs (s)"],
                                     [[len(images), round(best, 2), round(len(images) / best),
                                       ", ".join(f"{t:.2f}" for t in times)]])])


if __name__ == "__main__":
    main()
