"""``fer evaluate-photos DIR``: the model judged on anyone's labelled photos, end to end.

``DIR/<emotion>/`` folders of photos (or face crops) go through exactly the path of ``fer predict``
and the service (decode, detect, crop, classify: ``predict.analyse``). A photo counts right when
its largest face is classified as its folder's emotion; a photo where no face is found counts
wrong (the figure a user sees), and the accuracy on photos with a face is given beside it.

Folder names are matched with common aliases (happiness, anger, sadness, surprised, ...); a folder
for a class the model lacks (contempt) is reported and skipped; any other name stops the command
with one line listing what is allowed. Unreadable files and empty folders are counted and named.

Writes ``<out>/photo_eval.json``, ``<out>/photo_eval.md`` and ``<out>/confusion.png``, and logs an
MLflow run (experiment ``photo-eval``) tagged with the model it evaluated, so that two models
compare on a team's own photos in the UI.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .errors import FerError
from .fsutil import write_json, write_text
from .labels import LABELS

ALIASES: dict[str, str] = {
    **{n: n for n in LABELS},
    "anger": "angry", "angry": "angry", "mad": "angry",
    "disgusted": "disgust", "disgusting": "disgust",
    "afraid": "fear", "fearful": "fear", "scared": "fear",
    "happiness": "happy", "joy": "happy", "smile": "happy", "smiling": "happy",
    "calm": "neutral", "neutrality": "neutral",
    "sadness": "sad", "sorrow": "sad", "unhappy": "sad",
    "surprised": "surprise", "suprise": "surprise", "surprising": "surprise",
}
NOT_MODELLED = {"contempt", "contemptuous"}   # FER+ and AffectNet have it; FER2013 does not
NO_FACE = "no face"


def class_of(folder: str) -> str | None:
    """The canonical class of a folder name; None for a class the model lacks; FerError otherwise."""
    key = folder.strip().lower().replace("-", "_").replace(" ", "_")
    if key in ALIASES:
        return ALIASES[key]
    if key in NOT_MODELLED:
        return None
    raise FerError(f"unknown class folder {folder!r}; allowed (with aliases): {', '.join(LABELS)} "
                   f"({', '.join(sorted(k for k in ALIASES if k not in LABELS))}); skipped: contempt")


def list_photos(root: Path) -> tuple[list[tuple[Path, int]], dict]:
    """``[(file, label id)]`` from ``root/<class>/``, and what was skipped, by reason."""
    from .predict import IMAGE_SUFFIXES
    from .video import VIDEO_SUFFIXES

    if not root.is_dir():
        raise FerError(f"{root} is not a folder: expected {root}/<emotion>/ folders of photos")
    files, skipped = [], {"class_not_modelled": [], "empty_folder": [], "not_an_image_file": []}
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise FerError(f"{root} has no class folders: expected {root}/<emotion>/ (e.g. {root}/happy/)")
    for folder in folders:
        label = class_of(folder.name)
        if label is None:
            skipped["class_not_modelled"].append(folder.name)
            continue
        inside = sorted(p for p in folder.rglob("*") if p.is_file())
        images = [p for p in inside if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES]
        skipped["not_an_image_file"] += [str(p.relative_to(root)) for p in inside if p not in images]
        if not images:
            skipped["empty_folder"].append(folder.name)
        files += [(p, LABELS.index(label)) for p in images]
    if not files:
        raise FerError(f"{root}: no photos in its class folders")
    return files, skipped


def video_answer(path: Path, predictor, detector, settings: dict) -> tuple[int, float | None, int] | None:
    """A video's answer: the dominant emotion of its longest face track (``video``), that track's
    share of it, and the number of tracks; (-1, None, 0) when no face is found; None if unreadable."""
    from .video import analyse_video

    try:
        r = analyse_video(str(path), predictor, detector, settings, progress=False)
    except FerError:
        return None
    if not r["tracks"]:
        return -1, None, 0
    main = max(r["tracks"], key=lambda t: t["samples"])
    return LABELS.index(main["dominant"]), main["dominant_share"], len(r["tracks"])


def evaluate_photos(root: Path, predictor, detector, margin: float, min_confidence: float | None = None,
                    batch: int = 16, progress: bool = True, settings: dict | None = None) -> dict:
    """The evaluation (module docstring) as a dict; ``confusion`` rows are true classes present,
    columns the seven classes then ``no face``. A video in a class folder counts once, by the
    dominant emotion of its longest face track (``settings``: the predict section, for its
    sampling and smoothing; default ``predict.photo_settings()``)."""
    from tqdm import tqdm

    from .predict import analyse, read_image
    from .settings import photo_settings
    from .video import is_video

    settings = settings or photo_settings()
    files, skipped = list_photos(root)
    skipped["unreadable"] = []
    seconds = {"decode": 0.0}
    y_true, y_pred, scores, n_faces = [], [], [], []
    read_whole = 0   # photos whose face is the whole image (detector NAME+whole: none found)
    bar = tqdm(total=len(files), desc="photos", unit="img", disable=not progress)
    for i in range(0, len(files), batch):
        chunk, labels = [], []
        for path, label in files[i:i + batch]:
            if is_video(path):
                got = video_answer(path, predictor, detector, {**settings, "margin": margin,
                                                               "min_confidence": min_confidence})
                if got is None:
                    skipped["unreadable"].append(str(path.relative_to(root)))
                    continue
                y_true.append(label), y_pred.append(got[0]), n_faces.append(got[2])
                if got[1] is not None:
                    scores.append(1.0)   # a video's answer is a majority, never "uncertain"
                continue
            t0 = time.perf_counter()
            gray = read_image(path)
            seconds["decode"] += time.perf_counter() - t0
            if gray is None:
                skipped["unreadable"].append(str(path.relative_to(root)))
                continue
            chunk.append((str(path), gray))
            labels.append(label)
        for res, label in zip(analyse(chunk, predictor, detector, margin, min_confidence=min_confidence,
                                      seconds=seconds), labels):
            y_true.append(label)
            n_faces.append(len(res.faces))
            if res.faces:
                face = max(res.faces, key=lambda f: f["box"][2] * f["box"][3])
                y_pred.append(LABELS.index(face["label"]))
                scores.append(face["score"])
                read_whole += bool(face.get("whole_image"))
            else:
                y_pred.append(-1)
        bar.update(len(files[i:i + batch]))
    bar.close()
    if not y_true:
        raise FerError(f"{root}: none of the photos could be read")
    return scoreboard(root, np.array(y_true), np.array(y_pred), scores, n_faces, read_whole, seconds, skipped,
                      min_confidence)


def scoreboard(root: Path, y: np.ndarray, p: np.ndarray, scores: list, n_faces: list, read_whole: int,
               seconds: dict, skipped: dict, min_confidence: float | None) -> dict:
    """The evaluation of answers ``p`` (-1: no face) against labels ``y``, as ``evaluate_photos`` returns it."""
    from sklearn.metrics import f1_score

    from .metrics import wilson_interval

    found = p >= 0
    right = int((y == p).sum())
    present = sorted(set(y.tolist()))
    lo, hi = wilson_interval(right, len(y))
    flo, fhi = wilson_interval(int((y[found] == p[found]).sum()), int(found.sum()))
    confusion = np.zeros((len(present), len(LABELS) + 1), int)
    for t, q in zip(y, p):
        confusion[present.index(t), q if q >= 0 else len(LABELS)] += 1
    n = len(y)
    return {
        "folder": str(root), "images": n, "faces_found": int(found.sum()),
        "miss_rate": round(1 - float(found.mean()), 4), "read_whole": read_whole,
        "photos_with_several_faces": int(sum(k > 1 for k in n_faces)),
        "accuracy": round(right / n, 4), "accuracy_ci95": [round(lo, 4), round(hi, 4)],
        "accuracy_on_found": round(float((y[found] == p[found]).mean()), 4) if found.any() else None,
        "accuracy_on_found_ci95": [round(flo, 4), round(fhi, 4)],
        # a missed face is its own wrong answer (-1), so it lowers F1 like any other error
        "macro_f1": round(float(f1_score(y, p, labels=present, average="macro", zero_division=0)), 4),
        "recall": {LABELS[c]: round(float((p[y == c] == c).mean()), 4) for c in present},
        "images_per_class": {LABELS[c]: int((y == c).sum()) for c in present},
        "predicted": {**{name: int((p == k).sum()) for k, name in enumerate(LABELS)}, NO_FACE: int((~found).sum())},
        "uncertain": int(sum(s < min_confidence for s in scores)) if min_confidence is not None else None,
        "ms_per_image": {k: round(1000 * v / n, 1) for k, v in seconds.items()},
        "slowest_stage": max(seconds, key=seconds.get),
        "confusion": {"rows": [LABELS[c] for c in present], "columns": [*LABELS, NO_FACE],
                      "counts": confusion.tolist()},
        "skipped": {k: {"count": len(v), "examples": v[:10]} for k, v in skipped.items() if v},
    }


def markdown(report: dict, model: str, detector: str) -> str:
    """The report as Markdown (``templates/photo_eval.md.j2``)."""
    from .render import render

    never = ", ".join(k for k, v in report["predicted"].items() if not v and k != NO_FACE)
    return render("photo_eval.md.j2", r=report, model=model, detector=detector, never=never, no_face=NO_FACE)


def run_evaluate_photos(folder: str, model: str | None, out: str | None, detector: str, margin: float,
                        min_confidence: float, log_mlflow: bool = True) -> dict:
    from . import plots
    from .faces import make_detector
    from .predictor import load_predictor

    root = Path(folder)
    out_dir = Path(out or f"reports/photos/{root.resolve().name}")
    predictor = load_predictor(model)
    report = evaluate_photos(root, predictor, make_detector(detector), margin, min_confidence)
    report.update({"model": predictor.spec, "model_info": predictor.info, "detector": detector})
    write_json(out_dir / "photo_eval.json", report)
    write_text(out_dir / "photo_eval.md", markdown(report, predictor.spec, detector))
    plots.publish(plots.photo_confusion(report), str(out_dir / "confusion.png"))
    if log_mlflow:
        report["mlflow_run"] = log_to_mlflow(report, out_dir, root)
        write_json(out_dir / "photo_eval.json", report)
    return report


def run_photos(params: dict, *, photos: str, model: str, report: str) -> dict:
    """The optional ``photos`` stages (one per entry of ``evaluate.photo_sets``): the pipeline's own
    model on one labelled photo folder, with the ``predict`` settings; ``report``/metrics.json
    holds the headline figures DVC tracks (the rest: photo_eval.json / .md, confusion.png)."""
    s = params["predict"]
    if not Path(photos).is_dir():
        raise FerError(f"{photos} is not a folder: fix evaluate.photo_sets in params.yaml "
                       "(each dir holds <emotion>/ folders of photos)")
    r = run_evaluate_photos(photos, model, report, s["detector"], s["margin"], s["min_confidence"])
    # Few short keys: `dvc metrics show` puts every metrics file's keys in one table (the rest,
    # macro-F1 and counts included, is in photo_eval.json).
    headline = {"photo_acc": r["accuracy"], "photo_lo": r["accuracy_ci95"][0], "photo_hi": r["accuracy_ci95"][1],
                "found": round(1 - r["miss_rate"], 4), "on_found": r["accuracy_on_found"]}
    write_json(Path(report) / "metrics.json", headline)
    print(f"{photos}: {r['images']} photos, faces found in {100 * headline['found']:.1f}%, accuracy "
          f"{100 * r['accuracy']:.1f}% end to end ({100 * (r['accuracy_on_found'] or 0):.1f}% on found faces)")
    return headline


def log_to_mlflow(report: dict, out_dir: Path, root: Path) -> str:
    """An MLflow run in experiment ``photo-eval``, named after the folder, tagged with the model
    (and its registry version and training run when the model came from the registry)."""
    import mlflow

    from .tracking import setup

    setup("photo-eval")
    info = report.get("model_info") or {}
    tags = {"stage": "evaluate-photos", "photo_set": root.resolve().name, "model": str(report["model"]),
            "detector": report["detector"]}
    for key in ("name", "version", "alias"):
        if info.get(key) is not None:
            tags[f"model_{key}"] = str(info[key])
    if info.get("name") and info.get("version"):  # the registry version's training run
        tags["trained_in_run"] = mlflow.MlflowClient().get_model_version(info["name"], info["version"]).run_id
    with mlflow.start_run(run_name=f"photos-{root.resolve().name}", tags=tags) as run:
        mlflow.log_metrics({"photo_accuracy": report["accuracy"], "photo_accuracy_ci95_low": report["accuracy_ci95"][0],
                            "photo_accuracy_ci95_high": report["accuracy_ci95"][1],
                            "photo_miss_rate": report["miss_rate"], "photo_macro_f1": report["macro_f1"],
                            "photo_images": report["images"],
                            **({"photo_accuracy_on_found": report["accuracy_on_found"]}
                               if report["accuracy_on_found"] is not None else {}),
                            **{f"photo_recall_{k}": v for k, v in report["recall"].items()}})
        mlflow.log_artifacts(str(out_dir), "photo_eval")
        return run.info.run_id


def add_parser(sub) -> None:
    from .predict import add_photo_arguments
    from .settings import photo_settings

    p = sub.add_parser("evaluate-photos", help="accuracy on your own labelled photos: DIR/<emotion>/*.jpg")
    p.add_argument("folder", help="a folder of class folders (happy/, sad/, ...; aliases such as happiness work)")
    p.add_argument("--model", help="as for `fer predict` (default: the registry champion, else the workspace's "
                                   "models/model.keras, else the shipped model)")
    p.add_argument("--out", help="report folder (default: reports/photos/<folder name>)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    add_photo_arguments(p)

    def func(args):
        s = photo_settings(args.detector, args.margin, args.min_confidence)
        r = run_evaluate_photos(args.folder, args.model, args.out, s["detector"], s["margin"], s["min_confidence"],
                                log_mlflow=not args.no_mlflow)
        lo, hi = r["accuracy_ci95"]
        whole = f", {r['read_whole']} of them read as the whole image" if r["read_whole"] else ""
        print(f"{r['images']} photos, faces found in {r['faces_found']}{whole} ({100 * r['miss_rate']:.1f}% missed); "
              f"accuracy {100 * r['accuracy']:.1f}% (95% interval {100 * lo:.1f}-{100 * hi:.1f}%) end to end, "
              f"{100 * (r['accuracy_on_found'] or 0):.1f}% on found faces; macro-F1 {r['macro_f1']:.3f}; "
              f"slowest stage {r['slowest_stage']}")

    p.set_defaults(func=func)
