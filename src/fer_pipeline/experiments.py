"""The record of training experiments (``reports/experiments.yaml``) and the page made from it
(``docs/experiments.md`` with ``reports/figures/compute_vs_accuracy.png``).

``fer experiments record NAME --what ... --decision ...`` reads a DVC experiment's committed
params and reports (``git show <its commit>:...``) and writes its row: the figures come from the
run, not from a person. ``fer experiments render`` (or ``python scripts/experiments.py``) writes
the page and the plot; ``--check`` fails when the committed page is stale.

Training compute of a row = FLOPs per training image x training images x epochs (a recorded run
carries the train stage's own ``train_compute_tflop``; older rows are counted from their model
with ``models.training_flops_at`` and the training images in ``reports/preprocess/summary.json``).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import yaml

from .errors import FerError
from .fsutil import write_text
from .layout import Evaluate, Preprocess, Train, file_in
from .stage import cmd_paths

RECORD = "reports/experiments.yaml"
PAGE = "docs/experiments.md"
FIGURE = "reports/figures/compute_vs_accuracy.png"
BUDGET_ROW = "dropout-0.2"   # today's default recipe: the unit of compute
HEADER = """# Every training experiment, one row each. Rows with a commit are written by
# `fer experiments record NAME` from the DVC experiment's committed params and reports; the
# others were copied by hand from each run's reports. `fer experiments render` writes
# docs/experiments.md and the compute plot from this file. val decides; test is reported.
"""


def load_rows(root: Path) -> list[dict]:
    return yaml.safe_load((root / RECORD).read_text()) or []


def train_images(root: Path) -> int:
    """Training images of the FER2013-label default (the preprocess summary's rows.train)."""
    from .stage import declared_paths

    folder = declared_paths("preprocess", root / "dvc.yaml")["reports"]
    return int(json.loads((root / folder / Preprocess.SUMMARY).read_text())["rows"]["train"])


def with_compute(rows: list[dict], images: int) -> tuple[list[dict], float]:
    """Rows with ``gflop`` (per training image) and ``tflop`` (the run), and the budget (TFLOP)."""
    from .models import training_flops_at

    out = []
    for r in rows:
        r = dict(r)
        if r.get("tflop") is None:
            model = dict(r["model"])
            name = model.pop("name")
            r["gflop"] = training_flops_at(name, r["crop_size"], **model) / 1e9
            small = r.get("progressive") or {"epochs": 0}
            small_gflop = training_flops_at(name, small["size"], **model) / 1e9 if small["epochs"] else 0.0
            n = r.get("train_images") or images
            r["tflop"] = n * (r["gflop"] * (r["epochs"] - small["epochs"]) + small_gflop * small["epochs"]) / 1e3
        out.append(r)
    budget = next((r["tflop"] for r in out if r["name"] == BUDGET_ROW), None)
    if budget is None:
        raise FerError(f"{RECORD}: no row {BUDGET_ROW!r} (the budget's unit)")
    return out, budget


def _points(v) -> str:
    """A figure the record keeps in percent: 66.41 -> '66.41%'; None -> '-'."""
    return "-" if v is None else (f"{v}%" if isinstance(v, (int, float)) else str(v))


def render_page(rows: list[dict], budget: float) -> str:
    """docs/experiments.md, through its template (``templates/experiments.md.j2``)."""
    from .render import render as render_template

    return render_template("experiments.md.j2", rows=rows, budget=budget, record=RECORD, figure=FIGURE,
                           filters={"points": _points})


def plot(rows: list[dict], budget: float, out: Path) -> None:
    """The page's figure (``plots.experiments``); no MLflow run is active here: only the file."""
    from . import plots

    plots.publish(plots.experiments(rows, budget), str(out))


def render(root: Path, check: bool = False) -> str:
    """Write (or with ``check``, compare) the page; the figure is written unless checking."""
    rows, budget = with_compute(load_rows(root), train_images(root))
    page = render_page(rows, budget)
    if check:
        current = (root / PAGE).read_text() if (root / PAGE).exists() else ""
        if current != page:
            raise FerError(f"{PAGE} is stale: run `fer experiments render` (or python scripts/experiments.py)")
        return page
    write_text(root / PAGE, page)
    plot(rows, budget, root / FIGURE)
    return page


# --- recording a run -----------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if r.returncode:
        raise FerError(f"git {' '.join(args)} failed: {r.stderr.strip().splitlines()[-1:] or ''}")
    return r.stdout


def experiment_commit(root: Path, name: str) -> str:
    """The commit of the DVC experiment ``name`` (its ref under ``refs/exps``), or of a git revision."""
    for line in _git(root, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").splitlines():
        ref, sha = line.split()
        if ref.rsplit("/", 1)[-1] == name:
            return sha
    r = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"], cwd=root,
                       capture_output=True, text=True)
    if r.returncode:
        raise FerError(f"no DVC experiment or git revision named {name!r} here (`dvc exp show` lists them; "
                       "an experiment run elsewhere: dvc exp pull <remote> <name>)")
    return r.stdout.strip()


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def overrides_between(base: dict, exp: dict) -> list[str]:
    """``-S key=value`` for every param the experiment changed against its baseline, quoted for a
    shell where it needs it (a list's brackets)."""
    a, b = _flat(base), _flat(exp)
    return ["-S " + shlex.quote(f"{k}={json.dumps(v, separators=(',', ':')) if isinstance(v, list) else v}")
            for k, v in b.items() if a.get(k) != v]


def row_from_commit(root: Path, name: str, sha: str, what: str, decision: str, machine: str | None,
                    experiment: bool = True) -> dict:
    def show(path: str):
        return _git(root, "show", f"{sha}:{path}")

    params = yaml.safe_load(show("params.yaml"))
    base = yaml.safe_load(_git(root, "show", f"{sha}^:params.yaml"))  # the experiment's baseline
    stages = yaml.safe_load(show("dvc.yaml"))["stages"]
    train = json.loads(show(file_in("train", cmd_paths(stages["train"]["cmd"]), Train.METRICS)))
    head = json.loads(show(file_in("evaluate", cmd_paths(stages["evaluate"]["cmd"]), Evaluate.METRICS)))
    t = params["train"]
    model = {"name": t["model"]["name"], **t["model"][t["model"]["name"]]}
    if machine is None:
        machine = _machine_of(json.loads(show("models/mlflow_run.json")).get("run_id"))
    sets = " ".join(overrides_between(base, params))
    command = f"dvc exp run --temp -n {name} {sets}".strip() if experiment else f"dvc repro (the lock of {sha[:7]})"
    return {
        "name": name, "what": what, "command": command,
        "labels": t.get("labels", "fer2013"), "model": model, "crop_size": t["crop_size"], "epochs": t["epochs"],
        **({"progressive": t["progressive"]} if t["progressive"]["epochs"] else {}),
        "train_images": train["train_images"], "gflop": train["train_gflop_per_image"],
        "tflop": train["train_compute_tflop"], "minutes": round(train["train_seconds"] / 60, 1),
        "machine": f"{machine}; {train['train_images_per_second']:.0f} images/s",
        # val against the labels the run trained on (what decides); the FER2013 figure beside it
        "val": round(100 * (head["val_acc"] if t.get("labels", "fer2013") == "fer2013" else head["val_fp"]), 2),
        "val_fer2013": round(100 * head["val_acc"], 2), "test": round(100 * head["test_acc"], 2),
        "tta": round(100 * head["test_tta"], 2) if head.get("test_tta") is not None else None,
        "ferplus_test": round(100 * head["fp_acc"], 2) if head.get("fp_acc") is not None else None,
        "ferplus_val": round(100 * head["val_fp"], 2) if head.get("val_fp") is not None else None,
        "commit": sha[:7], "decision": decision,
    }


def _machine_of(run_id: str | None) -> str:
    """The CPU a run's minutes come from (its MLflow tag ``cpu_model``), if this store has the run."""
    if not run_id:
        return "unknown machine"
    try:
        import mlflow

        from .tracking import setup

        setup("fer2013")
        tags = mlflow.MlflowClient().get_run(run_id).data.tags
        return f"{tags.get('cpu_model', 'unknown CPU')}, {tags.get('cpu_count', '?')} cores"
    except Exception:  # noqa: BLE001  (no store, or not this store's run)
        return "unknown machine"


def record(root: Path, name: str, what: str, decision: str, machine: str | None = None,
           rev: str | None = None) -> dict:
    """Write (or replace) the row of experiment ``name`` in the record (``rev``: a git revision whose
    committed lock is the run, e.g. the default's `dvc repro`); the row."""
    row = row_from_commit(root, name, experiment_commit(root, rev or name), what, decision, machine,
                          experiment=rev is None)
    rows = [r for r in load_rows(root) if r["name"] != name] + [row]
    write_text(root / RECORD, HEADER + yaml.safe_dump(rows, sort_keys=False, width=200, default_flow_style=None))
    return row


def add_parser(sub) -> None:
    p = sub.add_parser("experiments", help="record a DVC experiment's row; render docs/experiments.md")
    verbs = p.add_subparsers(dest="verb", required=True)
    r = verbs.add_parser("record", help="the row of a DVC experiment, from its committed params and reports")
    r.add_argument("name", help="DVC experiment name (or a git revision)")
    r.add_argument("--what", required=True, help="one line: what the run changed")
    r.add_argument("--decision", required=True, help="one line: what it showed and what was decided")
    r.add_argument("--machine", help="the machine (default: the run's MLflow tag cpu_model)")
    r.add_argument("--rev", help="a git revision whose committed lock is the run (a plain `dvc repro`)")

    def record_cmd(args):
        row = record(Path("."), args.name, args.what, args.decision, args.machine, args.rev)
        render(Path("."))
        print(f"recorded {row['name']} ({row['commit']}): val {row['val']}%, test {row['test']}%; {PAGE} rewritten")

    r.set_defaults(func=record_cmd)
    g = verbs.add_parser("render", help=f"write {PAGE} and the compute plot from {RECORD}")
    g.add_argument("--check", action="store_true", help="fail if the committed page is stale")

    def render_cmd(args):
        render(Path("."), check=args.check)
        print(f"{PAGE} is up to date" if args.check else f"wrote {PAGE} and {FIGURE}")

    g.set_defaults(func=render_cmd)
