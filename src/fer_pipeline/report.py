"""What the evaluate stage reports: the headline figures (``reports/evaluate/metrics.json``), the model
card (a Jinja2 template, ``templates/model_card.md.j2``) and the examples its face grids show."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .layout import Evaluate
from .render import render


def baselines(path: str | Path) -> list[dict]:
    """The peer baselines measured on this kind of machine (each row says how)."""
    import yaml

    return yaml.safe_load(Path(path).read_text())


def pick_examples(y_true, y_pred, correct: bool, n: int, seed: int = 0) -> np.ndarray:
    idx = np.flatnonzero((y_true == y_pred) == correct)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False)) if len(idx) else idx


def headline(metrics: dict, train: dict, decision: dict | None) -> dict:
    """The figures a person compares across runs, under short names so that ``dvc metrics show``
    and ``dvc exp show`` fit a terminal: ``reports/evaluate/metrics.json``. Details: ``evaluation.json``."""
    t, v = metrics["test"], metrics["val"]
    out = {
        "test_acc": t["accuracy"], "test_lo": t["accuracy_ci95"][0], "test_hi": t["accuracy_ci95"][1],
        "test_tta": t.get("tta_accuracy"), "test_f1": t["macro_f1"],
        "val_acc": v["accuracy"],  # val's TTA figure: evaluation.json (the table must fit 160 columns)
        # the second scoreboard: the FER+ most-voted label (its interval and image count are in
        # evaluation.json's test_ferplus; the training target is params' train.labels)
        "fp_acc": metrics.get("test_ferplus", {}).get("accuracy"),
        "fp_tta": metrics.get("test_ferplus", {}).get("tta_accuracy"),
        "val_fp": metrics.get("val_ferplus", {}).get("accuracy"),
        "p_champ": round(float(decision["p_value"]), 4) if decision and decision.get("p_value") is not None else None,
        "best_ep": train.get("best_epoch"), "minutes": round(train["train_seconds"] / 60, 1) if train else None,
        "tflop": train.get("train_compute_tflop"),  # speed and size: reports/train/metrics.json
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
               params: dict, figures: dict[str, str], model_text: str, peers: list[dict]) -> str:
    """The model card in Markdown; ``figures`` are {file name: path relative to the card}."""
    t = metrics["test"]
    dropped = ", ".join(f"{k.replace('_', ' ')}: {n}" for k, n in prep.get("dropped", {}).items()) or "none"
    rows = prep.get("rows", {})
    return render("model_card.md.j2", metrics=metrics, train=train, valid=valid, decision=decision,
                  model_text=model_text, figures=figures, baselines=peers, dropped=dropped,
                  rows={s: rows.get(s, 0) for s in ("train", "val", "test")},
                  test_images=sum(m["support"] for m in t["per_class"].values()),
                  figures_reliability=figures.get(Evaluate.RELIABILITY, Evaluate.RELIABILITY),
                  tta_shift_px=params["evaluate"]["tta_shift_px"] if "tta_accuracy" in t else 0)
