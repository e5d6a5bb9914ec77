"""The evaluate stage in three steps, each a function a test can call alone:

- ``score``: test (PrivateTest) and val (PublicTest) accuracy, plain and with TTA, on both
  scoreboards (FER2013's labels and the FER+ most-voted label), with intervals and calibration;
- ``publish``: the predictions CSVs, the figures (through ``plots``) and the reports (headline
  metrics, details, the model card through its template) in the stage's folder;
- ``register``: the promotion rule against the registry's champion (``registry``).

``run_evaluate`` loads the inputs, runs the three and logs them to the training run in MLflow."""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import plots
from .calibration import calibrate
from .fsutil import write_json, write_text
from .layout import Evaluate, Preprocess, Train, Validate
from .metrics import confusion, evaluate_model, ferplus_scoreboard, with_interval
from .promotion import TARGET_COLUMN, TARGET_TEXT, write_predictions_csv
from .report import baselines as peer_baselines
from .report import describe_model, headline, model_card, pick_examples

SPLITS = ("val", "test")


def score(model, splits: dict, majority: dict, target: str, cfg: dict) -> tuple[dict, dict]:
    """(results, predictions) of ``model`` on ``splits`` ({split: (x, y)}); ``majority`` is each
    split's FER+ most-voted label (-1 where none), ``target`` the labels it trained on (``train.labels``)
    and ``cfg`` the ``evaluate`` params. Calibration is fitted and judged on val against those labels."""
    results, preds = evaluate_model(model, splits, tta=bool(cfg["tta"]), shift_px=int(cfg["tta_shift_px"]))
    for s, (_, y) in splits.items():
        results[s] = with_interval(results[s], y, preds[s].argmax(1))
        results[f"{s}_ferplus"] = ferplus_scoreboard(majority[s], preds[s], preds.get(f"{s}_tta"))

    def against_target(split: str) -> tuple:
        if target == "fer2013":
            return preds[split], splits[split][1]
        has = majority[split] >= 0
        return preds[split][has], majority[split][has]

    results["calibration"] = calibrate(against_target("val"), against_target("test"), int(cfg["calibration_bins"]),
                                       float(cfg["calibration_min_ece_gain"]))
    results["calibration"]["labels"] = TARGET_TEXT[TARGET_COLUMN[target]]
    results["target"] = {"labels": target, "promotion_judged_against": TARGET_TEXT[TARGET_COLUMN[target]]}
    return results, preds


def flat_metrics(results: dict) -> dict[str, float]:
    """The results under MLflow's flat names (``test_accuracy``, ``eval_val_accuracy``, ...)."""
    cal, skip = results["calibration"], ("per_class", "accuracy_ci95")
    return {
        **{f"test_{k}": v for k, v in results["test"].items() if k not in skip},
        # "eval_val_": the plain "val_accuracy" is training's per-epoch curve in the same run
        **{f"eval_val_{k}": v for k, v in results["val"].items() if k not in skip},
        "test_accuracy_ci95_low": results["test"]["accuracy_ci95"][0],
        "test_accuracy_ci95_high": results["test"]["accuracy_ci95"][1],
        **{f"combined_{k}": v for k, v in results["combined_test_folder"].items() if k != "images"},
        **{f"test_f1_{k}": v["f1"] for k, v in results["test"]["per_class"].items()},
        **{f"{s}_ferplus_{k}": v for s in SPLITS for k, v in results[f"{s}_ferplus"].items() if k != "accuracy_ci95"},
        "test_ferplus_accuracy_ci95_low": results["test_ferplus"]["accuracy_ci95"][0],
        "test_ferplus_accuracy_ci95_high": results["test_ferplus"]["accuracy_ci95"][1],
        **{f"{s}_{k}": cal[s][k] for s in SPLITS for k in ("ece", "ece_scaled")},
        "calibration_temperature": cal["temperature"],
    }


def publish_figures(results: dict, preds: dict, splits: dict, majority: dict, out: Path, faces: Path,
                    grid_size: int) -> None:
    """The predictions CSVs and the figures: confusion, per-class F1 and reliability in ``out``, the
    face grids (FER2013 images) in ``faces``."""
    for s in SPLITS:
        name = Evaluate.TEST_PREDICTIONS if s == "test" else Evaluate.VAL_PREDICTIONS
        write_predictions_csv(out / name, splits[s][1], preds[s].argmax(1), majority[s])
    x, y = splits["test"]
    y_pred, conf = preds["test"].argmax(1), preds["test"].max(1)
    plots.publish(plots.confusion(confusion(y, y_pred), "test (PrivateTest)"), out / Evaluate.CONFUSION)
    for name, correct in ((Evaluate.GRID_CORRECT, True), (Evaluate.GRID_WRONG, False)):
        idx = pick_examples(y, y_pred, correct, grid_size)
        what = "classified correctly" if correct else "misclassified"
        plots.publish(plots.face_grid(x[idx], y[idx], y_pred[idx], conf[idx],
                                      f"test faces {what} (T=true, P=predicted)"), faces / name)
    plots.publish(plots.f1_bars({k: v["f1"] for k, v in results["test"]["per_class"].items()},
                                "per-class F1 on test (PrivateTest)"), out / Evaluate.F1)
    cal = results["calibration"]
    plots.publish(plots.reliability(cal["test_bins"], cal["test_bins_scaled"], cal["temperature"],
                                    f"test (PrivateTest): ECE {cal['test']['ece']:.3f}"), out / Evaluate.RELIABILITY)


def publish_reports(results: dict, decision: dict | None, params: dict, keras_model, out: Path,
                    inputs: dict[str, Path], figures: dict[str, Path], peers: list[dict]) -> None:
    """``out``/evaluation.json (every figure), metrics.json (the headline) and model_card.md;
    ``inputs`` are the train, preprocess and validate folders, ``figures`` what the card shows."""
    files = {"train": inputs["train"] / Train.METRICS, "preprocess": inputs["preprocess"] / Preprocess.SUMMARY,
             "validation": inputs["validate"] / Validate.METRICS}
    reports = {k: json.loads(p.read_text()) if p.exists() else {} for k, p in files.items()}
    write_json(out / Evaluate.DETAILS, {**results, "registry": decision})
    write_json(out / Evaluate.METRICS, headline(results, reports["train"], decision))
    shown = {k: os.path.relpath(p, out) for k, p in figures.items()}
    write_text(out / Evaluate.CARD, model_card(results, reports["train"], reports["preprocess"],
                                               reports["validation"], decision, params, shown,
                                               describe_model(keras_model), peers))


def register(run_id: str, out: Path, cfg: dict, target: str) -> dict:
    """The promotion rule on val against the champion's stored predictions, the new registry
    version and its alias (``registry.register_and_decide``), tagged on the run."""
    import mlflow

    from .registry import register_and_decide

    candidate = {"val": (out / Evaluate.VAL_PREDICTIONS).read_text(),
                 "test": (out / Evaluate.TEST_PREDICTIONS).read_text()}
    decision = register_and_decide(run_id, cfg["registered_model"], candidate, cfg["promote_alpha"],
                                   cfg["promote_min_gain_points"], target)
    mlflow.set_tags({"registry_version": str(decision["version"]), "registry_alias": decision["alias"],
                     "registry_decision": decision["reason"][:500]})
    if decision["p_value"] is not None:
        mlflow.log_metric("val_p_vs_champion", float(decision["p_value"]))
    print(f"registry: {decision['model']} v{decision['version']} -> @{decision['alias']} ({decision['reason']})")
    return decision


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


def load_inputs(model: str, data: str) -> tuple:
    """The model, {split: (x, y)} and {split: FER+ most-voted label} for val and test."""
    import keras

    from .errors import FerError
    from .fsutil import load_split, load_votes
    from .targets import most_voted

    if not Path(model).exists():
        raise FerError(f"{model} not found: run the train stage first (`dvc repro train`)")
    splits = {s: load_split(data, s) for s in SPLITS}
    majority = {}
    for s in SPLITS:
        votes = load_votes(data, s)
        if votes is None:
            raise FerError(f"{data}/{s}.npz has no FER+ votes: rerun `dvc repro` (ingest joins them)")
        majority[s] = most_voted(votes)
    return keras.models.load_model(model), splits, majority


def run_evaluate(params: dict, *, data: str, model: str, run_info: str, train: str, preprocess: str,
                 validate: str, baselines: str, train_faces: str, reports: str, faces: str,
                 root: str = ".") -> dict:
    """The evaluate stage; the folders come from dvc.yaml's ``cmd`` (``train_faces`` holds train's
    augmentation preview, only linked from the model card)."""
    import mlflow

    from . import tracking

    cfg, target = params["evaluate"], params["train"]["labels"]
    out, face_dir = Path(reports), Path(faces)
    keras_model, splits, majority = load_inputs(model, data)
    results, preds = score(keras_model, splits, majority, target, cfg)
    info = tracking.read_run_info(run_info)
    tracking.setup(params["tracking"]["experiment"], root)
    run_id, same_run = evaluation_run(info["run_id"], params["tracking"]["experiment"], root)
    with mlflow.start_run(run_id=run_id):
        if not same_run:
            # The trained outputs came from elsewhere (a DVC remote): this store gets the model too.
            tracking.log_model(keras_model)
            print(f"MLflow: training run {info['run_id']} is not in {tracking.tracking_uri(root)}; "
                  f"evaluation logged to new run {run_id} (tag trained_in_run)")
        mlflow.log_metrics({k: float(v) for k, v in flat_metrics(results).items()})
        publish_figures(results, preds, splits, majority, out, face_dir, int(cfg["grid_size"]))  # logged too
        for name in (Evaluate.TEST_PREDICTIONS, Evaluate.VAL_PREDICTIONS):
            mlflow.log_artifact(str(out / name), "evaluation")   # registry.PREDICTION_ARTIFACTS
        decision = register(run_id, out, cfg, target) if cfg["register"] else None
        figures = {name: out / name for name in (Evaluate.CONFUSION, Evaluate.F1, Evaluate.RELIABILITY)}
        figures.update({name: face_dir / name for name in (Evaluate.GRID_CORRECT, Evaluate.GRID_WRONG)})
        figures.update({Train.CURVES: Path(train) / Train.CURVES, Train.PREVIEW: Path(train_faces) / Train.PREVIEW})
        publish_reports(results, decision, params, keras_model, out,
                        {"train": Path(train), "preprocess": Path(preprocess), "validate": Path(validate)},
                        figures, peer_baselines(baselines))
        for name in (Evaluate.CARD, Evaluate.DETAILS):
            mlflow.log_artifact(str(out / name), "report")
    print(summary_line(results, target, out / Evaluate.CARD))
    return {"metrics": results, "decision": decision}


def summary_line(results: dict, target: str, card: Path) -> str:
    t, f = results["test"], results["test_ferplus"]
    return (f"test (PrivateTest) accuracy {t['accuracy']:.4f} (95% CI {t['accuracy_ci95'][0]:.4f}-"
            f"{t['accuracy_ci95'][1]:.4f})"
            + (f", {t['tta_accuracy']:.4f} with {t['tta_views']}-view TTA" if "tta_accuracy" in t else "")
            + f", macro-F1 {t['macro_f1']:.4f}; against the FER+ most-voted label {f['accuracy']:.4f} "
            f"({f['accuracy_ci95'][0]:.4f}-{f['accuracy_ci95'][1]:.4f}, {f['images']:,} images)"
            + (f", {f['tta_accuracy']:.4f} with TTA" if "tta_accuracy" in f else "")
            + f"; test ECE {results['calibration']['test']['ece']:.3f}"
            + f"; val {results['val']['accuracy']:.4f} (FER+ {results['val_ferplus']['accuracy']:.4f}); "
            f"trained on {target}; report {card}")
