"""The benchmark record: one entry per benchmark run in ``benchmarks/records.yaml`` (its command,
date, machine, commit, what ran beside it, and its tables), appended by each benchmark run with
``--record BESIDE``, which then rewrites ``benchmarks/README.md`` (``render.py``): the latest run of
each benchmark is the page, earlier runs stay in the record. Imports nothing heavy.

A run's results are tables: ``{"tables": [{"title", "columns", "rows"}], "notes": [...]}``.
"""

from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "benchmarks" / "records.yaml"


def add_argument(ap) -> None:
    """``--record BESIDE``: append this run to the record, saying what ran beside it (``quiet``: nothing)."""
    ap.add_argument("--record", metavar="BESIDE",
                    help="append this run to benchmarks/records.yaml; BESIDE says what else ran on the "
                         "machine (quiet: nothing); benchmarks/README.md is rewritten from it")
    ap.add_argument("--note", action="append", default=[],
                    help="a line the record keeps under the run's tables (e.g. where a model came from)")


def table(title: str, columns: list[str], rows: list[list]) -> dict:
    return {"title": title, "columns": list(columns), "rows": [list(r) for r in rows]}


def machine() -> str:
    """The CPU model (``lscpu``'s "Model name") and its core count, as MLflow's run tags name them."""
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                     model)
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {os.cpu_count()} cores"


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks/*.py")
    return git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if dirty else "")


def command_line(argv: list[str] | None = None) -> str:
    """This run's command as a person would type it from the repository root (``--record`` and
    ``--note`` left out)."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    rel = script.relative_to(REPO) if script.is_relative_to(REPO) else Path(argv[0])
    rest, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("--record", "--note"):
            skip = True
            continue
        if a.startswith(("--record=", "--note=")):
            continue
        rest.append(a)
    return " ".join(["python", str(rel), *map(shlex.quote, rest)])


def load(path: Path = RECORDS) -> list[dict]:
    return (yaml.safe_load(path.read_text()) or []) if path.exists() else []


def record(args, benchmark: str, tables: list[dict], notes: list[str] | None = None,
           path: Path = RECORDS) -> dict | None:
    """Append this run to the record when ``--record`` was given (atomically); the entry."""
    if not getattr(args, "record", None):
        return None
    notes = [*(notes or []), *(getattr(args, "note", None) or [])]
    entry = {"benchmark": benchmark, "command": command_line(), "date": datetime.date.today().isoformat(),
             "machine": machine(), "commit": commit(), "beside": args.record,
             "results": {"tables": tables, **({"notes": notes} if notes else {})}}
    rows = load(path) + [entry]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".records.", suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        fh.write(HEADER + yaml.safe_dump(rows, sort_keys=False, width=120, allow_unicode=True))
    os.replace(tmp, path)
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    if path == RECORDS:   # the page follows the record (a test fails when it does not)
        import render

        render.main([])
        print(f"recorded in {shown}")
    return entry


HEADER = """# Every recorded benchmark run, oldest first, appended by `python benchmarks/<name>.py ... --record BESIDE`.
# `python benchmarks/render.py` writes benchmarks/README.md from it (the latest run of each benchmark).
"""
