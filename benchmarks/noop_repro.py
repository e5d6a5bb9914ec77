"""Time of a no-op `dvc repro` (everything up to date): the cost of asking "did anything change?".

    python benchmarks/noop_repro.py [--repeats 5]

Run in a checkout whose pipeline is up to date (after `./run.sh` or `dvc pull`). Goal: under 5 s.
"""

import argparse
import statistics
import subprocess
import sys
import time

from records import add_argument, record, table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    add_argument(ap)
    a = ap.parse_args()
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], capture_output=True, text=True)
    if "up to date" not in status.stdout:
        sys.exit(f"error: the pipeline is not up to date, so `dvc repro` would run stages:\n{status.stdout}")
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dvc", "repro"], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    print(f"no-op dvc repro: median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}, "
          f"{a.repeats} runs); goal < 5 s")
    record(a, "noop_repro", [table("No-op dvc repro (s), goal < 5 s", ["median", "min", "max", "runs"],
                                   [[round(statistics.median(times), 2), round(min(times), 2), round(max(times), 2),
                                     a.repeats]])])


if __name__ == "__main__":
    main()
