"""The benchmark page is written from the record: a run given --record appends its command, machine
and tables to benchmarks/records.yaml, and benchmarks/README.md is what benchmarks/render.py makes of it."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from conftest import REPO


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import records
    import render

    return SimpleNamespace(records=records, render=render)


def test_the_benchmark_page_is_current():
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/render.py"), "--check"], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr


def test_a_run_with_record_appends_to_the_record_and_the_page_follows(bench, tmp_path, monkeypatch):
    path = tmp_path / "records.yaml"
    monkeypatch.setattr(sys, "argv", [str(REPO / "benchmarks/noop_repro.py"), "--repeats", "3", "--record", "quiet",
                                      "--note", "N"])
    t = bench.records.table("No-op (s)", ["median", "runs"], [[0.85, 3]])
    assert bench.records.record(SimpleNamespace(record=None), "noop_repro", [t], path=path) is None
    assert not path.exists()                                   # no --record: nothing written
    bench.records.record(SimpleNamespace(record="quiet"), "noop_repro", [t], path=path)
    t2 = bench.records.table("No-op (s)", ["median", "runs"], [[0.91, 3]])
    bench.records.record(SimpleNamespace(record="a training", note=["another"]), "noop_repro", [t2], ["a note"],
                         path=path)
    rows = yaml.safe_load(path.read_text())
    assert [r["beside"] for r in rows] == ["quiet", "a training"]
    assert rows[0]["command"] == "python benchmarks/noop_repro.py --repeats 3" and rows[0]["machine"]
    text = bench.render.page(rows, bench.render.scripts_in(REPO / "benchmarks"))
    assert "| 0.91 | 3 |" in text and "| 0.85 | 3 |" not in text   # the latest run is the page
    assert "1 earlier run(s) of this benchmark are in [records.yaml](records.yaml)." in text
    assert "- a note\n- another" in text and "beside it: a training." in text
    assert "Time of a no-op `dvc repro`" in text                  # the script's docstring says what it measures


def test_the_suite_benchmark_reads_pytests_counts_and_slowest_tests(bench, monkeypatch):
    import suite_time

    out = """........s.
============================= slowest 3 durations ==============================
151.20s call     tests/test_team.py::test_team_server
0.50s setup    tests/test_faces.py::test_one
12.00s call     tests/test_cli.py::test_two
=========================== short test summary info ============================
SKIPPED [1] tests/test_data.py:10: no archive
============ 215 passed, 5 skipped, 1 deselected in 1412.20s (0:23:32) ============
"""
    quiet = "....\n1 failed, 250 passed, 271 warnings in 740.48s (0:12:20)\n"   # -q: no rule around it
    counts, rows = suite_time.parse(out, slowest=2)
    assert counts == {"passed": 215, "skipped": 5, "deselected": 1}
    assert suite_time.parse(quiet, slowest=2)[0] == {"failed": 1, "passed": 250}
    assert rows == [(151.2, "call", "tests/test_team.py::test_team_server"),
                    (12.0, "call", "tests/test_cli.py::test_two")]
