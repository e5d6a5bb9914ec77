"""Time of the test suite: the README's test command (`./test.sh`), whole and as its fast tier.

    python benchmarks/suite_time.py [--tier all|fast] [--slowest 25]

Runs `./test.sh` with `--durations` (set-up and lint included, as a newcomer and CI run it) and reports
the wall time, pytest's pass/skip/fail counts and the slowest tests. Goals: the whole suite at most
12 min on a quiet 2-core machine of this kind, the fast tier (`-m "not slow"`) under 3 min.
"""

import argparse
import re
import subprocess
import sys
import time

from records import REPO, add_argument, record, table

GOALS = {"all": 12 * 60, "fast": 3 * 60}
DURATION = re.compile(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)")
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected)")


def parse(output: str, slowest: int) -> tuple[dict[str, int], list[tuple[float, str, str]]]:
    """pytest's final counts and its ``--durations`` rows (seconds, phase, test id)."""
    counts: dict[str, int] = {}
    last = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed).* in [\d.]+s", line)]
    for n, what in SUMMARY.findall(last[-1] if last else ""):
        counts[what.rstrip("s") if what.startswith("error") else what] = int(n)
    rows = [(float(m[1]), m[2], m[3]) for m in map(DURATION.match, output.splitlines()) if m]
    return counts, sorted(rows, reverse=True)[:slowest]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tier", choices=sorted(GOALS), default="all", help="fast: -m 'not slow' only")
    ap.add_argument("--slowest", type=int, default=25)
    add_argument(ap)
    a = ap.parse_args()
    cmd = ["./test.sh", "-q", f"--durations={a.slowest}"] + (["-m", "not slow"] if a.tier == "fast" else [])
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t
    counts, rows = parse(proc.stdout, a.slowest)
    goal = GOALS[a.tier]
    print(f"{' '.join(cmd)}: {wall / 60:.1f} min ({wall:.0f} s; goal {goal // 60} min), exit {proc.returncode}, "
          + ", ".join(f"{n} {w}" for w, n in counts.items()))
    for secs, phase, test in rows:
        print(f"  {secs:7.1f} s  {phase:8s} {test}")
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
    record(a, "suite_time" if a.tier == "all" else f"suite_time-{a.tier}", [
        table(f"./test.sh ({a.tier}; goal {goal // 60} min)", ["minutes", "exit", *counts],
              [[round(wall / 60, 1), proc.returncode, *counts.values()]]),
        table(f"The {len(rows)} slowest test phases (s)", ["seconds", "phase", "test"],
              [[round(s, 1), p, f"`{n}`"] for s, p, n in rows])])
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
