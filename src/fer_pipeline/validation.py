"""Validate: Great Expectations 1.x checks on the manifest and pixels, plus soft findings.

Hard expectations (any failure stops the pipeline): required columns, no nulls, labels in the
canonical set, all three splits present, 48x48 images, rows per split and class shares within
the configured bounds, pixel statistics within range.

The FER+ votes joined by ingest: every voted image has as many votes as there were taggers, and
few images have none. Reported per split: how often FER2013's label is the FER+ most-voted one.

Soft findings (counted and reported, never fatal): exact duplicates within a split, train
images that also occur in val or test (leakage), near-blank images.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import MANIFEST_COLUMNS, VOTE_COLUMNS, split_counts
from .errors import ValidationFailed
from .fsutil import write_json, write_text
from .labels import LABELS, SPLITS

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@dataclass
class Check:
    name: str
    success: bool
    detail: str


def _gx_run(frames: dict[str, tuple[pd.DataFrame, list]]) -> list[Check]:
    """Validate each named dataframe against its expectations in an ephemeral GX context."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    try:  # no "Calculating Metrics" bars: the stage prints its own summary
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except ImportError:  # pragma: no cover - older/newer GX layouts
        pass
    source = context.data_sources.add_pandas("fer2013")
    checks: list[Check] = []
    for name, (frame, expectations) in frames.items():
        asset = source.add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(f"{name}_all").get_batch(
            batch_parameters={"dataframe": frame})
        suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite", expectations=expectations))
        result = batch.validate(suite, result_format="SUMMARY")
        for r in result.results:
            cfg = r.expectation_config
            kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "condition_parser")}
            if kwargs.get("row_condition") is not None:
                kwargs["row_condition"] = _condition_text(kwargs["row_condition"])
            observed = r.result.get("observed_value")
            unexpected = r.result.get("unexpected_count")
            detail = ", ".join(f"{k}={v}" for k, v in kwargs.items())
            if not r.success and observed is None and not unexpected:
                detail += f"; result {_short(r.result)}"
            if observed is not None:
                detail += f"; observed {_short(observed)}"
            if unexpected:
                detail += f"; {unexpected} unexpected, e.g. {_short(r.result.get('partial_unexpected_list', [])[:5])}"
            checks.append(Check(f"{name}: {cfg.type}", bool(r.success), detail))
    return checks


def _condition_text(cond) -> str:
    """'split == test' from a GX condition (object or its serialised dict)."""
    if isinstance(cond, dict):
        col = cond.get("column", {})
        col = col.get("name", col) if isinstance(col, dict) else col
        if "operator" in cond:
            return f"{col} {cond['operator']} {cond.get('parameter')}"
        return str(cond.get("pass_through_filter", cond))
    return str(cond)


def _short(value, limit: int = 120) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _manifest_expectations(manifest: pd.DataFrame, cfg: dict) -> list:
    """The manifest table: columns, no nulls, label and split sets, 48x48, pixel statistics."""
    import great_expectations.expectations as E

    manifest_exp = [E.ExpectTableColumnsToMatchSet(column_set=MANIFEST_COLUMNS, exact_match=False)]
    manifest_exp += [E.ExpectColumnValuesToNotBeNull(column=c) for c in MANIFEST_COLUMNS if c in manifest]
    manifest_exp += [
        E.ExpectColumnValuesToBeInSet(column="label_name", value_set=list(LABELS)),
        E.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=len(LABELS) - 1),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        E.ExpectColumnDistinctValuesToContainSet(column="split", value_set=list(SPLITS)),
        E.ExpectColumnValuesToBeUnique(column="row_id"),
        E.ExpectColumnValuesToBeBetween(column="height", min_value=48, max_value=48),
        E.ExpectColumnValuesToBeBetween(column="width", min_value=48, max_value=48),
        E.ExpectColumnValuesToBeBetween(column="mean", min_value=0, max_value=255),
        E.ExpectColumnMeanToBeBetween(column="mean", min_value=cfg["pixel_mean_range"][0],
                                      max_value=cfg["pixel_mean_range"][1]),
        E.ExpectColumnMeanToBeBetween(column="std", min_value=cfg["pixel_std_range"][0],
                                      max_value=cfg["pixel_std_range"][1]),
    ]
    return manifest_exp


def hard_expectations(manifest: pd.DataFrame, images: np.ndarray, cfg: dict) -> list[Check]:
    import great_expectations.expectations as E
    from great_expectations.expectations.row_conditions import Column

    # 1. Manifest table.
    manifest_exp = _manifest_expectations(manifest, cfg)
    # 2. The pixel array itself (shape, dtype, row count consistent with the manifest).
    arrays = pd.DataFrame([{
        "ndim": images.ndim, "height": images.shape[1] if images.ndim == 3 else -1,
        "width": images.shape[2] if images.ndim == 3 else -1, "dtype": str(images.dtype),
        "rows": len(images), "manifest_rows": len(manifest),
    }])
    array_exp = [
        E.ExpectColumnValuesToBeBetween(column="ndim", min_value=3, max_value=3),
        E.ExpectColumnValuesToBeBetween(column="height", min_value=48, max_value=48),
        E.ExpectColumnValuesToBeBetween(column="width", min_value=48, max_value=48),
        E.ExpectColumnValuesToBeInSet(column="dtype", value_set=["uint8"]),
        E.ExpectColumnPairValuesToBeEqual(column_A="rows", column_B="manifest_rows"),
    ]
    # 3. Rows per split and class shares, one row per split / (split, class).
    counts = split_counts(manifest)
    per_split = pd.DataFrame([{"split": s, "rows": counts[s]["total"]} for s in SPLITS])
    split_exp = [
        E.ExpectColumnValuesToBeBetween(column="rows", min_value=lo, max_value=hi,
                                        row_condition=Column("split") == s)
        for s, (lo, hi) in cfg["split_rows"].items()
    ]
    shares = pd.DataFrame([
        {"split": s, "label_name": n, "share": counts[s][n] / max(counts[s]["total"], 1)}
        for s in SPLITS for n in LABELS
    ])
    lo, hi = cfg["class_share_range"]
    share_exp = [E.ExpectColumnValuesToBeBetween(column="share", min_value=lo, max_value=hi)]
    # 4. The FER+ votes joined by ingest: each voted image has as many votes as taggers; few have none.
    vote_sum = manifest[VOTE_COLUMNS].sum(axis=1)
    voted = pd.DataFrame({"source": manifest["source"], "vote_sum": vote_sum})[vote_sum > 0]
    vlo, vhi = cfg["ferplus_votes_per_image"]
    votes_exp = [E.ExpectColumnValuesToBeBetween(column="vote_sum", min_value=vlo, max_value=vhi)]
    without = pd.DataFrame([{"share_without_votes": float((vote_sum == 0).mean())}])
    without_exp = [E.ExpectColumnValuesToBeBetween(column="share_without_votes", min_value=0.0,
                                                   max_value=cfg["ferplus_max_without_votes"])]
    return _gx_run({
        "manifest": (manifest, manifest_exp),
        "pixel_array": (arrays, array_exp),
        "split_rows": (per_split, split_exp),
        "class_shares": (shares, share_exp),
        "ferplus_votes": (voted, votes_exp),
        "ferplus_join": (without, without_exp),
    })


def ferplus_agreement(manifest: pd.DataFrame) -> dict:
    """Per split: images with FER+ votes, with a most-voted emotion, and how often FER2013's label
    is that emotion (the label noise the FER+ scoreboard removes)."""
    from .targets import most_voted

    out = {}
    for s in SPLITS:
        sub = manifest[manifest["split"] == s]
        votes = sub[VOTE_COLUMNS].to_numpy()
        majority = most_voted(votes)
        has = majority >= 0
        agree = int((majority[has] == sub["label"].to_numpy()[has]).sum())
        out[s] = {"images": int(len(sub)), "with_votes": int((votes.sum(axis=1) > 0).sum()),
                  "with_most_voted": int(has.sum()),
                  "fer2013_agrees_with_most_voted": round(agree / max(int(has.sum()), 1), 4)}
    return out


def soft_findings(manifest: pd.DataFrame, cfg: dict, examples: int = 5) -> dict:
    findings: dict[str, dict] = {}
    within = manifest[manifest.duplicated(["split", "pixel_hash"], keep="first")]
    findings["duplicates_within_split"] = {
        "count": int(len(within)),
        "by_split": {s: int((within["split"] == s).sum()) for s in SPLITS},
        "examples": within["source"].head(examples).tolist(),
    }
    train_hashes = set(manifest.loc[manifest["split"] == "train", "pixel_hash"])
    cross = {}
    for s in ("val", "test"):
        hit = manifest[(manifest["split"] == s) & manifest["pixel_hash"].isin(train_hashes)]
        cross[s] = hit
    findings["duplicates_across_splits"] = {
        "count": int(sum(len(h) for h in cross.values())),
        "by_split": {s: int(len(h)) for s, h in cross.items()},
        "examples": pd.concat(cross.values())["source"].head(examples).tolist(),
        "note": "val/test images whose exact pixels also occur in train (leakage)",
    }
    blank = manifest[manifest["std"] < cfg["near_blank_std"]]
    findings["near_blank"] = {
        "count": int(len(blank)),
        "by_split": {s: int((blank["split"] == s).sum()) for s in SPLITS},
        "examples": blank["source"].head(examples).tolist(),
        "threshold_std": cfg["near_blank_std"],
    }
    return findings


def validate(images: np.ndarray, manifest: pd.DataFrame, cfg: dict,
             ingest_summary: dict | None = None) -> dict:
    checks = hard_expectations(manifest, images, cfg)
    failed = [c for c in checks if not c.success]
    return {
        "success": not failed,
        "expectations": len(checks),
        "failed": len(failed),
        "counts": split_counts(manifest),
        "soft": soft_findings(manifest, cfg),
        "ferplus": ferplus_agreement(manifest),
        "ingest": ingest_summary or {},
        "checks": [c.__dict__ for c in checks],
    }


def failure_line(summary: dict) -> str:
    bad = [c for c in summary["checks"] if not c["success"]]
    parts = "; ".join(f"{c['name']} ({c['detail']})" for c in bad[:3])
    more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"validation failed: {len(bad)} of {summary['expectations']} expectations: {parts}{more}"


def render_html(summary: dict) -> str:
    """The human-readable report (``templates/validation.html.j2``). GX Data Docs would need a file
    context and show only the expectations, not the counts, soft findings and ingest skips."""
    from .render import render

    ing = summary.get("ingest", {})
    return render("validation.html.j2", summary=summary, labels=LABELS, splits=SPLITS, count_keys=["total", *LABELS],
                  ingest_issues={**ing.get("skipped", {}), **ing.get("converted", {})})


def validate_to(images: np.ndarray, manifest: pd.DataFrame, cfg: dict, ingest_summary: dict,
                metrics_path: str, details_path: str, html_path: str) -> dict:
    """Validate, write the reports, raise ValidationFailed (one line) on hard failures.

    ``metrics_path`` gets a small DVC metrics file, ``details_path`` every check and finding,
    ``html_path`` the human-readable report.
    """
    summary = validate(images, manifest, cfg, ingest_summary)
    metrics = {
        "success": summary["success"], "expectations": summary["expectations"], "failed": summary["failed"],
        "rows": {s: summary["counts"][s]["total"] for s in SPLITS},
        "duplicates_within_split": summary["soft"]["duplicates_within_split"]["count"],
        "duplicates_across_splits": summary["soft"]["duplicates_across_splits"]["count"],
        "near_blank": summary["soft"]["near_blank"]["count"],
        "ingest_skipped": ingest_summary.get("skipped_total", 0),
        "ingest_converted": ingest_summary.get("converted_total", 0),
        "ferplus_agreement": {s: v["fer2013_agrees_with_most_voted"] for s, v in summary["ferplus"].items()},
    }
    write_json(metrics_path, metrics)
    write_json(details_path, summary)
    write_text(html_path, render_html(summary))
    if not summary["success"]:
        raise ValidationFailed(failure_line(summary))
    return summary


def run_validate(params: dict, *, interim: str, ingest: str, reports: str) -> dict:
    """The validate stage (folders: dvc.yaml's ``cmd``): ``reports``/metrics.json, details.json and
    validation.html; hard failures exit non-zero with one line."""
    import json
    from pathlib import Path

    from .data import load_arrays
    from .layout import Ingest, Validate

    images, manifest = load_arrays(interim)
    ingest_summary = json.loads((Path(ingest) / Ingest.SUMMARY).read_text())
    out = Path(reports)
    html = str(out / Validate.PAGE)
    s = validate_to(images, manifest, params["validate"], ingest_summary, str(out / Validate.METRICS),
                    str(out / Validate.DETAILS), html)
    soft = s["soft"]
    print(f"validation passed: {s['expectations']} expectations; soft findings: "
          f"{soft['duplicates_within_split']['count']} duplicates within splits, "
          f"{soft['duplicates_across_splits']['count']} val/test images also in train, "
          f"{soft['near_blank']['count']} near-blank; FER2013 label = FER+ most-voted on "
          + ", ".join(f"{k} {v['fer2013_agrees_with_most_voted']:.1%}" for k, v in s["ferplus"].items())
          + f" ({html})")
    return s
