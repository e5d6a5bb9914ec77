"""Retraining and smoke runs as plain commands, so CI and a laptop run the very same steps.

``fer smoke``   copy the repository to a temp dir, pull the data, run the whole pipeline on a
                tiny subset for one epoch (``dvc repro``), report the metrics.
``fer retrain`` in the current repository: ``dvc exp run`` with overrides, then
                ``dvc metrics diff`` / ``dvc params diff`` against a base revision, a Markdown
                summary, and whether the new model beats the base by the promotion rule
                (``registry``: paired McNemar test on val against the base's committed val
                predictions); CI opens a pull request only then.

Both run DVC with this interpreter's directory first on ``PATH``, so each stage's ``python``
is the interpreter that runs ``fer`` (a CI step shell need not have the venv on its PATH).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .errors import FerError
from .fsutil import write_json, write_text
from .layout import Evaluate, file_in, stage_file
from .stage import cmd_paths, declared_paths

# A whole-pipeline run in about a minute: 10 images per (split, class), one epoch.
SMOKE_OVERRIDES: dict[str, object] = {
    "ingest.max_per_class": 10,
    "validate.split_rows.train": [60, 80],
    "validate.split_rows.val": [60, 80],
    "validate.split_rows.test": [60, 80],
    "validate.class_share_range": [0.1, 0.2],
    "train.epochs": 1,
}


def overrides_as_args(overrides: dict[str, object]) -> list[str]:
    """``dvc exp run -S`` arguments (values as JSON, which DVC reads as YAML)."""
    return [arg for key, value in overrides.items() for arg in ("-S", f"{key}={json.dumps(value)}")]


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["train.epochs=60", ...]`` -> {"train.epochs": 60, ...} (values parsed as YAML)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise FerError(f"override {item!r} is not key=value (e.g. train.epochs=60)")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def apply_overrides(params_path: Path, overrides: dict[str, object]) -> None:
    params = yaml.safe_load(params_path.read_text())
    for key, value in overrides.items():
        node = params
        *parents, leaf = key.split(".")
        for p in parents:
            if p not in node:
                raise FerError(f"override {key}: no section {p!r} in {params_path.name}")
            node = node[p]
        node[leaf] = value
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def interpreter_env(env: dict | None = None) -> dict:
    """``env`` (default: ours) with this interpreter's ``bin`` first on PATH: DVC runs stage commands
    (``python pipeline/<stage>.py``) through the shell, which then finds the interpreter that has
    this package installed."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _run(cmd: list[str], cwd: Path, env: dict | None = None, capture: bool = False) -> str:
    env = interpreter_env(env)
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True,
                          capture_output=capture, stdout=None if capture else sys.stderr)
    if proc.returncode:
        detail = (proc.stderr or "").strip().splitlines()[-1:] if capture else []
        raise FerError(f"`{' '.join(cmd)}` failed in {cwd} (exit {proc.returncode}) {' '.join(detail)}")
    return proc.stdout or ""


def copy_repo(src: Path, dst: Path) -> Path:
    """Copy the git-visible files (tracked plus untracked-not-ignored) into a fresh git repo whose
    DVC remote points at the same storage, committed on branch ``main``."""
    src = src.resolve()
    files = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], src, capture=True)
    dst.mkdir(parents=True, exist_ok=True)
    _run(["git", "init", "-q", "-b", "main"], dst)  # DVC commands below need a git repo
    for rel in filter(None, files.split("\0")):
        s = src / rel
        if s.is_symlink():  # e.g. pipeline/fer_pipeline: stage scripts import their own copy's package
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(s), dst / rel)
        elif s.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, dst / rel)
    # `dvc remote list` prints the default remote with its url resolved; pin it in the copy.
    remote = _run([sys.executable, "-m", "dvc", "remote", "list"], src, capture=True).split()
    if len(remote) >= 2:
        name, url = remote[0], remote[1]
        if not os.path.isabs(url) and "://" not in url:
            url = str((src / ".dvc" / url).resolve())
        _run([sys.executable, "-m", "dvc", "remote", "modify", "--local", name, "url", url], dst)
    # The raw data (archive and FER+ votes) from the remote (fills the copy's DVC cache too, which
    # queued experiments check out from); if the remote is unreachable, a copy of the source's file.
    for dvc_file in sorted((dst / "data" / "raw").glob("*.dvc")):
        pulled = subprocess.run([sys.executable, "-m", "dvc", "pull", "-q", str(dvc_file.relative_to(dst))],
                                cwd=dst, capture_output=True, text=True)
        raw = src / "data" / "raw" / dvc_file.stem
        if pulled.returncode and raw.exists():
            shutil.copy2(raw, dst / "data" / "raw" / dvc_file.stem)
    env = {**os.environ, "GIT_AUTHOR_NAME": "fer", "GIT_AUTHOR_EMAIL": "fer@localhost",
           "GIT_COMMITTER_NAME": "fer", "GIT_COMMITTER_EMAIL": "fer@localhost"}
    _run(["git", "add", "-A"], dst)
    _run(["git", "commit", "-q", "-m", "workspace copy"], dst, env=env)
    return dst


def smoke(src: Path, workdir: Path, extra: dict[str, object] | None = None) -> dict:
    """Whole pipeline on a tiny subset in a copy of ``src``; returns its evaluation details."""
    repo = copy_repo(src, workdir)
    if not (repo / "data/raw/fer2013.zip").exists():
        raise FerError("no data/raw/fer2013.zip: the DVC remote is unreachable and the source has no copy; "
                       "run `dvc pull` (README, Data)")
    apply_overrides(repo / "params.yaml", {**SMOKE_OVERRIDES, **(extra or {})})
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ.get(
        "MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")}
    _run([sys.executable, "-m", "dvc", "repro"], repo, env=env)
    return json.loads((repo / stage_file("evaluate", Evaluate.DETAILS, repo / "dvc.yaml")).read_text())


def _git_show(repo: Path, rev: str, path: str) -> str | None:
    try:
        return _run(["git", "show", f"{rev}:{path}"], repo, capture=True)
    except FerError:  # no such file at that revision
        return None




def resolve_revision(repo: Path, rev: str) -> str:
    """The commit ``rev`` names; a revision this clone does not have (a typo, or a DVC experiment
    run on another machine) is an error, never "no predictions", which would read as a first model."""
    try:
        return _run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo, capture=True).strip()
    except FerError:
        raise FerError(f"unknown git revision {rev!r} in {repo}: check the name, or fetch it (git fetch; "
                       "a DVC experiment run elsewhere: dvc exp pull <remote> <name>)") from None


def stored_predictions_at(repo: Path, rev: str | None) -> dict[str, str]:
    """The val / test prediction CSVs that evaluate wrote, as committed at ``rev`` (git), or in the
    workspace when ``rev`` is None; only those that exist."""
    if rev is None:
        args = declared_paths("evaluate", repo / "dvc.yaml")
    else:  # the layout of that revision (files in stage folders, or each its own argument before)
        dvc_yaml = _git_show(repo, rev, "dvc.yaml")
        if dvc_yaml is None:
            return {}
        args = cmd_paths(yaml.safe_load(dvc_yaml)["stages"]["evaluate"]["cmd"])
    paths = {s: file_in("evaluate", args, name)
             for s, name in (("val", Evaluate.VAL_PREDICTIONS), ("test", Evaluate.TEST_PREDICTIONS))}
    if rev is None:
        return {s: (repo / p).read_text() for s, p in paths.items() if (repo / p).exists()}
    return {s: text for s, p in paths.items() if (text := _git_show(repo, rev, p)) is not None}


def compare_revisions(repo: Path, base: str, candidate: str | None = None):
    """The promotion rule (``registry``) for ``candidate``'s predictions (a git revision, e.g. a DVC
    experiment's; None = the workspace) against those committed at ``base``: a ``promotion.Decision``."""
    from . import promotion
    from .labels import LABELS
    from .params import load

    rule = load(["evaluate"], repo / "params.yaml")["evaluate"]
    alpha, min_gain = rule["promote_alpha"], rule["promote_min_gain_points"]
    old = stored_predictions_at(repo, resolve_revision(repo, base))
    new = stored_predictions_at(repo, candidate and resolve_revision(repo, candidate))
    target = training_target_at(repo, candidate)
    column = promotion.TARGET_COLUMN[target]
    if "val" not in new:
        return promotion.keep_champion(alpha, min_gain, f"{candidate or 'the workspace'} has no val predictions "
                                                       "(run the evaluate stage): nothing to compare", column)
    if "val" not in old:
        return promotion.first_model(alpha, min_gain, f"{base} has no committed val predictions to compare with",
                                    column)
    return promotion.decide_from_csv(new, old, list(LABELS), alpha, min_gain, target,
                                     training_target_at(repo, resolve_revision(repo, base)))


def training_target_at(repo: Path, rev: str | None) -> str:
    """``train.labels`` at ``rev`` (None = the workspace): the labels the candidate is judged on."""
    import yaml

    text = (repo / "params.yaml").read_text() if rev is None else _git_show(repo, rev, "params.yaml")
    return ((yaml.safe_load(text or "") or {}).get("train") or {}).get("labels", "fer2013")


def retrain(repo: Path, overrides: dict[str, object], base: str, summary_path: Path,
            result_path: Path, name: str | None = None) -> dict:
    """``dvc exp run`` with ``overrides`` in ``repo``, compared with ``base``; writes a Markdown
    summary and a JSON result whose ``improved`` is the promotion rule's verdict: the new model's
    val predictions against the val predictions committed at ``base``, paired (McNemar)."""
    resolve_revision(repo, base)  # before the hour of training, not after it
    dvc = [sys.executable, "-m", "dvc"]
    cmd = [*dvc, "exp", "run", *overrides_as_args(overrides)] + (["-n", name] if name else [])
    _run(cmd, repo)
    metrics_md = _run([*dvc, "metrics", "diff", base, "--md"], repo, capture=True)
    params_md = _run([*dvc, "params", "diff", base, "--md"], repo, capture=True)
    decision = compare_revisions(repo, base)
    headline = json.loads((repo / stage_file("evaluate", Evaluate.METRICS, repo / "dvc.yaml")).read_text())
    details_file = repo / stage_file("evaluate", Evaluate.DETAILS, repo / "dvc.yaml")
    details = json.loads(details_file.read_text()) if details_file.exists() else {}
    summary = retrain_summary(decision, base, headline, details, overrides, metrics_md, params_md)
    write_text(summary_path, summary)
    result = {"name": name, "overrides": overrides, "val_accuracy": headline["val_acc"],
              "improved": decision.promote, "reason": decision.reason, "rule": decision.rule,
              "p_value": decision.val["p_value"] if decision.val else None,
              "val": decision.val, "test": decision.test, "base": base,
              "test_accuracy": headline["test_acc"], "test_accuracy_ci95": [headline["test_lo"], headline["test_hi"]],
              "test_ferplus_accuracy": headline.get("fp_acc"),
              "labels": (details.get("target") or {}).get("labels", "fer2013")}
    write_json(result_path, result)
    return result


def comparison_lines(decision) -> list[str]:
    from .promotion import Comparison

    return [f"- {Comparison(**c).line()}" + (" (decides)" if c["split"] == "val" else " (reported only)")
            for c in (decision.val, decision.test) if c]


def _pct2(v: float) -> str:
    """0.6701 -> '67.01' (the summaries' two-decimal percent; the % sign is the template's)."""
    return f"{100 * v:.2f}"


def retrain_summary(decision, base: str, headline: dict, details: dict, overrides: dict, metrics_md: str,
                    params_md: str) -> str:
    """The retraining result as Markdown (``templates/retrain_summary.md.j2``)."""
    from .render import render

    return render("retrain_summary.md.j2", filters={"pct2": _pct2}, decision=decision, base=base, h=headline,
                  fp=details.get("test_ferplus") or {}, reg=details.get("registry") or {},
                  lines=comparison_lines(decision), labels=(details.get("target") or {}).get("labels", "fer2013"),
                  overrides=" ".join(overrides_as_args(overrides)), metrics_md=metrics_md, params_md=params_md)


def sweep_summary(results: list[dict]) -> str:
    """A Markdown table comparing retrain results (one per sweep member), best val first
    (``templates/sweep_summary.md.j2``)."""
    from .render import render

    rows = [{**r, "sets": " ".join(f"{k}={json.dumps(v)}" for k, v in (r.get("overrides") or {}).items()) or "none",
             "vs": f"{r['val']['gain_points']:+.2f} pt, p = {r['p_value']:.3g}" if r.get("val") else "-"}
            for r in sorted(results, key=lambda r: -r["val_accuracy"])]
    return render("sweep_summary.md.j2", filters={"pct2": _pct2}, rows=rows)


def add_parser(sub) -> None:
    p = sub.add_parser("smoke", help="whole pipeline on a tiny subset, one epoch, in a temp copy")
    p.add_argument("--workdir", default=None, help="where to put the copy (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the copy")

    def smoke_cmd(args):
        import tempfile

        work = Path(args.workdir or tempfile.mkdtemp(prefix="fer-smoke-")) / "repo"
        try:
            m = smoke(Path("."), work)
            print(f"smoke pipeline ok: test accuracy {m['test']['accuracy']:.3f} on {work}")
        finally:
            if not args.keep:
                shutil.rmtree(work.parent, ignore_errors=True)

    p.set_defaults(func=smoke_cmd)

    r = sub.add_parser("retrain", help="dvc exp run with overrides, diff against a base, summarise")
    r.add_argument("--set", "-S", action="append", default=[], metavar="KEY=VALUE",
                   help="parameter override, e.g. train.epochs=60 (repeatable)")
    r.add_argument("--smoke", action="store_true", help="add the smoke overrides (tiny subset, 1 epoch)")
    r.add_argument("--base", default="main", help="git revision to compare with (default: main)")
    r.add_argument("--name", help="experiment name")
    r.add_argument("--summary", default="retrain_summary.md")
    r.add_argument("--result", default="retrain_result.json")

    def retrain_cmd(args):
        overrides = {**(SMOKE_OVERRIDES if args.smoke else {}), **parse_overrides(args.set)}
        res = retrain(Path("."), overrides, args.base, Path(args.summary), Path(args.result), args.name)
        print(f"{'better' if res['improved'] else 'not better'} than {args.base}: {res['reason']}; "
              f"summary in {args.summary}")

    r.set_defaults(func=retrain_cmd)

    c = sub.add_parser("compare", help="the promotion rule for one revision's predictions against another's")
    c.add_argument("base", help="git revision whose committed predictions are the champion's (e.g. main)")
    c.add_argument("candidate", nargs="?", help="git revision of the candidate, e.g. a DVC experiment's "
                                                "(`dvc exp show` gives it; default: the workspace)")

    def compare_cmd(args):
        d = compare_revisions(Path("."), args.base, args.candidate)
        print(f"{'better' if d.promote else 'not better'} than {args.base}: {d.reason}\nrule: {d.rule}")
        print("\n".join(comparison_lines(d)))

    c.set_defaults(func=compare_cmd)

    w = sub.add_parser("sweep-summary", help="compare retrain results (JSON files) in one Markdown table")
    w.add_argument("results", nargs="+", help="retrain_result.json files")

    def sweep_cmd(args):
        missing = [p for p in args.results if not Path(p).exists()]
        if missing:
            raise FerError(f"no such result file: {missing[0]}")
        print(sweep_summary([json.loads(Path(p).read_text()) for p in args.results]))

    w.set_defaults(func=sweep_cmd)
