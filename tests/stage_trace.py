"""Run one pipeline stage script and record what it touched (used by test_dvc_graph.py).

    python stage_trace.py <stage> <trace.json> [name=path ...]     (cwd: a repository root)

Records every loaded module whose file lies in the repository, every file in the repository the
stage opened for reading or writing (Python's audit hook sees ``open`` from Python code: builtins,
numpy, pandas CSV, zipfile, PIL; not files read by C++ libraries such as Arrow or TFLite), and the
params sections the stage asked for (every ``fer_pipeline.params.load(sections)`` call, recorded by
wrapping ``load`` here: the package keeps no test hook).
"""

import atexit
import json
import os
import runpy
import sys

stage, trace_file, stage_args = sys.argv[1], sys.argv[2], sys.argv[3:]
root = os.path.realpath(os.getcwd())
reads: set[str] = set()
writes: set[str] = set()
params_read: list[str] = []
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND


def _inside(path) -> str | None:
    try:
        p = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return None
    return os.path.relpath(p, root) if p.startswith(root + os.sep) else None


def hook(event, args):
    if event != "open":
        return
    path, mode, flags = args
    if isinstance(path, int):
        return
    rel = _inside(path)
    if rel is None or "__pycache__" in rel:
        return
    write = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
    if write:
        writes.add(rel)
    elif os.path.isfile(os.path.join(root, rel)):  # libraries probe for names that are not there
        reads.add(rel)


def dump():
    modules = set()
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        rel = _inside(f) if f else None
        if rel:
            modules.add(rel)
    with open(trace_file, "w") as fh:
        json.dump({"stage": stage, "modules": sorted(modules), "reads": sorted(reads), "writes": sorted(writes),
                   "params": sorted(set(params_read))}, fh)


sys.addaudithook(hook)
atexit.register(dump)
sys.path.insert(0, os.path.join(root, "pipeline"))
import fer_pipeline.params as _params  # noqa: E402  (the stage's own copy, through pipeline/fer_pipeline)

_load = _params.load


def _recording_load(sections=None, path="params.yaml"):
    params_read.extend(sections or [])
    return _load(sections, path)


_params.load = _recording_load
sys.argv = [f"pipeline/{stage}.py", *stage_args]
runpy.run_path(f"pipeline/{stage}.py", run_name="__main__")
