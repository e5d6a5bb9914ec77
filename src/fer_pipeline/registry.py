"""The MLflow model registry: register an evaluated model, and move ``@champion`` to it only when
the promotion rule (``promotion``) says it beats the current champion on val; the champion's stored
predictions are what it is compared with."""

from __future__ import annotations

import json
from pathlib import Path

from .labels import LABELS
from .promotion import TARGET_COLUMN, decide_from_csv, first_model


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
                        min_gain_points: float, target: str = "fer2013") -> dict:
    """Register the model logged by ``run_id`` (whose evaluation, with ``candidate`` predictions,
    is stored in the same run); move ``@champion`` to it only if the rule (module docstring) says it beats
    the current champion on val, else give it ``@challenger``. Idempotent per run: evaluating the
    same run again reuses its version and its recorded decision, comparisons included (tag
    ``decision_record``), so a rerun of the evaluate stage writes the same report."""
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
        # decision_record is absent on versions registered before it: their comparisons are unknown
        record = json.loads(v.tags.get("decision_record") or '{"previous_champion": null, "val": null, "test": null}')
        p_tag = v.tags.get("decision_p_value")
        return {"model": model_name, "version": int(v.version), "alias": alias,
                "reason": v.tags.get("decision", f"run already registered as v{v.version}"),
                "rule": v.tags.get("decision_rule", ""),
                "p_value": record["val"]["p_value"] if record["val"] else float(p_tag) if p_tag else None,
                **record}
    try:
        champ = client.get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        champ = None
    if champ is None:
        decision = first_model(alpha, min_gain_points, "first registered version: no champion yet",
                               TARGET_COLUMN[target])
    else:
        stored = stored_predictions(champ.run_id)
        champion_target = client.get_run(champ.run_id).data.params.get("train.labels", "fer2013")
        decision = decide_from_csv(candidate, stored, list(LABELS), alpha, min_gain_points, target, champion_target)
        decision.reason = f"{decision.reason} (champion v{champ.version})"
    version = mlflow.register_model(logged_model_uri(run_id), model_name).version
    alias = "champion" if decision.promote else "challenger"
    client.set_registered_model_alias(model_name, alias, version)
    p_value = decision.val["p_value"] if decision.val else None
    record = {"previous_champion": int(champ.version) if champ is not None else None,
              "val": decision.val, "test": decision.test}
    for key, value in {"decision": decision.reason, "decision_rule": decision.rule,
                       "decision_p_value": "" if p_value is None else f"{p_value:.6g}",
                       "decision_record": json.dumps(record)}.items():
        client.set_model_version_tag(model_name, version, key, value)
    return {"model": model_name, "version": int(version), "alias": alias, "reason": decision.reason,
            "rule": decision.rule, "p_value": p_value, **record}


