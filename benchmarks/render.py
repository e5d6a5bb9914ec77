"""Write benchmarks/README.md from the record (benchmarks/records.yaml): for each benchmark its latest
run, with the command, date, machine, commit and what ran beside it; earlier runs stay in the record.

    python benchmarks/render.py           # write the page
    python benchmarks/render.py --check   # exit 1 when the page is not what the record gives

Each section opens with the first paragraph of its script's docstring (what it measures).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from records import RECORDS, REPO, load

PAGE = REPO / "benchmarks" / "README.md"
MACHINES = REPO / "benchmarks" / "machines.yaml"
# The page's order; a benchmark script not listed here comes after these, by name.
ORDER = ["photo_roundtrip", "inference_speed", "serve_load", "video_speed", "face_geometry", "train_speed",
         "train_speed-feeds", "augment_speed", "ingest_speed", "noop_repro", "suite_time", "suite_time-fast"]
INTRO = """# Benchmarks

Every speed and accuracy figure the project quotes, with the command that measures it. This page is
written by `python benchmarks/render.py` from [records.yaml](records.yaml), where each benchmark run
that was given `--record BESIDE` appended its command, date, machine, commit, what ran beside it and
its tables; the page shows the latest run of each benchmark, the record keeps every run
(`tests/test_benchmark_records.py` fails when this page is stale). Machines of this 2-core kind differ 2-3x,
and a second job on the machine slows a run: a time holds only beside a baseline taken in the same
run, so compare ratios within one table.
"""


def purpose(script: Path) -> str:
    """The first paragraph of a benchmark script's docstring."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


def cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v).replace("|", "\\|")


def markdown_table(t: dict) -> list[str]:
    lines = [f"**{t['title']}**", "", "| " + " | ".join(t["columns"]) + " |",
             "|" + "---|" * len(t["columns"])]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in t["rows"]]
    return lines + [""]


def machines_table(machines: list[dict]) -> list[str]:
    """The machines that experiments and older notes name by letter (``benchmarks/machines.yaml``)."""
    if not machines:
        return []
    return ["", "## Machines named by letter", "",
            "Experiments ([docs/experiments.md](../docs/experiments.md)) name their machine by letter "
            "([machines.yaml](machines.yaml)); a benchmark record names its CPU.", "",
            "| machine | first seen | CPU | default training (images/s) |", "|---|---|---|---|",
            *(f"| {m['letter']} | {m['first_seen']} | {m['cpu']} | {m['default_training_images_per_s']} |"
              for m in machines)]


def page(records: list[dict], scripts: dict[str, Path], machines: list[dict] | None = None) -> str:
    latest, counts = {}, {}
    for r in records:
        latest[r["benchmark"]] = r
        counts[r["benchmark"]] = counts.get(r["benchmark"], 0) + 1
    names = [n for n in ORDER if n in latest] + sorted(n for n in latest if n not in ORDER)
    out = [INTRO, "| benchmark | latest run | machine | beside it |", "|---|---|---|---|"]
    out += [f"| [{n}](#{n.replace('_', '-')}) | {latest[n]['date']} | {latest[n]['machine']} | {latest[n]['beside']} |"
            for n in names]
    missing = sorted(n for n in scripts if n not in latest and n not in ("records", "render", "revision"))
    if missing:
        out += ["", "Not recorded yet: " + ", ".join(f"`benchmarks/{n}.py`" for n in missing) + "."]
    for n in names:
        r = latest[n]
        out += ["", f"## {n.replace('_', '-')}", ""]
        script = scripts.get(n) or scripts.get(n.split("-")[0])   # train_speed-feeds: a mode of train_speed
        if script:
            out += [purpose(script), ""]
        out += [f"`{r['command']}`", "",
                f"{r['date']}, {r['machine']}, commit {r['commit']}; beside it: {r['beside']}.", ""]
        for t in r["results"]["tables"]:
            out += markdown_table(t)
        out += [f"- {note}" for note in r["results"].get("notes", [])]
        if r["results"].get("notes"):
            out.append("")
        if counts[n] > 1:
            out.append(f"{counts[n] - 1} earlier run(s) of this benchmark are in [records.yaml](records.yaml).")
            out.append("")
    out += machines_table(machines or [])
    return "\n".join(out).rstrip() + "\n"


def scripts_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.py"))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="exit 1 when the page is stale")
    a = ap.parse_args(argv)
    text = page(load(RECORDS), scripts_in(PAGE.parent), load(MACHINES))
    if a.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            sys.exit("benchmarks/README.md is stale: run `python benchmarks/render.py`")
        return
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
