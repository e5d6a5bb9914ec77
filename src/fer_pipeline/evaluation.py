"""The evaluate stage: test (PrivateTest) and val (PublicTest) metrics with intervals and TTA,
figures, the registry decision and the model card, logged to the training run in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

from . import plots
from .calibration import calibrate
from .fsutil import write_json, write_text
from .metrics import confusion, evaluate_model, ferplus_scoreboard, with_interval
from .promotion import write_predictions_csv
from .registry import register_and_decide
from .report import baselines as peer_baselines
from .report import describe_model, headline, model_card, pick_examples


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


def run_evaluate(params: dict, *, data: str, model: str, run_info: str, train_metrics: str,
                 preprocess_report: str, validation_report: str, curves: str, preview: str, metrics: str,
                 details: str, test_predictions: str, val_predictions: str, confusion_png: str,
                 grid_correct: str, grid_wrong: str, f1_png: str, reliability_png: str, model_card_md: str,
                 baselines: str, root: str = ".") -> dict:
    """The evaluate stage; every path comes from dvc.yaml's ``cmd`` (``curves`` and ``preview``, made
    by train, are only linked from the model card)."""
    import keras
    import mlflow

    from . import tracking
    from .errors import FerError
    from .fsutil import load_split, load_votes
    from .promotion import TARGET_COLUMN, TARGET_TEXT
    from .targets import most_voted

    cfg = params["evaluate"]
    target = params["train"]["labels"]
    if not Path(model).exists():
        raise FerError(f"{model} not found: run the train stage first (`dvc repro train`)")
    keras_model = keras.models.load_model(model)
    splits = {s: load_split(data, s) for s in ("val", "test")}
    results, preds = evaluate_model(keras_model, splits, tta=bool(cfg["tta"]), shift_px=int(cfg["tta_shift_px"]))
    labels_pred = {s: preds[s].argmax(1) for s in splits}
    for s, (_, y) in splits.items():
        results[s] = with_interval(results[s], y, labels_pred[s])
    # The second scoreboard: the FER+ most-voted label, on the images that have one.
    majority = {}
    for s in splits:
        votes = load_votes(data, s)
        if votes is None:
            raise FerError(f"{data}/{s}.npz has no FER+ votes: rerun `dvc repro` (ingest joins them)")
        majority[s] = most_voted(votes)
        results[f"{s}_ferplus"] = ferplus_scoreboard(majority[s], preds[s], preds.get(f"{s}_tta"))
    # Calibration of the plain predictions (what the service gives), fitted and judged on val,
    # against the labels the model trained on (FER+ targets: the most-voted label, where one exists).
    def against_target(split: str) -> tuple:
        if target == "fer2013":
            return preds[split], splits[split][1]
        has = majority[split] >= 0
        return preds[split][has], majority[split][has]

    results["calibration"] = calibrate(against_target("val"), against_target("test"), int(cfg["calibration_bins"]),
                                       float(cfg["calibration_min_ece_gain"]))
    results["calibration"]["labels"] = TARGET_TEXT[TARGET_COLUMN[target]]
    results["target"] = {"labels": target, "promotion_judged_against": TARGET_TEXT[TARGET_COLUMN[target]]}
    x, y = splits["test"]
    y_pred = labels_pred["test"]
    write_predictions_csv(test_predictions, y, y_pred, majority["test"])
    write_predictions_csv(val_predictions, splits["val"][1], labels_pred["val"], majority["val"])
    flat = {
        **{f"test_{k}": v for k, v in results["test"].items() if k not in ("per_class", "accuracy_ci95")},
        # "eval_val_": the plain "val_accuracy" is training's per-epoch curve in the same run
        **{f"eval_val_{k}": v for k, v in results["val"].items() if k not in ("per_class", "accuracy_ci95")},
        "test_accuracy_ci95_low": results["test"]["accuracy_ci95"][0],
        "test_accuracy_ci95_high": results["test"]["accuracy_ci95"][1],
        **{f"combined_{k}": v for k, v in results["combined_test_folder"].items() if k != "images"},
        **{f"test_f1_{k}": v["f1"] for k, v in results["test"]["per_class"].items()},
        **{f"{s}_ferplus_{k}": v for s in splits for k, v in results[f"{s}_ferplus"].items()
           if k != "accuracy_ci95"},
        "test_ferplus_accuracy_ci95_low": results["test_ferplus"]["accuracy_ci95"][0],
        "test_ferplus_accuracy_ci95_high": results["test_ferplus"]["accuracy_ci95"][1],
        **{f"{s}_{k}": results["calibration"][s][k] for s in splits for k in ("ece", "ece_scaled")},
        "calibration_temperature": results["calibration"]["temperature"],
    }
    reports = {name: json.loads(Path(p).read_text()) if Path(p).exists() else {}
               for name, p in (("train", train_metrics), ("preprocess", preprocess_report),
                               ("validation", validation_report))}

    info = tracking.read_run_info(run_info)
    experiment = params["tracking"]["experiment"]
    tracking.setup(experiment, root)
    run_id, same_run = evaluation_run(info["run_id"], experiment, root)
    decision = None
    with mlflow.start_run(run_id=run_id):
        if not same_run:
            # The trained outputs came from elsewhere (a DVC remote): this store gets the model too.
            tracking.log_model(keras_model)
            print(f"MLflow: training run {info['run_id']} is not in {tracking.tracking_uri(root)}; "
                  f"evaluation logged to new run {run_id} (tag trained_in_run)")
        mlflow.log_metrics({k: float(v) for k, v in flat.items()})
        # Figures: written (DVC outputs) and logged to the run under figures/.
        plots.publish(plots.confusion(confusion(y, y_pred), "test (PrivateTest)"), confusion_png)
        conf = preds["test"].max(1)
        for path, correct in ((grid_correct, True), (grid_wrong, False)):
            idx = pick_examples(y, y_pred, correct, int(cfg["grid_size"]))
            what = "classified correctly" if correct else "misclassified"
            plots.publish(plots.face_grid(x[idx], y[idx], y_pred[idx], conf[idx],
                                          f"test faces {what} (T=true, P=predicted)"), path)
        plots.publish(plots.f1_bars({k: v["f1"] for k, v in results["test"]["per_class"].items()},
                                    "per-class F1 on test (PrivateTest)"), f1_png)
        cal = results["calibration"]
        plots.publish(plots.reliability(cal["test_bins"], cal["test_bins_scaled"], cal["temperature"],
                                        f"test (PrivateTest): ECE {cal['test']['ece']:.3f}"), reliability_png)
        for path in (test_predictions, val_predictions):
            mlflow.log_artifact(path, "evaluation")
        if cfg["register"]:
            candidate = {"val": Path(val_predictions).read_text(), "test": Path(test_predictions).read_text()}
            decision = register_and_decide(run_id, cfg["registered_model"], candidate,
                                           cfg["promote_alpha"], cfg["promote_min_gain_points"], target)
            mlflow.set_tags({"registry_version": str(decision["version"]), "registry_alias": decision["alias"],
                             "registry_decision": decision["reason"][:500]})
            if decision["p_value"] is not None:
                mlflow.log_metric("val_p_vs_champion", float(decision["p_value"]))
            print(f"registry: {decision['model']} v{decision['version']} -> @{decision['alias']} "
                  f"({decision['reason']})")

        write_json(details, {**results, "registry": decision})
        write_json(metrics, headline(results, reports["train"], decision))
        figures = {"confusion_png": confusion_png, "f1_png": f1_png, "reliability_png": reliability_png,
                   "grid_correct": grid_correct,
                   "grid_wrong": grid_wrong, "curves": curves, "preview": preview}
        write_text(model_card_md, model_card(results, reports["train"], reports["preprocess"],
                                             reports["validation"], decision, params, figures,
                                             describe_model(keras_model), peer_baselines(baselines)))
        mlflow.log_artifact(model_card_md, "report")
        mlflow.log_artifact(details, "report")
    t, f = results["test"], results["test_ferplus"]
    print(f"test (PrivateTest) accuracy {t['accuracy']:.4f} (95% CI {t['accuracy_ci95'][0]:.4f}-"
          f"{t['accuracy_ci95'][1]:.4f})"
          + (f", {t['tta_accuracy']:.4f} with {t['tta_views']}-view TTA" if "tta_accuracy" in t else "")
          + f", macro-F1 {t['macro_f1']:.4f}; against the FER+ most-voted label {f['accuracy']:.4f} "
          f"({f['accuracy_ci95'][0]:.4f}-{f['accuracy_ci95'][1]:.4f}, {f['images']:,} images)"
          + (f", {f['tta_accuracy']:.4f} with TTA" if "tta_accuracy" in f else "")
          + f"; test ECE {results['calibration']['test']['ece']:.3f}"
          + f"; val {results['val']['accuracy']:.4f} (FER+ {results['val_ferplus']['accuracy']:.4f}); "
          f"trained on {target}; report {model_card_md}")
    return {"metrics": results, "decision": decision}
