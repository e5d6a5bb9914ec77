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
# Model registry: champion / challenger, decided by ``promotion``'s rule


def logged_model_uri(run_id: str) -> str:
    """``models:/m-...`` of the model the run logged (MLflow 3 logged models), else ``runs:/``."""
    import mlflow

    run = mlflow.get_run(run_id)
    found = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                        filter_string=f"source_run_id = '{run_id}'", output_format="list")
    return f"models:/{found[0].model_id}" if found else f"runs:/{run_id}/model"


PREDICTION_ARTIFACTS = {"val": "evaluation/val_predictions.csv", "test": "evaluation/test_predictions.csv"}


def stored_predictions(run_id: str) -> dict[str, str]:
    """The val / test prediction CSVs an evaluate run stored with MLflow (empty if none)."""
    import mlflow

    out = {}
    for split, path in PREDICTION_ARTIFACTS.items():
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)
        except Exception:  # noqa: BLE001  (MLflow raises several types for a missing artifact)
            continue
        out[split] = Path(local).read_text()
    return out


def register_and_decide(run_id: str, model_name: str, candidate: dict[str, str], alpha: float,
                        min_gain_points: float) -> dict:
    """Register the model logged by ``run_id`` (whose evaluation, with ``candidate`` predictions,
    is stored in the same run); move ``@champion`` to it only if ``promotion``'s rule says it beats
    the current champion on val, else give it ``@challenger``. Idempotent per run: evaluating the
    same run again reuses its version and its recorded decision."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from . import promotion
    from .labels import LABELS

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
                "rule": v.tags.get("decision_rule", ""),
                "p_value": float(v.tags["decision_p_value"]) if v.tags.get("decision_p_value") else None,
                "previous_champion": None, "val": None, "test": None}
    try:
        champ = client.get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        champ = None
    if champ is None:
        decision = promotion.first_model(alpha, min_gain_points, "first registered version: no champion yet")
    else:
        stored = stored_predictions(champ.run_id)
        decision = promotion.decide_from_csv(candidate, stored, list(LABELS), alpha, min_gain_points)
        decision.reason = f"{decision.reason} (champion v{champ.version})"
    version = mlflow.register_model(logged_model_uri(run_id), model_name).version
    alias = "champion" if decision.promote else "challenger"
    client.set_registered_model_alias(model_name, alias, version)
    p_value = decision.val["p_value"] if decision.val else None
    for key, value in {"decision": decision.reason, "decision_rule": decision.rule,
                       "decision_p_value": "" if p_value is None else f"{p_value:.6g}"}.items():
        client.set_model_version_tag(model_name, version, key, value)
    return {"model": model_name, "version": int(version), "alias": alias, "reason": decision.reason,
            "rule": decision.rule, "p_value": p_value,
            "previous_champion": int(champ.version) if champ is not None else None,
            "val": decision.val, "test": decision.test}


def evaluation_run(run_id: str, experiment: str, root: str = ".") -> tuple[str, bool]:
    """The MLflow run evaluate logs to, and whether it is the training run itself.

    The training run's id comes from ``models/mlflow_run.json``. When the current store has that
    run, evaluate adds to it. When it does not (the trained outputs came from a DVC remote or
    another machine's store), a new run records the evaluation, linked to the original by the tag
    ``trained_in_run``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from .tracking import ci_tags, git_info, run_name

    client = mlflow.MlflowClient()
    try:
        client.get_run(run_id)
        return run_id, True
    except MlflowException:
        pass
    run = client.create_run(client.get_experiment_by_name(experiment).experiment_id,
                            run_name=f"{run_name(root)}-eval",
                            tags={"trained_in_run": run_id, "stage": "evaluate", **git_info(root), **ci_tags()})
    return run.info.run_id, False


# --------------------------------------------------------------------------------------------
# The stage


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def with_interval(m: dict, y: np.ndarray, y_pred: np.ndarray) -> dict:
    """Add the 95% Wilson interval of the accuracy to a split's metrics."""
    from .promotion import wilson_interval

    lo, hi = wilson_interval(int(np.sum(y == y_pred)), int(len(y)))
    return {**m, "accuracy_ci95": [round(lo, 4), round(hi, 4)]}


def headline(metrics: dict, train: dict, decision: dict | None) -> dict:
    """The figures a person compares across runs, under short names so that ``dvc metrics show``
    and ``dvc exp show`` fit a terminal: ``reports/metrics.json``. Details: ``evaluation.json``."""
    t, v = metrics["test"], metrics["val"]
    out = {
        "test_acc": t["accuracy"], "test_lo": t["accuracy_ci95"][0], "test_hi": t["accuracy_ci95"][1],
        "test_tta": t.get("tta_accuracy"), "test_f1": t["macro_f1"],
        "val_acc": v["accuracy"], "val_tta": v.get("tta_accuracy"),
        "p_champ": round(float(decision["p_value"]), 4) if decision and decision.get("p_value") is not None else None,
        "best_ep": train.get("best_epoch"), "minutes": round(train["train_seconds"] / 60, 1) if train else None,
        "img_s": train.get("train_images_per_second"), "params": train.get("params"),
        "tflop": train.get("train_compute_tflop"),
    }
    return {k: val for k, val in out.items() if val is not None}


def describe_model(model) -> str:
    """The training set-up as the saved model records it (architecture, optimizer, loss)."""
    parts = [f"`{model.name}`"]
    opt = getattr(model, "optimizer", None)
    if opt is not None:
        cfg = opt.get_config()
        lr = cfg.get("learning_rate")
        if isinstance(lr, dict):
            c = lr["config"]
            peak = c.get("warmup_target") or c.get("initial_learning_rate")
            lr_text = (f"{lr['class_name']} learning rate, peak {peak}"
                       + (f" after {c['warmup_steps']} warm-up steps" if c.get("warmup_steps") else ""))
        else:
            lr_text = f"learning rate {lr}"
        extra = [f"weight decay {cfg['weight_decay']}"] if cfg.get("weight_decay") else []
        if cfg.get("use_ema"):
            extra.append(f"weight EMA {cfg.get('ema_momentum')}")
        parts.append(f"optimizer {type(opt).__name__} ({', '.join([lr_text, *extra])})")
    loss = getattr(model, "loss", None)
    if loss is not None and hasattr(loss, "get_config"):
        ls = loss.get_config().get("label_smoothing")
        if ls:
            parts.append(f"label smoothing {ls}")
    crop = [layer for layer in model.layers if layer.name == "center_crop"]
    if crop:
        parts.append(f"trained on random {crop[0].height}x{crop[0].width} crops, evaluated on the centre crop")
    return "; ".join(parts)


def model_card(metrics: dict, train: dict, prep: dict, valid: dict, decision: dict | None,
               params: dict, figures: dict[str, str], model_text: str) -> str:
    t, v = metrics["test"], metrics["val"]
    c = metrics.get("combined_test_folder", {})
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
    if decision:
        reg = (f"Registered as `{decision['model']}` version {decision['version']}, alias "
               f"`{decision['alias']}`: {decision['reason']}.\n\nRule: {decision['rule']}.")
        for split in ("val", "test"):
            comp = decision.get(split)
            if comp:
                role = "decides" if split == "val" else "reported only, never decides"
                reg += (f"\n\n- {split} ({role}): {100 * comp['candidate_accuracy']:.2f}% vs champion "
                        f"{100 * comp['champion_accuracy']:.2f}% ({comp['gain_points']:+.2f} pt), "
                        f"{comp['b_candidate_only']} images right only here, {comp['c_champion_only']} only "
                        f"for the champion, McNemar exact p = {comp['p_value']:.3g}")
    else:
        reg = "Registry step disabled."
    figs = "\n".join(f"![{k}]({Path(p).relative_to('reports') if p.startswith('reports/') else p})"
                     for k, p in figures.items())
    lo, hi = t["accuracy_ci95"]
    return f"""# Model card: FER2013 emotion classifier

Generated by `dvc repro` (stage `evaluate`); every number below comes from the files in
`reports/` that this pipeline wrote. Reproduce with `./run.sh` (see README).

## Headline

| split | accuracy | 95% interval | macro-F1 | weighted-F1 |{tta_head}
|---|---|---|---|---|{'---|' if tta else ''}
| **test = PrivateTest** ({sum(m['support'] for m in t['per_class'].values()):,} images) | **{_pct(t['accuracy'])}** | {_pct(lo)}-{_pct(hi)} | {t['macro_f1']:.3f} | {t['weighted_f1']:.3f} |{f" {_pct(t['tta_accuracy'])} |" if tta else ''}
| val = PublicTest (model choice) | {_pct(v['accuracy'])} | {_pct(v['accuracy_ci95'][0])}-{_pct(v['accuracy_ci95'][1])} | {v['macro_f1']:.3f} | {v['weighted_f1']:.3f} |{f" {_pct(v['tta_accuracy'])} |" if tta else ''}
| combined Kaggle test folder ({c.get('images', 0):,}) | {_pct(c.get('accuracy'))} | - | - | - |{f" {_pct(c.get('tta_accuracy'))} |" if tta else ''}
{tta_note if tta else ''}
The interval is the 95% Wilson score interval of the accuracy on that many images: two models
whose figures differ by less than its half-width are not shown to differ by this one number
(see Registry for the paired test that decides).

## Data and protocol

- Source: FER2013, Kaggle folder layout (`data/raw/fer2013.zip`, tracked by DVC).
- Train = Training ({prep.get('rows', {}).get('train', '?'):,} images after cleaning), validation
  = PublicTest ({prep.get('rows', {}).get('val', '?'):,}; early stopping, checkpoint choice and promotion),
  test = PrivateTest ({prep.get('rows', {}).get('test', '?'):,}; reported here, never used for a choice).
- Dropped from train: {dropped}. Val and test are the official sets, untouched.
- Data validation: {valid.get('expectations', '?')} Great Expectations checks, {valid.get('failed', '?')} failed;
  soft findings: {valid.get('duplicates_within_split', '?')} exact duplicates within splits,
  {valid.get('duplicates_across_splits', '?')} val/test images that also occur in train,
  {valid.get('near_blank', '?')} near-blank images (`reports/validation.html`).

## Model and training

- Model: {model_text}; {train.get('params', 0):,} parameters. Input: raw 0-255 grayscale pixels,
  shape (48, 48, 1); rescaling is inside the model. Full configuration: `params.yaml` (`train`,
  `preprocess.augment`) at the commit of this card, and the MLflow run's parameters.
- Trained {train.get('epochs_run')} epochs in {train.get('train_seconds', 0) / 60:.1f} min on the machine that trained it
  ({train.get('train_images_per_second')} images/s in training steps, {train.get('epoch_seconds')} s per epoch with validation);
  {train.get('train_gflop_per_image')} GFLOP per training image, {train.get('train_compute_tflop')} TFLOP in all;
  best val accuracy {_pct(train.get('best_val_accuracy'))} at epoch {train.get('best_epoch')}.

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
dvc metrics show              # the headline numbers
mlflow ui --backend-store-uri sqlite:///mlflow.db   # the run, its curves and artifacts
```
"""


def run_evaluate(data_dir: str, model_path: str, run_info_path: str, params: dict, out: dict[str, str],
                 root: str = ".") -> dict:
    import keras
    import mlflow

    from . import tracking
    from .errors import FerError
    from .fsutil import load_split

    cfg = params["evaluate"]
    if not Path(model_path).exists():
        raise FerError(f"{model_path} not found: run the train stage first (`dvc repro train`)")
    model = keras.models.load_model(model_path)
    splits = {s: load_split(data_dir, s) for s in ("val", "test")}
    metrics, preds = evaluate_model(model, splits, tta=bool(cfg["tta"]), shift_px=int(cfg["tta_shift_px"]))
    labels_pred = {s: preds[s].argmax(1) for s in splits}
    for s, (_, y) in splits.items():
        metrics[s] = with_interval(metrics[s], y, labels_pred[s])

    x, y = splits["test"]
    y_pred = labels_pred["test"]
    plots.confusion(confusion(y, y_pred), out["confusion_png"], "test (PrivateTest)")
    write_predictions_csv(out["predictions_csv"], y, y_pred)
    write_predictions_csv(out["val_predictions_csv"], splits["val"][1], labels_pred["val"])
    n = int(cfg["grid_size"])
    conf = preds["test"].max(1)
    for key, correct in (("grid_correct", True), ("grid_wrong", False)):
        idx = pick_examples(y, y_pred, correct, n)
        plots.face_grid(x[idx], y[idx], y_pred[idx], conf[idx], out[key],
                        f"test faces {'classified correctly' if correct else 'misclassified'} (T=true, P=predicted)")
    plots.f1_bars({k: v["f1"] for k, v in metrics["test"]["per_class"].items()}, out["f1_png"],
                  "per-class F1 on test (PrivateTest)")

    flat = {
        **{f"test_{k}": v for k, v in metrics["test"].items() if k not in ("per_class", "accuracy_ci95")},
        # "eval_val_": the plain "val_accuracy" is training's per-epoch curve in the same run
        **{f"eval_val_{k}": v for k, v in metrics["val"].items() if k not in ("per_class", "accuracy_ci95")},
        "test_accuracy_ci95_low": metrics["test"]["accuracy_ci95"][0],
        "test_accuracy_ci95_high": metrics["test"]["accuracy_ci95"][1],
        **{f"combined_{k}": v for k, v in metrics["combined_test_folder"].items() if k != "images"},
        **{f"test_f1_{k}": v["f1"] for k, v in metrics["test"]["per_class"].items()},
    }
    reports = {}
    for key in ("train_metrics", "preprocess_report", "validation_report"):
        p = Path(out[key])
        reports[key] = json.loads(p.read_text()) if p.exists() else {}

    info = tracking.read_run_info(run_info_path)
    experiment = params["tracking"]["experiment"]
    tracking.setup(experiment, root)
    run_id, same_run = evaluation_run(info["run_id"], experiment, root)
    decision = None
    with mlflow.start_run(run_id=run_id):
        if not same_run:
            # The trained outputs came from elsewhere (a DVC remote): this store gets the model too.
            tracking.log_model(model)
            print(f"MLflow: training run {info['run_id']} is not in {tracking.tracking_uri(root)}; "
                  f"evaluation logged to new run {run_id} (tag trained_in_run)")
        mlflow.log_metrics({k: float(v) for k, v in flat.items()})
        for key in ("confusion_png", "grid_correct", "grid_wrong", "f1_png"):
            mlflow.log_artifact(out[key], "figures")
        for key in ("predictions_csv", "val_predictions_csv"):
            mlflow.log_artifact(out[key], "evaluation")
        if cfg["register"]:
            candidate = {"val": Path(out["val_predictions_csv"]).read_text(),
                         "test": Path(out["predictions_csv"]).read_text()}
            decision = register_and_decide(run_id, cfg["registered_model"], candidate,
                                           cfg["promote_alpha"], cfg["promote_min_gain_points"])
            mlflow.set_tags({"registry_version": str(decision["version"]), "registry_alias": decision["alias"],
                             "registry_decision": decision["reason"][:500]})
            if decision["p_value"] is not None:
                mlflow.log_metric("val_p_vs_champion", float(decision["p_value"]))
            print(f"registry: {decision['model']} v{decision['version']} -> @{decision['alias']} "
                  f"({decision['reason']})")

        write_json(out["details"], {**metrics, "registry": decision})
        write_json(out["metrics"], headline(metrics, reports["train_metrics"], decision))
        figures = {k: out[k] for k in ("confusion_png", "f1_png", "grid_correct", "grid_wrong", "curves", "preview")}
        write_text(out["model_card"], model_card(metrics, reports["train_metrics"], reports["preprocess_report"],
                                                 reports["validation_report"], decision, params, figures,
                                                 describe_model(model)))
        mlflow.log_artifact(out["model_card"], "report")
        mlflow.log_artifact(out["details"], "report")
    t = metrics["test"]
    print(f"test (PrivateTest) accuracy {t['accuracy']:.4f} (95% CI {t['accuracy_ci95'][0]:.4f}-"
          f"{t['accuracy_ci95'][1]:.4f})"
          + (f", {t['tta_accuracy']:.4f} with {t['tta_views']}-view TTA" if "tta_accuracy" in t else "")
          + f", macro-F1 {t['macro_f1']:.4f}; val {metrics['val']['accuracy']:.4f}; report {out['model_card']}")
    return {"metrics": metrics, "decision": decision}
