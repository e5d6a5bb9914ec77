"""Evaluate: test (PrivateTest) and val (PublicTest) metrics, pictures, registry decision, model card."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from . import plots
from .fsutil import atomic_path, write_json, write_text
from .labels import LABELS, NUM_CLASSES

# Baselines measured on this kind of machine (../shared/notes/measured-baselines.md).
BASELINES = [
    {"model": "seed notebook VGG-16 (16.8M params, early-stopped on the test folder)",
     "privatetest": None, "publictest": None, "combined": 0.600},
    {"model": "`fer` package mini-Xception (58K params, own weights)",
     "privatetest": 0.657, "publictest": 0.652, "combined": None},
    {"model": "notes recipe: BN-VGG 32-64-128-256, 40 epochs, 52 min", "privatetest": 0.668,
     "publictest": 0.657, "combined": None, "privatetest_tta": 0.675},
]


def predict_probs(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities for raw 0-255 images (n, 48, 48, 1)."""
    return model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    labels = list(range(NUM_CLASSES))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": round(float(np.mean(y_true == y_pred)), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)), 4),
        "weighted_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="weighted",
                                            zero_division=0)), 4),
        "per_class": {LABELS[i]: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                                  "f1": round(float(f[i]), 4), "support": int(support[i])}
                      for i in labels},
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Rows = true class, columns = predicted class, both in canonical LABELS order."""
    return confusion_matrix(y_true, y_pred, labels=list(range(NUM_CLASSES)))


def write_predictions_csv(path, y_true: np.ndarray, y_pred: np.ndarray) -> None:
    """Per-image ``actual,predicted`` label names: the input of DVC's confusion template."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["actual", "predicted"])
            w.writerows((LABELS[a], LABELS[b]) for a, b in zip(y_true, y_pred))


def pick_examples(y_true, y_pred, correct: bool, n: int, seed: int = 0) -> np.ndarray:
    idx = np.flatnonzero((y_true == y_pred) == correct)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False)) if len(idx) else idx


def shifted(x: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Images moved ``dx`` pixels right and ``dy`` down; the uncovered border is reflected, as in the
    training augmentation's translation."""
    p = max(abs(dx), abs(dy))
    if p == 0:
        return x
    h, w = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    return padded[:, p - dy:p - dy + h, p - dx:p - dx + w, :]


def tta_offsets(shift_px: int) -> list[tuple[int, int]]:
    """Positions averaged by TTA besides the original: none, or 4 shifts of ``shift_px`` (right,
    left, down, up). Each position is seen plain and mirrored: 2 or 10 views, like ten-crop."""
    s = int(shift_px)
    return [(s, 0), (-s, 0), (0, s), (0, -s)] if s > 0 else []


def evaluate_model(model, splits: dict[str, tuple[np.ndarray, np.ndarray]], tta: bool,
                   shift_px: int = 0) -> tuple[dict, dict]:
    """-> (metrics, predictions). Metrics per split (and ``combined`` = val + test, the 7,178-image
    Kaggle test folder); ``tta_*`` figures when ``tta``: mean probabilities over the image and its
    mirror, at the original position and at each of ``tta_offsets(shift_px)``."""
    metrics, preds = {}, {}
    for name, (x, y) in splits.items():
        probs = predict_probs(model, x)
        m = classification_metrics(y, probs.argmax(1))
        if tta:  # reuse the plain predictions; only the other views are new work
            views = [probs, predict_probs(model, x[:, :, ::-1, :])]
            for dx, dy in tta_offsets(shift_px):
                moved = shifted(x, dx, dy)
                views += [predict_probs(model, moved), predict_probs(model, moved[:, :, ::-1, :])]
            tta_probs = np.mean(views, axis=0)
            t = classification_metrics(y, tta_probs.argmax(1))
            m.update({"tta_accuracy": t["accuracy"], "tta_macro_f1": t["macro_f1"], "tta_views": len(views)})
            preds[name + "_tta"] = tta_probs
        metrics[name] = m
        preds[name] = probs
    if "val" in splits and "test" in splits:
        y = np.concatenate([splits["val"][1], splits["test"][1]])
        c = {"images": int(len(y)), "accuracy": classification_metrics(y, np.concatenate([preds["val"], preds["test"]]).argmax(1))["accuracy"]}
        if tta:
            c["tta_accuracy"] = classification_metrics(
                y, np.concatenate([preds["val_tta"], preds["test_tta"]]).argmax(1))["accuracy"]
        metrics["combined_test_folder"] = c
    return metrics, preds


# --------------------------------------------------------------------------------------------
# Model registry: champion / challenger


def logged_model_uri(run_id: str) -> str:
    """``models:/m-...`` of the model the run logged (MLflow 3 logged models), else ``runs:/``."""
    import mlflow

    run = mlflow.get_run(run_id)
    found = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                        filter_string=f"source_run_id = '{run_id}'", output_format="list")
    return f"models:/{found[0].model_id}" if found else f"runs:/{run_id}/model"


def register_and_decide(run_id: str, model_name: str, test_accuracy: float) -> dict:
    """Register the run's model; move alias ``champion`` to it only if its test accuracy beats the
    current champion's, else give it alias ``challenger``. Returns the decision.

    Idempotent per run: evaluating the same run again reuses its version and keeps its alias."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        existing = client.search_model_versions(f"name='{model_name}' and run_id='{run_id}'")
    except MlflowException:
        existing = []
    if existing:
        newest = max(existing, key=lambda mv: int(mv.version))
        v = client.get_model_version(model_name, newest.version)  # search results carry no aliases
        alias = "champion" if "champion" in v.aliases else "challenger"
        return {"model": model_name, "version": int(v.version), "alias": alias,
                "reason": v.tags.get("decision", f"run already registered as v{v.version}"),
                "previous_champion": None}
    version = mlflow.register_model(logged_model_uri(run_id), model_name).version
    client.set_model_version_tag(model_name, version, "test_accuracy", f"{test_accuracy:.4f}")
    try:
        champ = client.get_model_version_by_alias(model_name, "champion")
        champ_acc = float(champ.tags.get("test_accuracy", "nan"))
        champ_version = champ.version
    except MlflowException:
        champ, champ_acc, champ_version = None, float("nan"), None
    promote = champ is None or not (champ_acc >= test_accuracy)
    alias = "champion" if promote else "challenger"
    client.set_registered_model_alias(model_name, alias, version)
    if promote:
        reason = ("first registered version" if champ is None else
                  f"test accuracy {test_accuracy:.4f} beats champion v{champ_version} ({champ_acc:.4f})")
    else:
        reason = f"test accuracy {test_accuracy:.4f} does not beat champion v{champ_version} ({champ_acc:.4f})"
    client.set_model_version_tag(model_name, version, "decision", reason)
    return {"model": model_name, "version": int(version), "alias": alias, "reason": reason,
            "previous_champion": int(champ_version) if champ_version else None}


# --------------------------------------------------------------------------------------------
# The stage


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def model_card(metrics: dict, train: dict, prep: dict, valid: dict, decision: dict | None,
               params: dict, figures: dict[str, str]) -> str:
    t, v = metrics["test"], metrics["val"]
    c = metrics.get("combined_test_folder", {})
    model_name = params["train"]["model"]["name"]
    rows = "\n".join(
        f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        for name, m in t["per_class"].items())
    base = "\n".join(
        f"| {b['model']} | {_pct(b.get('privatetest'))} | {_pct(b.get('publictest'))} | {_pct(b.get('combined'))} |"
        for b in BASELINES)
    tta = "tta_accuracy" in t
    tta_head = f" accuracy (TTA, {t['tta_views']} views) |" if tta else ""
    shift = params["evaluate"]["tta_shift_px"] if tta else 0
    tta_note = ("\nTTA averages the class probabilities of each face and its mirror image"
                + (f", at its own position and shifted {shift} px left, right, up and down (edges reflected)"
                   if shift else "") + "; the model itself is unchanged.\n")
    dropped = ", ".join(f"{k.replace('_', ' ')}: {n}" for k, n in prep.get("dropped", {}).items()) or "none"
    reg = (f"Registered as `{decision['model']}` version {decision['version']}, alias "
           f"`{decision['alias']}`: {decision['reason']}." if decision else "Registry step disabled.")
    figs = "\n".join(f"![{k}]({Path(p).relative_to('reports') if p.startswith('reports/') else p})"
                     for k, p in figures.items())
    return f"""# Model card: FER2013 emotion classifier

Generated by `dvc repro` (stage `evaluate`); every number below comes from the files in
`reports/` that this pipeline wrote. Reproduce with `./run.sh` (see README).

## Headline

| split | accuracy | macro-F1 | weighted-F1 |{tta_head}
|---|---|---|---|{'---|' if tta else ''}
| **test = PrivateTest** ({sum(m['support'] for m in t['per_class'].values()):,} images) | **{_pct(t['accuracy'])}** | {t['macro_f1']:.3f} | {t['weighted_f1']:.3f} |{f" {_pct(t['tta_accuracy'])} |" if tta else ''}
| val = PublicTest (model choice) | {_pct(v['accuracy'])} | {v['macro_f1']:.3f} | {v['weighted_f1']:.3f} |{f" {_pct(v['tta_accuracy'])} |" if tta else ''}
| combined Kaggle test folder ({c.get('images', 0):,}) | {_pct(c.get('accuracy'))} | - | - |{f" {_pct(c.get('tta_accuracy'))} |" if tta else ''}
{tta_note if tta else ''}

## Data and protocol

- Source: FER2013, Kaggle folder layout (`data/raw/fer2013.zip`, tracked by DVC).
- Train = Training ({prep.get('rows', {}).get('train', '?'):,} images after cleaning), validation
  = PublicTest ({prep.get('rows', {}).get('val', '?'):,}; early stopping and checkpoint choice only),
  test = PrivateTest ({prep.get('rows', {}).get('test', '?'):,}; reported here, never used for a choice).
- Dropped from train: {dropped}. Val and test are the official sets, untouched.
- Data validation: {valid.get('expectations', '?')} Great Expectations checks, {valid.get('failed', '?')} failed;
  soft findings: {valid.get('duplicates_within_split', '?')} exact duplicates within splits,
  {valid.get('duplicates_across_splits', '?')} val/test images that also occur in train,
  {valid.get('near_blank', '?')} near-blank images (`reports/validation.html`).

## Model and training

- Architecture: `{model_name}` with {params['train']['model'].get(model_name, {})}; {train.get('params', 0):,} parameters.
  Input: raw 0-255 grayscale pixels, shape (48, 48, 1); rescaling is inside the model.
- Optimizer {params['train']['optimizer']}, learning rate {params['train']['learning_rate']} ({params['train']['schedule']}),
  batch {params['train']['batch_size']}, label smoothing {params['train']['label_smoothing']},
  weight decay {params['train']['weight_decay']}; augmentation: {params['preprocess']['augment']}.
- Trained {train.get('epochs_run')} epochs in {train.get('train_seconds', 0) / 60:.1f} min on this machine
  ({train.get('train_images_per_second')} images/s); best val accuracy {_pct(train.get('best_val_accuracy'))} at epoch {train.get('best_epoch')}.

## Per-class results on test (PrivateTest)

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{rows}

## Comparison with baselines measured on this machine

| model | PrivateTest | PublicTest | combined 7,178 |
|---|---|---|---|
{base}
| **this model** | **{_pct(t['accuracy'])}**{f" ({_pct(t['tta_accuracy'])} TTA)" if tta else ''} | {_pct(v['accuracy'])} | {_pct(c.get('accuracy'))} |

The seed's 60.0% was early-stopped on the very test folder it reports, so it is optimistic; the
`fer` model stopped early on PublicTest+PrivateTest, so its figures are optimistic too.

## Registry

{reg}

## Figures

The face grids and the augmentation preview show FER2013 images, which are not ours to
redistribute: they are DVC outputs (`dvc repro` makes them, `dvc pull` fetches them from your
remote), never committed to git.

{figs}

## Reproduce

```bash
./run.sh                      # set-up + dvc pull + dvc repro (this report)
dvc metrics show              # the numbers above
mlflow ui --backend-store-uri sqlite:///mlflow.db   # the run, its curves and artifacts
```
"""


def run_evaluate(data_dir: str, model_path: str, run_info_path: str, params: dict, out: dict[str, str],
                 root: str = ".") -> dict:
    import keras
    import mlflow

    from . import tracking
    from .errors import FerError
    from .preprocess import load_split

    cfg = params["evaluate"]
    if not Path(model_path).exists():
        raise FerError(f"{model_path} not found: run the train stage first (`dvc repro train`)")
    model = keras.models.load_model(model_path)
    splits = {s: load_split(data_dir, s) for s in ("val", "test")}
    metrics, preds = evaluate_model(model, splits, tta=bool(cfg.get("tta")),
                                    shift_px=int(cfg["tta_shift_px"]))

    x, y = splits["test"]
    y_pred = preds["test"].argmax(1)
    cm = confusion(y, y_pred)
    plots.confusion(cm, out["confusion_png"], "test (PrivateTest)")
    write_predictions_csv(out["predictions_csv"], y, y_pred)
    n = int(cfg.get("grid_size", 24))
    conf = preds["test"].max(1)
    for key, correct in (("grid_correct", True), ("grid_wrong", False)):
        idx = pick_examples(y, y_pred, correct, n)
        plots.face_grid(x[idx], y[idx], y_pred[idx], conf[idx], out[key],
                        f"test faces {'classified correctly' if correct else 'misclassified'} (T=true, P=predicted)")
    plots.f1_bars({k: v["f1"] for k, v in metrics["test"]["per_class"].items()}, out["f1_png"],
                  "per-class F1 on test (PrivateTest)")

    flat = {
        **{f"test_{k}": v for k, v in metrics["test"].items() if k != "per_class"},
        **{f"val_{k}": v for k, v in metrics["val"].items() if k != "per_class"},
        **{f"combined_{k}": v for k, v in metrics["combined_test_folder"].items() if k != "images"},
        **{f"test_f1_{k}": v["f1"] for k, v in metrics["test"]["per_class"].items()},
    }
    info = tracking.read_run_info(run_info_path)
    tracking.setup(params["tracking"]["experiment"], root)
    decision = None
    with mlflow.start_run(run_id=info["run_id"]):
        mlflow.log_metrics({k: float(v) for k, v in flat.items()})
        for key in ("confusion_png", "grid_correct", "grid_wrong", "f1_png"):
            mlflow.log_artifact(out[key], "figures")
        mlflow.log_artifact(out["predictions_csv"], "evaluation")
        if cfg.get("register"):
            decision = register_and_decide(info["run_id"], cfg["registered_model"], metrics["test"]["accuracy"])
            mlflow.set_tags({"registry_version": str(decision["version"]),
                             "registry_alias": decision["alias"], "registry_decision": decision["reason"]})
            print(f"registry: {decision['model']} v{decision['version']} -> @{decision['alias']} ({decision['reason']})")

        write_json(out["metrics"], metrics)
        reports = {}
        for key in ("train_metrics", "preprocess_report", "validation_report"):
            p = Path(out[key])
            reports[key] = json.loads(p.read_text()) if p.exists() else {}
        figures = {k: out[k] for k in ("confusion_png", "f1_png", "grid_correct", "grid_wrong", "curves", "preview")}
        write_text(out["model_card"], model_card(metrics, reports["train_metrics"], reports["preprocess_report"],
                                                 reports["validation_report"], decision, params, figures))
        mlflow.log_artifact(out["model_card"], "report")
    t = metrics["test"]
    print(f"test (PrivateTest) accuracy {t['accuracy']:.4f}"
          + (f" ({t['tta_accuracy']:.4f} with {t['tta_views']}-view TTA)" if "tta_accuracy" in t else "")
          + f", macro-F1 {t['macro_f1']:.4f}; val {metrics['val']['accuracy']:.4f}; report {out['model_card']}")
    return {"metrics": metrics, "decision": decision}
