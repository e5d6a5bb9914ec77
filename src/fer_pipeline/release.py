"""The model the package ships, and ``fer release``, the one way it changes.

``assets/model/`` inside the package holds the released model: its LiteRT file (the export stage's
``model.tflite``), ``manifest.json`` (the commit and params it was trained from, both scoreboards
with intervals, per-class recall, calibration, the file's sha256, and the decision that shipped
it), ``model_card.md`` (rendered from the manifest, so the two cannot disagree) and the model's
val predictions (what the next release is paired against). A clone or an install that never
trained answers with it (``predictor.load_shipped``, ``load_predictor``'s last resort).

``fer release`` takes the workspace's evaluate and export outputs (the paths dvc.yaml gives those
stages) and applies the promotion rule (``promotion.decide_from_csv``, params.yaml's
``evaluate.promote_*``) against the shipped model on val: it writes the package's files only if
the candidate passes, or with ``--override REASON``, which the manifest records. A refused release
writes nothing; a release writes every file or none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import FerError
from .labels import LABELS

SHIPPED = Path(__file__).parent / "assets" / "model"
MODEL_FILE, MANIFEST, CARD, VAL_PREDICTIONS = "model.tflite", "manifest.json", "model_card.md", "val_predictions.csv"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(folder: Path = SHIPPED) -> dict:
    """The shipped model's manifest, its file checked against the sha256 it records; one line if
    the model is missing or damaged."""
    manifest_path, model_path = Path(folder) / MANIFEST, Path(folder) / MODEL_FILE
    how = "reinstall the package (pip install -e .) or pass --model"
    if not manifest_path.is_file() or not model_path.is_file():
        raise FerError(f"no shipped model in {folder} ({MANIFEST} and {MODEL_FILE}): {how}")
    try:
        manifest = json.loads(manifest_path.read_text())
        want = manifest["model"]["sha256"]
    except (ValueError, KeyError, TypeError):
        raise FerError(f"the shipped model's {manifest_path} is damaged (not its JSON): {how}") from None
    if sha256(model_path) != want:
        raise FerError(f"the shipped model {model_path} is damaged: its sha256 is not the manifest's; {how}")
    return manifest


# --------------------------------------------------------------------------------------------
# fer release


def _workspace_outputs(root: Path) -> dict[str, Path]:
    """The evaluate and export outputs a release reads, at the paths dvc.yaml gives them."""
    from .layout import Evaluate, Export, stage_file
    from .stage import declared_paths

    dvc_yaml = root / "dvc.yaml"
    paths = {"metrics": stage_file("evaluate", Evaluate.METRICS, dvc_yaml),
             "details": stage_file("evaluate", Evaluate.DETAILS, dvc_yaml),
             "val_predictions": stage_file("evaluate", Evaluate.VAL_PREDICTIONS, dvc_yaml),
             "tflite": declared_paths("export", dvc_yaml)["tflite"],
             "tflite_report": stage_file("export", Export.REPORT, dvc_yaml)}
    out = {k: root / v for k, v in paths.items()}
    missing = [str(p.relative_to(root)) for p in out.values() if not p.exists()]
    if missing:
        raise FerError(f"nothing to release: {', '.join(missing)} missing; run `dvc repro` (evaluate and export) first")
    return out


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def build_manifest(root: Path, params: dict, files: dict[str, Path], decision: dict) -> dict:
    """The manifest of the workspace's model (``files``: ``_workspace_outputs``)."""
    details = json.loads(files["details"].read_text())
    tfl = json.loads(files["tflite_report"].read_text())
    test, fp, val = details["test"], details["test_ferplus"], details["val"]
    cal = details["calibration"]
    train = params["train"]
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    return {
        "release": {"date": dt.date.today().isoformat(), "commit": _git(root, "rev-parse", "HEAD") or "unknown",
                    "workspace_changed": dirty},
        "model": {"file": MODEL_FILE, "sha256": sha256(files["tflite"]), "bytes": files["tflite"].stat().st_size,
                  "format": f"LiteRT, quantize {tfl['quantize']}", "input": "48x48x1 grayscale, raw 0-255",
                  "labels": list(LABELS)},
        "trained": {"labels": train["labels"], "train": train, "augment": params["preprocess"]["augment"]},
        "metrics": {
            "fer2013_test": {"accuracy": test["accuracy"], "ci95": test["accuracy_ci95"],
                             "tta_accuracy": test.get("tta_accuracy"), "macro_f1": test["macro_f1"],
                             "recall": {k: v["recall"] for k, v in test["per_class"].items()}},
            "ferplus_test": {"accuracy": fp["accuracy"], "ci95": fp["accuracy_ci95"],
                             "tta_accuracy": fp.get("tta_accuracy"), "images": fp["images"]},
            "val": {"fer2013": val["accuracy"], "ferplus": details["val_ferplus"]["accuracy"]},
            "tflite_test_accuracy": tfl["test_accuracy_tflite"], "keras_test_accuracy": tfl["test_accuracy_keras"],
        },
        "calibration": {"test_ece": cal["test"]["ece"], "labels": cal["labels"], "temperature": cal["temperature"],
                        "temperature_lowers_val_ece": bool(cal["helps"]),
                        "test_ece_at_temperature": cal["test"]["ece_scaled"]},
        "decision": decision,
    }


def run_release(root: str | Path = ".", folder: Path = SHIPPED, override: str | None = None) -> dict:
    """Release the workspace's model into ``folder`` if the promotion rule passes it against the
    model there (or ``override`` says why anyway); returns the manifest written. FerError, with
    nothing written, when the rule refuses."""
    from .params import load
    from .promotion import TARGET_COLUMN, decide_from_csv, first_model
    from .render import render

    root, folder = Path(root), Path(folder)
    params = load(path=root / "params.yaml")
    files = _workspace_outputs(root)
    ev = params["evaluate"]
    alpha, gain, target = float(ev["promote_alpha"]), float(ev["promote_min_gain_points"]), params["train"]["labels"]
    candidate = {"val": files["val_predictions"].read_text()}
    if (folder / MANIFEST).exists():
        shipped = read_manifest(folder)
        champion = {"val": (folder / VAL_PREDICTIONS).read_text()}
        d = decide_from_csv(candidate, champion, list(LABELS), alpha, gain, target, shipped["trained"]["labels"])
    else:
        d = first_model(alpha, gain, "the package ships no model yet", TARGET_COLUMN[target])
    decision = {"promote": d.promote, "rule": d.rule, "reason": d.reason, "override": override, "val": d.val}
    if not d.promote and not override:
        raise FerError(f"release refused, nothing written: {d.reason} (the rule: {d.rule}); "
                       "`fer release --override REASON` ships it anyway and records why")
    manifest = build_manifest(root, params, files, decision)
    # every file into a fresh folder beside the old one, then swapped in: all or nothing
    staging = folder.with_name(folder.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(files["tflite"], staging / MODEL_FILE)
    shutil.copyfile(files["val_predictions"], staging / VAL_PREDICTIONS)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (staging / CARD).write_text(render("release_card.md.j2", m=manifest))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def add_parser(sub) -> None:
    p = sub.add_parser("release", help="ship the workspace's evaluated model inside the package, if the "
                                       "promotion rule passes it against the shipped one")
    p.add_argument("--override", metavar="REASON",
                   help="ship it even if the rule refuses; the manifest records REASON")

    def func(args):
        m = run_release(".", override=args.override)
        t, f = m["metrics"]["fer2013_test"], m["metrics"]["ferplus_test"]
        d = m["decision"]
        how = f"override: {args.override}" if args.override and not d["promote"] else d["reason"]
        print(f"released {SHIPPED / MODEL_FILE} ({m['model']['bytes'] / 1e6:.2f} MB, trained on "
              f"{m['trained']['labels']}): FER2013 test {100 * t['accuracy']:.1f}%, FER+ test "
              f"{100 * f['accuracy']:.1f}% ({how})", file=sys.stderr)

    p.set_defaults(func=func)
