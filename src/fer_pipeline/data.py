"""Ingest: FER2013 in any of its three forms -> one uint8 image array + a manifest table.

Forms, detected from the path:
- the Kaggle zip (``train/<class>/Training_*.jpg``, ``test/<class>/{PublicTest,PrivateTest}_*.jpg``),
- the same layout unpacked as folders,
- the original ``fer2013.csv`` (``emotion,pixels,Usage``).

All three give identical images, labels, splits and hashes for the same faces: rows are sorted
by (split, label, pixel hash, source).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import zipfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .errors import DataError
from .fsutil import atomic_path, write_json
from .labels import FERPLUS_COLUMNS, LABELS, SPLITS, USAGE_TO_SPLIT, csv_id_to_label_id, label_id

SIZE = 48
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}
VOTE_COLUMNS = [f"votes_{c}" for c in FERPLUS_COLUMNS]  # FER+ vote counts; all 0 = no votes
MANIFEST_COLUMNS = [
    "row_id", "split", "usage", "label", "label_name", "source", "pixel_hash",
    "height", "width", "mean", "std", *VOTE_COLUMNS,
]
GET_VOTES_HINT = (
    "get it with `dvc pull` (remote 'shared'), or build it from microsoft/FERPlus's fer2013new.csv "
    "(see README, 'Data')"
)
GET_DATA_HINT = (
    "get it with `dvc pull` (remote 'shared'), or place the Kaggle FER2013 archive at "
    "data/raw/fer2013.zip and run `dvc add data/raw/fer2013.zip` (see README, 'Data')"
)


@dataclass
class Record:
    """One image before decoding: raw bytes (files) or a pixel string (CSV)."""

    source: str
    usage: str
    label: int
    payload: bytes | str


@dataclass
class IngestReport:
    form: str = ""
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> sources
    converted: dict[str, list[str]] = field(default_factory=dict)  # reason -> sources
    empty_class_folders: list[str] = field(default_factory=list)
    ferplus: dict = field(default_factory=dict)  # the join of the FER+ votes (join_votes)

    def skip(self, reason: str, source: str) -> None:
        self.skipped.setdefault(reason, []).append(source)

    def convert(self, reason: str, source: str) -> None:
        self.converted.setdefault(reason, []).append(source)

    def summary(self, examples: int = 10) -> dict:
        return {
            "form": self.form,
            "skipped": {k: {"count": len(v), "examples": v[:examples]} for k, v in self.skipped.items()},
            "skipped_total": sum(len(v) for v in self.skipped.values()),
            "converted": {k: {"count": len(v), "examples": v[:examples]} for k, v in self.converted.items()},
            "converted_total": sum(len(v) for v in self.converted.values()),
            "empty_class_folders": self.empty_class_folders,
            "ferplus": self.ferplus,
        }


# --------------------------------------------------------------------------------------------
# Detecting the form and listing records


def detect_form(path: Path) -> str:
    if not path.exists():
        raise DataError(f"input not found: {path}; {GET_DATA_HINT}")
    if path.is_dir():
        return "folders"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if zipfile.is_zipfile(path):
        return "zip"
    if suffix == ".zip":
        raise DataError(f"{path} is not a valid zip file (truncated or not a zip); {GET_DATA_HINT}")
    raise DataError(f"cannot tell the format of {path}: expected a .zip, a folder or a .csv")


def _usage_from_name(stem: str) -> str | None:
    for usage in USAGE_TO_SPLIT:
        if stem.startswith(usage + "_"):
            return usage
    return None


def _classify_entry(parts: tuple[str, ...], report: IngestReport) -> tuple[str, int] | None:
    """(usage, label) for a layout path ``.../<train|test>/<class>/<file>``; None to skip."""
    name = parts[-1]
    source = "/".join(parts)
    if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
        report.skip("non_image_file", source)
        return None
    try:
        label = label_id(parts[-2])
    except ValueError:
        raise DataError(
            f"unknown class folder {parts[-2]!r} (in {source}); allowed: {', '.join(LABELS)}"
        ) from None
    usage = _usage_from_name(Path(name).stem)
    if usage is None:
        # Files without the usual prefix: the top folder decides (train -> Training).
        top = parts[-3].lower() if len(parts) >= 3 else ""
        if top == "train":
            usage = "Training"
        else:
            report.skip("unknown_split_prefix", source)
            return None
    return usage, label


def _layout_parts(name: str) -> tuple[str, ...] | None:
    """Path components from the ``train``/``test`` folder on, or None if not in the layout."""
    parts = PurePosixPath(name).parts
    for i, part in enumerate(parts):
        if part.lower() in ("train", "test") and len(parts) - i == 3:
            return tuple(parts[i:])
    return None


def _is_unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or (len(name) > 1 and name[1] == ":")


def list_zip(path: Path, report: IngestReport) -> list[Record]:
    records: list[Record] = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                if _is_unsafe(info.filename):
                    # Nothing is ever extracted to disk, but such an entry is suspicious: skip it.
                    report.skip("unsafe_zip_entry", info.filename)
                    continue
                parts = _layout_parts(info.filename)
                if parts is None:
                    if not info.filename.startswith("__MACOSX"):
                        report.skip("outside_layout", info.filename)
                    continue
                got = _classify_entry(parts, report)
                if got:
                    records.append(Record("/".join(parts), got[0], got[1], zf.read(info)))
    except zipfile.BadZipFile as exc:
        raise DataError(f"{path} is not a readable zip file ({exc}); {GET_DATA_HINT}") from None
    return records


def list_folders(root: Path, report: IngestReport) -> list[Record]:
    records: list[Record] = []
    for top in ("train", "test"):
        top_dir = root / top
        if not top_dir.is_dir():
            continue
        for class_dir in sorted(p for p in top_dir.iterdir() if p.is_dir()):
            files = sorted(p for p in class_dir.rglob("*") if p.is_file())
            if not files:
                report.empty_class_folders.append(f"{top}/{class_dir.name}")
            for f in files:
                parts = (top, class_dir.name, f.name)
                got = _classify_entry(parts, report)
                if got:
                    records.append(Record("/".join(parts), got[0], got[1], f.read_bytes()))
    return records


def list_csv(path: Path, report: IngestReport) -> list[Record]:
    records: list[Record] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing CSV column(s) {sorted(missing)}; expected emotion,pixels,Usage")
        for i, row in enumerate(reader, start=2):  # line 1 is the header
            source = f"{path.name}:{i}"
            try:
                label = csv_id_to_label_id(int(row["emotion"]))
            except (ValueError, TypeError):
                report.skip("bad_label", source)
                continue
            usage = (row["Usage"] or "").strip()
            if usage not in USAGE_TO_SPLIT:
                report.skip("bad_usage", source)
                continue
            records.append(Record(source, usage, label, row["pixels"] or ""))
    return records


# --------------------------------------------------------------------------------------------
# Decoding (parallel)


def _decode(payload: bytes | str) -> tuple[np.ndarray | None, str]:
    """-> (48x48 uint8 image or None, status). Status: ok / converted_* / corrupt / bad_pixels."""
    if isinstance(payload, str):
        values = payload.split()
        if len(values) != SIZE * SIZE:
            return None, "bad_pixel_count"
        try:
            arr = np.array([int(v) for v in values], dtype=np.int64)
        except ValueError:
            return None, "non_numeric_pixels"
        if arr.min() < 0 or arr.max() > 255:
            return None, "pixel_out_of_range"
        return arr.astype(np.uint8).reshape(SIZE, SIZE), "ok"
    try:
        with Image.open(io.BytesIO(payload)) as img:
            img.load()
            status = "ok"
            if img.mode != "L":
                img = img.convert("L")
                status = "converted_to_grayscale"
            if img.size != (SIZE, SIZE):
                img = img.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
                status = "converted_resized" if status == "ok" else "converted_grayscale_resized"
            return np.asarray(img, dtype=np.uint8), status
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None, "corrupt_image"


def _decode_chunk(payloads: list) -> list[tuple[np.ndarray | None, str]]:
    return [_decode(p) for p in payloads]


def decode_all(records: list[Record], workers: int = 2, chunk: int = 2000,
               progress: bool = True) -> list[tuple[np.ndarray | None, str]]:
    payloads = [r.payload for r in records]
    chunks = [payloads[i:i + chunk] for i in range(0, len(payloads), chunk)]
    results: list[tuple[np.ndarray | None, str]] = []
    bar = tqdm(total=len(payloads), desc="decode", unit="img", disable=not progress, mininterval=0.5)
    if workers <= 1 or len(chunks) <= 1:
        for c in chunks:
            results.extend(_decode_chunk(c))
            bar.update(len(c))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(_decode_chunk, chunks):
                results.extend(part)
                bar.update(len(part))
    bar.close()
    return results


# --------------------------------------------------------------------------------------------
# Ingest


def pixel_hash(img: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=10).hexdigest()


def _subset(records: list[Record], max_per_class: int, seed: int) -> list[Record]:
    """At most ``max_per_class`` records per (usage, label), chosen reproducibly."""
    if not max_per_class:
        return records
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, int], list[Record]] = {}
    for r in sorted(records, key=lambda r: r.source):
        groups.setdefault((r.usage, r.label), []).append(r)
    out: list[Record] = []
    for key in sorted(groups):
        g = groups[key]
        idx = rng.permutation(len(g))[:max_per_class]
        out.extend(g[i] for i in sorted(idx))
    return out


def read_votes(path: str | os.PathLike) -> pd.DataFrame:
    """The FER+ votes file (``file, fer2013_row, usage`` and the ten vote columns; a row with empty
    votes is an image FER+ published none for) -> a frame with int vote columns (0 where empty)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"FER+ votes file not found: {path}; {GET_VOTES_HINT}")
    try:
        votes = pd.read_csv(path, dtype={"file": str, "usage": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]}); {GET_VOTES_HINT}") from None
    missing = [c for c in ("file", "fer2013_row", "usage", *FERPLUS_COLUMNS) if c not in votes]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected file, fer2013_row, usage, "
                        + ", ".join(FERPLUS_COLUMNS))
    dup = votes["file"].dropna()[votes["file"].dropna().duplicated()]
    if len(dup):
        raise DataError(f"{path}: {len(dup)} file name(s) listed twice (e.g. {dup.iloc[0]}): one row per image")
    counts = votes[list(FERPLUS_COLUMNS)]
    votes["has_votes"] = counts.notna().all(axis=1)
    votes[list(FERPLUS_COLUMNS)] = counts.fillna(0).astype(np.int16)
    return votes


def join_votes(manifest: pd.DataFrame, form: str, votes_path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """Add the FER+ vote columns (``VOTE_COLUMNS``) to every image: by file name for the zip and
    folder forms, by row of ``fer2013.csv`` for the CSV form. An image without votes must be one
    the votes file itself lists without votes (FER+ published none); any other image the file
    does not know, or a split that disagrees, means the file belongs to other data: an error."""
    votes = read_votes(votes_path)
    if form == "csv":
        # source "fer2013.csv:<line>", line 1 the header: 0-based data row = line - 2
        key = manifest["source"].str.rsplit(":", n=1).str[1].astype(np.int64) - 2
        table = votes.dropna(subset=["fer2013_row"]).assign(key=lambda d: d["fer2013_row"].astype(np.int64))
    else:
        key = manifest["source"]
        table = votes.assign(key=votes["file"])
    table = table.drop_duplicates("key").set_index("key")
    found = key.isin(table.index)
    unlisted_allowed = int((~votes["has_votes"]).sum()) if form == "csv" else 0
    if int((~found).sum()) > unlisted_allowed:
        example = manifest.loc[~found, "source"].iloc[0]
        raise DataError(f"{votes_path}: {int((~found).sum())} of {len(manifest)} images have no row in it "
                        f"(e.g. {example}): the votes file does not belong to this archive; {GET_VOTES_HINT}")
    rows = table.reindex(key.to_numpy())
    usage_ok = ~found.to_numpy() | (rows["usage"].to_numpy() == manifest["usage"].to_numpy())
    if not usage_ok.all():
        example = manifest.loc[~usage_ok, "source"].iloc[0]
        raise DataError(f"{votes_path}: {int((~usage_ok).sum())} images are in another split there than in the "
                        f"archive (e.g. {example}): the votes file does not belong to this archive; {GET_VOTES_HINT}")
    out = manifest.copy()
    for col, name in zip(VOTE_COLUMNS, FERPLUS_COLUMNS):
        out[col] = rows[name].fillna(0).to_numpy().astype(np.int16)
    has = rows["has_votes"].fillna(False).to_numpy(bool)
    no_votes = manifest.loc[~has, "source"]
    summary = {"votes_file": str(votes_path), "joined_by": "fer2013_row" if form == "csv" else "file name",
               "with_votes": int(has.sum()),
               "without_votes": {"count": int(len(no_votes)), "examples": no_votes.head(10).tolist(),
                                 "reason": "FER+ published no votes for these images (most: FER+ marks them "
                                           "as not a face)"}}
    return out, summary


def ingest(path: str | os.PathLike, max_per_class: int = 0, seed: int = 0, workers: int = 2,
           progress: bool = True, votes: str | os.PathLike | None = None
           ) -> tuple[np.ndarray, pd.DataFrame, IngestReport]:
    """Read FER2013 from ``path`` (zip, folders or csv) -> (images N x 48 x 48 uint8, manifest, report).
    ``votes``: the FER+ votes file, joined to every image (``join_votes``); None: vote columns all 0."""
    path = Path(path)
    report = IngestReport(form=detect_form(path))
    lister = {"zip": list_zip, "folders": list_folders, "csv": list_csv}[report.form]
    records = _subset(lister(path, report), max_per_class, seed)

    present = {USAGE_TO_SPLIT[r.usage] for r in records}
    missing = [s for s in SPLITS if s not in present]
    if missing:
        usage_of = {v: k for k, v in USAGE_TO_SPLIT.items()}
        raise DataError(
            f"{path}: missing split(s) {', '.join(f'{s} ({usage_of[s]})' for s in missing)}; "
            "expected Training, PublicTest and PrivateTest images"
        )

    decoded = decode_all(records, workers=workers, progress=progress)
    images, rows = [], []
    for rec, (img, status) in zip(records, decoded):
        if img is None:
            report.skip(status, rec.source)
            continue
        if status != "ok":
            report.convert(status, rec.source)
        images.append(img)
        rows.append((USAGE_TO_SPLIT[rec.usage], rec.usage, rec.label, LABELS[rec.label], rec.source,
                     pixel_hash(img)))
    if not images:
        raise DataError(f"{path}: no readable images found")

    arr = np.stack(images)
    df = pd.DataFrame(rows, columns=["split", "usage", "label", "label_name", "source", "pixel_hash"])
    df["height"], df["width"] = arr.shape[1], arr.shape[2]
    flat = arr.reshape(len(arr), -1).astype(np.float32)
    df["mean"] = flat.mean(axis=1)
    df["std"] = flat.std(axis=1)
    df["_split_order"] = df["split"].map({s: i for i, s in enumerate(SPLITS)})
    order = df.sort_values(["_split_order", "label", "pixel_hash", "source"], kind="stable").index.to_numpy()
    df = df.loc[order].drop(columns="_split_order").reset_index(drop=True)
    df.insert(0, "row_id", np.arange(len(df), dtype=np.int64))
    if votes is not None:
        df, report.ferplus = join_votes(df, report.form, votes)
    else:
        for col in VOTE_COLUMNS:
            df[col] = np.int16(0)
    return arr[order], df[MANIFEST_COLUMNS], report


def save_arrays(images: np.ndarray, manifest: pd.DataFrame, out_dir: str | os.PathLike) -> None:
    out = Path(out_dir)
    with atomic_path(out / "images.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, images)
    with atomic_path(out / "manifest.parquet") as tmp:
        manifest.to_parquet(tmp, index=False)


def load_arrays(in_dir: str | os.PathLike) -> tuple[np.ndarray, pd.DataFrame]:
    d = Path(in_dir)
    if not (d / "images.npy").exists():
        raise DataError(f"{d}/images.npy not found: run the ingest stage first (`dvc repro ingest`)")
    return np.load(d / "images.npy"), pd.read_parquet(d / "manifest.parquet")


def split_counts(manifest: pd.DataFrame) -> dict:
    """{'train': {'total': n, 'angry': k, ...}, ...} in canonical order."""
    out = {}
    for split in SPLITS:
        sub = manifest[manifest["split"] == split]
        counts = sub["label_name"].value_counts()
        out[split] = {"total": int(len(sub)), **{name: int(counts.get(name, 0)) for name in LABELS}}
    return out


def ingest_to(input_path: str, out_dir: str, report_path: str, max_per_class: int = 0,
              seed: int = 0, workers: int = 2, votes: str | None = None) -> dict:
    """Ingest ``input_path`` (and the ``votes``) into ``out_dir`` and write the report; the summary."""
    images, manifest, report = ingest(input_path, max_per_class=max_per_class, seed=seed, workers=workers,
                                      votes=votes)
    save_arrays(images, manifest, out_dir)
    summary = {"images": int(len(images)), "counts": split_counts(manifest), **report.summary()}
    write_json(report_path, summary)
    return summary


def run_ingest(params: dict, *, interim: str, reports: str) -> dict:
    """The ingest stage: the archive (``ingest.input``) and the FER+ votes (``ingest.votes``) ->
    ``interim`` arrays and ``reports``/summary.json; the folders come from dvc.yaml's ``cmd``."""
    from .layout import Ingest

    p = params["ingest"]
    s = ingest_to(p["input"], interim, str(Path(reports) / Ingest.SUMMARY), max_per_class=p["max_per_class"],
                  seed=p["seed"], workers=p["workers"], votes=p["votes"])
    print(f"ingested {s['images']:,} images ({s['form']}): "
          + ", ".join(f"{k} {v['total']:,}" for k, v in s["counts"].items())
          + f"; skipped {s['skipped_total']}, converted {s['converted_total']}; FER+ votes for "
          + f"{s['ferplus']['with_votes']:,} ({s['ferplus']['without_votes']['count']} without)")
    return s


__all__: Iterable[str] = [
    "ingest", "ingest_to", "run_ingest", "save_arrays", "load_arrays", "split_counts", "detect_form", "pixel_hash",
]
