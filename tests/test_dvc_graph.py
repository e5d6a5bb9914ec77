"""dvc.yaml tells the truth: every stage declares every project file it loads and every file it
reads, every file it writes, and exactly the params it reads; every path its cmd passes is one of
its deps or outs. Each stage runs for real, with the arguments of its dvc.yaml cmd, on a tiny
synthetic data set under a trace (tests/stage_trace.py), and the trace is compared with dvc.yaml."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from fer_pipeline.stage import cmd_paths, declared_paths

from conftest import REPO

pytestmark = pytest.mark.slow
STAGES = ["ingest", "validate", "preprocess", "train", "evaluate", "export"]
TINY = {
    "ingest.max_per_class": 0,
    "ingest.workers": 1,
    "validate.ferplus_max_without_votes": 0.05,
    "validate.split_rows": {"train": [21, 21], "val": [21, 21], "test": [21, 21]},
    "validate.class_share_range": [0.1, 0.2],
    "validate.pixel_mean_range": [60, 200],
    "validate.pixel_std_range": [10, 120],
    "train.epochs": 1,
    "train.batch_size": 16,
    "train.model.bn_vgg": {"widths": [8, 16], "convs_per_stage": 1, "dropout": 0.1, "dense": 16},
    "evaluate.grid_size": 4,
    "export.max_drop_points": 100.0,
}
# Read by every stage but tracked by DVC otherwise: params.yaml through `params:`.
NOT_FILE_DEPS = {"params.yaml"}
# The photos stage is a foreach over evaluate.photo_sets: traced with this one entry.
PHOTO_ITEM = {"name": "tiny", "dir": "photos/tiny"}


def _set(params: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = params
    for p in parents:
        node = node[p]
    node[leaf] = value


def _paths(entries) -> list[str]:
    out = []
    for e in entries or []:
        out.extend(e.keys() if isinstance(e, dict) else [e])
    return [str(p) for p in out]


def interpolate(text: str, params: dict) -> str:
    """``${a.b}`` from params; ``${item.x}`` from PHOTO_ITEM (the foreach stage's entry)."""
    def value(m):
        key = m.group(1)
        if key.startswith("item."):
            return str(PHOTO_ITEM[key[len("item."):]])
        node = params
        for part in key.split("."):
            node = node[part]
        return str(node)

    return re.sub(r"\$\{([^}]+)\}", value, text)


def stage_spec(dvc: dict, params: dict, stage: str) -> dict:
    """deps, outs (incl. metrics and plots) and params of a stage, ``${...}`` resolved."""
    s = dvc["stages"][stage]
    s = s.get("do", s)  # a foreach stage

    def resolve(path: str) -> str:
        return os.path.normpath(interpolate(path, params))

    return {"deps": [resolve(p) for p in _paths(s.get("deps"))],
            "outs": [resolve(p) for p in _paths(s.get("outs")) + _paths(s.get("metrics")) + _paths(s.get("plots"))],
            "params": [str(p) for p in s.get("params", [])],
            "args": {k: os.path.normpath(v) for k, v in cmd_paths(interpolate(s["cmd"], params)).items()}}


def _written(path: str) -> str:
    """The file a write ends up in: fsutil.atomic_path writes ``.<name>.<random>.tmp<suffix>`` and
    renames it onto ``<name>`` in the same folder."""
    folder, base = os.path.split(path)
    if base.startswith(".") and ".tmp" in base:
        base = base[1:].rsplit(".tmp", 1)[0].rsplit(".", 1)[0]
    return os.path.join(folder, base)


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def problems(dvc: dict, params: dict, traces: dict[str, dict]) -> list[str]:
    """Every disagreement between dvc.yaml and what the stages did, one line each."""
    found = []
    for stage, trace in traces.items():
        spec = stage_spec(dvc, params, stage)
        deps, outs = spec["deps"], spec["outs"]
        for module in trace["modules"]:
            if not _under(module, deps):
                found.append(f"{stage}: loads {module}, which its deps do not name")
        for read in trace["reads"]:
            if read.endswith(".py") or read in NOT_FILE_DEPS or _under(read, outs):
                continue
            if not _under(read, deps):
                found.append(f"{stage}: reads {read}, which its deps do not name")
        for dep in deps:
            if dep.endswith(".py") and dep not in trace["modules"]:
                found.append(f"{stage}: names {dep} in deps but never loads it")
        for written in sorted({_written(w) for w in trace["writes"]}):
            if not _under(written, outs):
                found.append(f"{stage}: writes {written}, which its outs do not name")
        for name, path in spec["args"].items():
            # a path the cmd passes is a dep or an out, or the folder that holds some of them
            if not (_under(path, deps + outs) or any(_under(p, [path]) for p in deps + outs)):
                found.append(f"{stage}: its cmd passes {name}={path}, which neither its deps nor its outs name")
        if sorted(spec["params"]) != sorted(trace["params"]):
            found.append(f"{stage}: reads params {sorted(trace['params'])}, dvc.yaml declares {sorted(spec['params'])}")
    return found


@pytest.fixture(scope="module")
def traced(fer_fixture, tmp_path_factory):
    """Run every stage once, in order, in a copy of the repository, each under the trace."""
    work = tmp_path_factory.mktemp("graph")
    repo = work / "repo"
    shutil.copytree(REPO / "pipeline", repo / "pipeline", symlinks=True)
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    (repo / "data/raw").mkdir(parents=True)
    shutil.copy(fer_fixture.zip, repo / "data/raw/fer2013.zip")
    shutil.copy(fer_fixture.votes_csv, repo / "data/raw/fer2013_ferplus_votes.csv")
    (repo / "reports").mkdir()
    shutil.copy(REPO / "reports/baselines.yaml", repo / "reports/baselines.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in TINY.items():
        _set(params, key, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    traces = {}
    for stage in STAGES:
        out = work / f"{stage}.json"
        args = [f"{k}={v}" for k, v in declared_paths(stage, REPO / "dvc.yaml").items()]
        r = subprocess.run([sys.executable, str(REPO / "tests/stage_trace.py"), stage, str(out), *args], cwd=repo,
                           env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"stage {stage} failed:\n{r.stderr[-3000:]}"
        traces[stage] = json.loads(out.read_text())
    # The photos stage, for one photo set inside the repository (so that its reads are seen).
    from helpers import astronaut_gray, write_png

    photos = repo / PHOTO_ITEM["dir"]
    for folder, img in (("happy", astronaut_gray()), ("sad", astronaut_gray()[::-1])):
        (photos / folder).mkdir(parents=True)
        write_png(photos / folder / "face.png", img)
    dvc_spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    args = [f"{k}={v}" for k, v in cmd_paths(interpolate(dvc_spec["stages"]["photos"]["do"]["cmd"], params)).items()]
    out = work / "photos.json"
    r = subprocess.run([sys.executable, str(REPO / "tests/stage_trace.py"), "photos", str(out), *args], cwd=repo,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"stage photos failed:\n{r.stderr[-3000:]}"
    traces["photos"] = json.loads(out.read_text())
    return {"traces": traces, "params": params, "dvc": yaml.safe_load((REPO / "dvc.yaml").read_text())}


def test_every_stage_declares_what_it_loads_reads_and_its_params(traced):
    found = problems(traced["dvc"], traced["params"], traced["traces"])
    assert not found, "dvc.yaml disagrees with what the stages did:\n" + "\n".join(found)


def test_the_trace_sees_the_core_of_every_stage(traced):
    # Guards the guard: the trace must really see modules, files and params.
    t = traced["traces"]
    assert "src/fer_pipeline/training.py" in t["train"]["modules"]
    assert "src/fer_pipeline/params.py" in t["ingest"]["modules"]
    assert any(r.startswith("data/processed/") for r in t["train"]["reads"])
    assert "reports/preprocess/summary.json" in t["train"]["reads"]
    assert "reports/validate/metrics.json" in t["evaluate"]["reads"]
    assert t["train"]["params"] == ["preprocess.augment", "tracking", "train"]
    assert "src/fer_pipeline/photo_eval.py" in t["photos"]["modules"]
    assert any(r.startswith("photos/tiny/happy/") for r in t["photos"]["reads"])


@pytest.mark.parametrize("stage,dep,expect", [
    ("train", "src/fer_pipeline/plots.py", "train: loads src/fer_pipeline/plots.py"),
    ("evaluate", "reports/preprocess", "evaluate: reads reports/preprocess/summary.json"),
    ("export", "src/fer_pipeline/predictor.py", "export: loads src/fer_pipeline/predictor.py"),
    ("evaluate", "src/fer_pipeline/templates/model_card.md.j2",
     "evaluate: reads src/fer_pipeline/templates/model_card.md.j2"),
])
def test_removing_one_dep_is_caught_by_name(traced, stage, dep, expect):
    dvc = copy.deepcopy(traced["dvc"])
    deps = dvc["stages"][stage]["deps"]
    assert dep in deps
    deps.remove(dep)
    found = problems(dvc, traced["params"], traced["traces"])
    assert any(line.startswith(expect) for line in found), found


def test_a_param_read_but_not_declared_is_caught(traced):
    dvc = copy.deepcopy(traced["dvc"])
    dvc["stages"]["train"]["params"].remove("preprocess.augment")
    found = problems(dvc, traced["params"], traced["traces"])
    assert any(line.startswith("train: reads params") for line in found), found


def test_a_dep_that_is_never_loaded_is_caught(traced):
    dvc = copy.deepcopy(traced["dvc"])
    dvc["stages"]["ingest"]["deps"].append("src/fer_pipeline/serve.py")
    found = problems(dvc, traced["params"], traced["traces"])
    assert "ingest: names src/fer_pipeline/serve.py in deps but never loads it" in found


def test_an_output_that_is_not_declared_is_caught(traced):
    dvc = copy.deepcopy(traced["dvc"])
    outs = dvc["stages"]["evaluate"]["outs"]
    outs[:] = [o for o in outs if (o if isinstance(o, str) else next(iter(o))) != "reports/evaluate"]
    found = problems(dvc, traced["params"], traced["traces"])
    assert "evaluate: writes reports/evaluate/model_card.md, which its outs do not name" in found
    assert ("evaluate: its cmd passes reports=reports/evaluate, which neither its deps nor "
            "its outs name") in found


def test_the_trace_sees_what_stages_write(traced):
    t = traced["traces"]
    written = {stage: {_written(w) for w in t[stage]["writes"]} for stage in t}
    assert "models/model.keras" in written["train"] and "reports/evaluate/metrics.json" in written["evaluate"]
    assert "reports/validate/validation.html" in written["validate"] and "models/model.tflite" in written["export"]
    assert "data/figures/evaluate/test_correct.png" in written["evaluate"]


def test_the_package_has_no_import_circle_and_no_stage_loads_the_fer_command(traced):
    """Imports inside the package (lazy ones included) form no cycle (``cli`` and ``workflow`` imported each
    other once); no stage loads ``cli.py``, so an edit of the ``fer`` command reruns nothing."""
    import ast

    pkg = REPO / "src/fer_pipeline"
    graph = {}
    for f in pkg.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
        graph[f.stem] = {d.split(".")[0] for d in deps}
    seen, stack = set(), []

    def visit(mod):
        if mod in stack:
            raise AssertionError(f"import circle: {' -> '.join(stack[stack.index(mod):] + [mod])}")
        if mod in seen or mod not in graph:
            return
        stack.append(mod)
        for dep in sorted(graph[mod]):
            visit(dep)
        stack.pop()
        seen.add(mod)

    for mod in sorted(graph):
        visit(mod)
    for stage, trace in traced["traces"].items():
        assert "src/fer_pipeline/cli.py" not in trace["modules"], stage
