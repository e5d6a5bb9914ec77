"""What the photo service saw, and whether it drifts from what the model was validated on.

**The record.** Per classified face the service keeps the predicted emotion, its seven
probabilities, the face's size in the photo and the brightness and contrast of the 48x48 crop the
model read (never the image), in a local sqlite file in WAL mode: every request is one committed
transaction, so a killed server leaves a readable file with every completed request. Beyond
``monitor.max_rows`` the oldest rows go. Several worker processes write to the same file. A file
that cannot be opened or written turns recording off with one line; the service still answers and
``/health`` says so.

**Drift** (``fer monitor``). A time window of the record against the reference: the same fields
computed on the validation faces (the model's predictions on PublicTest, and the brightness and
contrast of those 48x48 faces). Each field has one named statistic, the population stability
index (PSI: categories for emotions, the reference's deciles for the numbers), and drifts when it
exceeds ``monitor.psi_threshold``; the two-sample KS test (numbers) or chi-square test (emotions)
is reported beside it with its p-value. Face size has no reference in FER2013 (every face there is
48x48): it is summarised, not judged. scipy and matplotlib do the work (why not Evidently, NannyML
or whylogs: docs/serving.md, "Operating the service").
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FerError
from .labels import LABELS

NUMERIC = ("top_probability", "brightness", "contrast")
FIELDS = ("emotion", *NUMERIC)


def crop_stats(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Brightness (mean) and contrast (standard deviation) per 48x48 face crop, 0-255: the one
    definition that the service's record and the validation reference both use."""
    flat = np.asarray(crops, np.float32).reshape(len(crops), -1)
    return flat.mean(1), flat.std(1)


class FaceRecord:
    """The append-only sqlite record (module docstring)."""

    BUSY_TIMEOUT_S = 10   # how long a worker waits for another's write (or its switch to WAL)

    def __init__(self, path: str | Path, max_rows: int):
        self.path, self.max_rows = str(path), int(max_rows)
        self.error: str | None = None
        self._lock = threading.Lock()
        self._db = None
        deadline = time.monotonic() + self.BUSY_TIMEOUT_S
        while True:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._db = self._open()
                return
            except (sqlite3.Error, OSError) as exc:
                # Workers started together race to switch a new file to WAL: SQLite answers that
                # switch "database is locked" at once, without waiting out the busy timeout.
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc) \
                        and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                self._off(exc)
                return

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.BUSY_TIMEOUT_S, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS faces (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, "
                       "model TEXT, emotion TEXT NOT NULL, top_probability REAL NOT NULL, probabilities TEXT NOT NULL, "
                       "face_width INTEGER, face_height INTEGER, brightness REAL NOT NULL, contrast REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS faces_ts ON faces (ts)")
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    def _off(self, exc: Exception) -> None:
        self.error = f"face record {self.path} is unusable ({exc}); recording is off"
        print(f"warning: {self.error}", file=sys.stderr)
        self._db = None

    @property
    def recording(self) -> bool:
        return self._db is not None

    def add(self, rows: list[dict], model: str) -> None:
        """One transaction for a request's faces; then the oldest rows beyond ``max_rows`` go."""
        if not self.recording or not rows:
            return
        now = time.time()
        values = [(now, model, r["label"], r["score"], json.dumps([r["probabilities"][n] for n in LABELS]),
                   r["box"][2], r["box"][3], r["brightness"], r["contrast"]) for r in rows]
        with self._lock:
            try:
                with self._db:
                    self._db.executemany("INSERT INTO faces (ts, model, emotion, top_probability, probabilities, "
                                         "face_width, face_height, brightness, contrast) VALUES (?,?,?,?,?,?,?,?,?)",
                                         values)
                    self._db.execute("DELETE FROM faces WHERE id <= (SELECT MAX(id) FROM faces) - ?", (self.max_rows,))
            except sqlite3.Error as exc:
                self._off(exc)


def read_window(path: str | Path, since: float | None = None, until: float | None = None):
    """The record's rows in ``[since, until)`` (epoch seconds) as a DataFrame."""
    import pandas as pd

    if not Path(path).exists():
        raise FerError(f"no face record at {path}: start `fer serve` (it records there) or pass --record")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            q, args = "SELECT * FROM faces WHERE ts >= ? AND ts < ?", (since or 0.0, until or 9e18)
            return pd.read_sql_query(q, db, params=args)
    except sqlite3.Error as exc:
        raise FerError(f"{path}: not a readable face record ({exc})") from None


# --- drift ---------------------------------------------------------------------------------


def reference_from_faces(faces: np.ndarray, probs: np.ndarray) -> dict:
    """The reference fields for 48x48 faces (n, 48, 48[, 1]) and the model's probabilities."""
    brightness, contrast = crop_stats(faces)
    return {"emotion": [LABELS[k] for k in probs.argmax(1)], "top_probability": probs.max(1).tolist(),
            "brightness": brightness.tolist(), "contrast": contrast.tolist()}


def psi(ref_share: np.ndarray, cur_share: np.ndarray, eps: float = 1e-4) -> float:
    r, c = np.clip(ref_share, eps, None), np.clip(cur_share, eps, None)
    return float(np.sum((c - r) * np.log(c / r)))


def compare_field(name: str, ref: list, cur: list) -> dict:
    from scipy import stats

    if name == "emotion":
        r = np.array([ref.count(n) for n in LABELS], float)
        c = np.array([list(cur).count(n) for n in LABELS], float)
        rs, cs = r / r.sum(), c / max(c.sum(), 1)
        expected = (rs + 1e-6) / (rs + 1e-6).sum() * c.sum()   # no empty category: chi-square needs > 0
        chi = stats.chisquare(c, expected)
        return {"statistic": "PSI", "value": round(psi(rs, cs), 4), "test": "chi-square",
                "p_value": float(chi.pvalue), "reference": dict(zip(LABELS, rs.round(4).tolist())),
                "current": dict(zip(LABELS, cs.round(4).tolist()))}
    ref_a, cur_a = np.asarray(ref, float), np.asarray(cur, float)
    edges = np.unique(np.quantile(ref_a, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -np.inf, np.inf
    rs = np.histogram(ref_a, edges)[0] / len(ref_a)
    cs = np.histogram(cur_a, edges)[0] / max(len(cur_a), 1)
    ks = stats.ks_2samp(ref_a, cur_a)
    return {"statistic": "PSI", "value": round(psi(rs, cs), 4), "test": "KS", "p_value": float(ks.pvalue),
            "reference_median": round(float(np.median(ref_a)), 3), "current_median": round(float(np.median(cur_a)), 3)}


@dataclass
class DriftReport:
    faces: int
    fields: dict
    drifted: list
    threshold: float
    face_size: dict

    def to_dict(self) -> dict:
        return {"faces": self.faces, "drifted": self.drifted, "psi_threshold": self.threshold,
                "fields": self.fields, "face_size": self.face_size}


def drift(reference: dict, window, psi_threshold: float, min_faces: int) -> DriftReport:
    """Each field of ``window`` (the record's rows) against ``reference`` (``reference_from_faces``)."""
    if len(window) < min_faces:
        raise FerError(f"the window holds {len(window)} faces; drift needs at least {min_faces} "
                       "(monitor.min_faces): widen it with --since")
    current = {"emotion": window["emotion"].tolist(), "top_probability": window["top_probability"].tolist(),
               "brightness": window["brightness"].tolist(), "contrast": window["contrast"].tolist()}
    fields = {f: compare_field(f, reference[f], current[f]) for f in FIELDS}
    for f in fields.values():
        f["drift"] = f["value"] > psi_threshold
    side = np.sqrt(window["face_width"].to_numpy(float) * window["face_height"].to_numpy(float))
    size = {"median_px": round(float(np.median(side)), 1), "p10_px": round(float(np.percentile(side, 10)), 1),
            "p90_px": round(float(np.percentile(side, 90)), 1)}
    return DriftReport(len(window), fields, [f for f in FIELDS if fields[f]["drift"]], psi_threshold, size)


# --- the report and the command ------------------------------------------------------------


def parse_since(text: str, now: float | None = None) -> float:
    """``24h``, ``90m``, ``7d`` ago, or epoch seconds -> epoch seconds."""
    now = time.time() if now is None else now
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip()
    try:
        if t and t[-1] in units:
            return now - float(t[:-1]) * units[t[-1]]
        return float(t)
    except ValueError:
        raise FerError(f"--since {text!r}: expected a duration such as 24h, 90m, 7d, or epoch seconds") from None


def markdown(report: DriftReport, model: str, since: float, until: float) -> str:
    """The report as Markdown (``templates/drift_report.md.j2``)."""
    from .render import render

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))

    return render("drift_report.md.j2", r=report, model=model, since=when(since), until=when(until))


def run_monitor(record: str, model: str | None, data: str, out: str, since: str, cfg: dict,
                log_mlflow: bool = True) -> DriftReport:
    from . import plots
    from .fsutil import load_split, write_json, write_text
    from .predictor import load_predictor

    start, end = parse_since(since), time.time()
    window = read_window(record, start, end)
    predictor = load_predictor(model)
    x, _ = load_split(data, "val")
    reference = reference_from_faces(x, predictor(x))
    report = drift(reference, window, cfg["psi_threshold"], cfg["min_faces"])
    out_dir = Path(out)
    result = {**report.to_dict(), "model": predictor.spec, "since": start, "until": end, "record": str(record)}
    write_json(out_dir / "drift.json", result)
    write_text(out_dir / "drift.md", markdown(report, predictor.spec, start, end))
    plots.publish(plots.drift(reference, window, report.fields, NUMERIC), str(out_dir / "drift.png"))
    if log_mlflow:
        import mlflow

        from .tracking import setup

        setup("monitoring")
        info = predictor.info
        tags = {"stage": "monitor", "model": predictor.spec, "drifted": ",".join(report.drifted) or "none",
                **{f"model_{k}": str(info[k]) for k in ("name", "version", "alias") if info.get(k) is not None}}
        with mlflow.start_run(run_name=f"drift-{time.strftime('%Y%m%d-%H%M', time.gmtime(end))}", tags=tags):
            mlflow.log_metrics({"faces": report.faces, **{f"psi_{k}": v["value"] for k, v in report.fields.items()},
                                **{f"p_{k}": v["p_value"] for k, v in report.fields.items()}})
            mlflow.log_artifacts(str(out_dir), "drift")
    return report


def add_parser(sub) -> None:
    p = sub.add_parser("monitor", help="drift of what fer serve recorded against the validation faces")
    p.add_argument("--record", help="the service's face record (default: monitor.record in params.yaml)")
    p.add_argument("--since", default="24h", help="window start: 24h, 90m, 7d ago, or epoch seconds")
    p.add_argument("--model", help="the model whose validation faces are the reference (as for fer predict)")
    p.add_argument("--data", default="data/processed", help="folder with val.npz (preprocess output)")
    p.add_argument("--out", default="reports/monitor", help="report folder")
    p.add_argument("--no-mlflow", action="store_true")

    def func(args):
        from .params import load

        cfg = load(["monitor"])["monitor"]
        r = run_monitor(args.record or cfg["record"], args.model, args.data, args.out, args.since, cfg,
                        log_mlflow=not args.no_mlflow)
        print(f"{r.faces:,} faces: drifted {', '.join(r.drifted) or 'none'} (PSI > {r.threshold}); "
              + ", ".join(f"{k} {v['value']:.3f}" for k, v in r.fields.items()) + f"; report {args.out}/drift.md")
        if r.drifted:
            sys.exit(3)  # a scheduler can alert on it

    p.set_defaults(func=func)
