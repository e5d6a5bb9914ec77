"""The schema of ``params.yaml``: one strict model per section, checked before a stage does any work.

Defaults live in ``params.yaml`` only: every field here is required, so a value missing from the
file is an error, not a silent fallback. An unknown key (a typo), a wrong type or an out-of-range
value stops the stage with one line naming the key path and what is allowed.

A stage asks for the sections it reads (``STAGE_PARAMS``, the same list as its ``params:`` in
``dvc.yaml``; a test holds the two equal) and gets only those: reading any other section is a
``KeyError``, so a stage cannot depend on a parameter DVC does not track for it.
"""

from __future__ import annotations

import difflib
import os
import warnings
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from .errors import FerError

# The params each stage reads: dotted section paths, exactly the stage's `params:` in dvc.yaml.
STAGE_PARAMS: dict[str, list[str]] = {
    "ingest": ["ingest"],
    "validate": ["validate"],
    "preprocess": ["preprocess.drop_cross_split_duplicates", "preprocess.drop_train_duplicates",
                   "preprocess.drop_near_blank", "preprocess.near_blank_std", "preprocess.class_weights"],
    "train": ["preprocess.augment", "train", "tracking"],
    # every evaluate key but photo_sets, which only the photos stages read (through their cmd)
    "evaluate": [f"evaluate.{k}" for k in ("tta", "tta_shift_px", "grid_size", "register", "registered_model",
                                           "promote_alpha", "promote_min_gain_points", "calibration_bins",
                                           "calibration_min_ece_gain")] + ["train.labels", "tracking"],
    "export": ["export"],
    "photos": ["predict"],
}

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# Section names `validate` and `register` are also BaseModel attributes; as fields they are fine.
warnings.filterwarnings("ignore", message=r'Field name "(validate|register)" .* shadows', category=UserWarning)


def _ordered(pair: list) -> list:
    if pair[0] > pair[1]:
        raise ValueError("expected [low, high] with low <= high")
    return pair


Pair = Annotated[list[float], Field(min_length=2, max_length=2), AfterValidator(_ordered)]
IntPair = Annotated[list[NonNegInt], Field(min_length=2, max_length=2), AfterValidator(_ordered)]


class Ingest(Section):
    input: Annotated[str, Field(min_length=1)]
    votes: Annotated[str, Field(min_length=1)]
    max_per_class: NonNegInt
    seed: int
    workers: PosInt


class SplitRows(Section):
    train: IntPair
    val: IntPair
    test: IntPair


class Validate(Section):
    split_rows: SplitRows
    class_share_range: Annotated[list[Fraction], Field(min_length=2, max_length=2), AfterValidator(_ordered)]
    pixel_mean_range: Pair
    pixel_std_range: Pair
    near_blank_std: Annotated[float, Field(ge=0)]
    ferplus_votes_per_image: IntPair
    ferplus_max_without_votes: Fraction


class Augment(Section):
    enabled: bool
    flip: bool
    rotation: Annotated[float, Field(ge=0, le=0.5)]
    translation: Annotated[float, Field(ge=0, le=0.5)]
    zoom: Annotated[float, Field(ge=0, lt=1)]
    erasing_prob: Fraction
    erasing_max_area: Annotated[float, Field(gt=0.02, le=1)]
    mixup_alpha: Annotated[float, Field(ge=0)]
    low_res_prob: Fraction
    low_res_min_side: Annotated[int, Field(ge=8, le=44)]


class Preprocess(Section):
    drop_cross_split_duplicates: bool
    drop_train_duplicates: bool
    drop_near_blank: bool
    near_blank_std: Annotated[float, Field(ge=0)]
    class_weights: Literal["none", "balanced", "sqrt"]
    augment: Augment


Widths = Annotated[list[PosInt], Field(min_length=1)]
Dropout = Annotated[float, Field(ge=0, lt=1)]


class BnVgg(Section):
    widths: Widths
    convs_per_stage: PosInt
    dropout: Dropout
    dense: NonNegInt


class MiniXception(Section):
    widths: Widths
    stem: PosInt
    dropout: Dropout
    dense: NonNegInt


class Vgg16(Section):
    dense: PosInt
    dropout: Dropout


class ModelChoice(Section):
    name: Literal["bn_vgg", "mini_xception", "vgg16"]
    bn_vgg: BnVgg
    mini_xception: MiniXception
    vgg16: Vgg16


class Progressive(Section):
    epochs: NonNegInt
    size: Annotated[int, Field(ge=16, le=47)]


class Train(Section):
    labels: Literal["fer2013", "ferplus_majority", "ferplus_soft", "fused"]   # labels.TARGETS
    fused_votes: Annotated[float, Field(ge=0, le=100)]
    model: ModelChoice
    epochs: PosInt
    batch_size: PosInt
    crop_size: Annotated[int, Field(ge=24, le=48)]
    optimizer: Literal["adamw", "adam", "sgd"]
    learning_rate: Annotated[float, Field(gt=0, le=10)]
    schedule: Literal["cosine", "constant"]
    warmup_epochs: Annotated[float, Field(ge=0)]
    min_lr_ratio: Fraction
    weight_decay: Annotated[float, Field(ge=0)]
    ema: Annotated[float, Field(ge=0, lt=1)]
    label_smoothing: Annotated[float, Field(ge=0, lt=1)]
    patience: NonNegInt
    seed: int
    deterministic: bool
    distribute: Literal["none", "mirrored", "data_parallel", "multi_process"]   # distribute.py
    distribute_timeout_s: Annotated[int, Field(ge=5, le=3600)]
    progressive: Progressive

    @model_validator(mode="after")
    def _progressive_fits(self):
        if self.progressive.epochs and self.progressive.epochs >= self.epochs:
            raise ValueError(f"progressive.epochs ({self.progressive.epochs}) must be below epochs ({self.epochs}): "
                             "the last epochs train at full size")
        if self.progressive.epochs and self.crop_size < 48:
            raise ValueError(f"progressive resizing scales whole faces: set crop_size 48 (got {self.crop_size}) "
                             "or progressive.epochs 0")
        return self


class PhotoSet(Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]   # reports/photos/<name>/
    dir: Annotated[str, Field(min_length=1)]                    # <dir>/<emotion>/*.jpg (fer evaluate-photos)


class Evaluate(Section):
    tta: bool
    tta_shift_px: Annotated[int, Field(ge=0, le=8)]
    grid_size: PosInt
    register: bool
    registered_model: Annotated[str, Field(min_length=1)]
    promote_alpha: Annotated[float, Field(gt=0, lt=1)]
    promote_min_gain_points: Annotated[float, Field(ge=0, le=100)]
    calibration_bins: Annotated[int, Field(ge=2, le=100)]
    calibration_min_ece_gain: Annotated[float, Field(ge=0, le=1)]
    photo_sets: list[PhotoSet]


class Export(Section):
    quantize: Literal["dynamic", "float16", "none"]
    max_drop_points: Annotated[float, Field(ge=0, le=100)]


# What predict.detector and --detector take (faces.make_detector builds each).
DETECTOR_NAMES = ("yunet", "mtcnn", "haar", "yunet+whole", "mtcnn+whole", "haar+whole", "whole")


class Predict(Section):
    detector: Literal[DETECTOR_NAMES]
    margin: Annotated[float, Field(ge=0, le=1)]
    min_confidence: Fraction
    detector_threshold: Fraction                          # yunet: a face's score must reach this
    detector_min_side: Annotated[int, Field(ge=0, le=2048)]   # yunet: smaller images upscaled to this first
    video_fps: Annotated[float, Field(gt=0, le=120)]      # video: frames sampled per second
    smooth_frames: PosInt                                 # video: each track's label from the mean of this many samples


class Monitor(Section):
    record: Annotated[str, Field(min_length=1)]
    max_rows: PosInt
    psi_threshold: Annotated[float, Field(gt=0)]
    min_faces: PosInt


class Tracking(Section):
    experiment: Annotated[str, Field(min_length=1)]


# ``validate`` is a section name and also a (deprecated) BaseModel method, so the root model is
# built with ``create_model``, which lets a field carry that name.
Params = create_model(  # type: ignore[no-redef]  # noqa: F811
    "Params", __base__=Section,
    ingest=(Ingest, ...), validate=(Validate, ...), preprocess=(Preprocess, ...), train=(Train, ...),
    evaluate=(Evaluate, ...), export=(Export, ...), predict=(Predict, ...), monitor=(Monitor, ...),
    tracking=(Tracking, ...))


def _fields_at(loc: tuple) -> list[str]:
    """The keys allowed at ``loc`` (a path into the params), for 'did you mean'."""
    model: Any = Params
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _one_line(err: dict, prefix: tuple = ()) -> str:
    loc = tuple(prefix) + tuple(str(p) for p in err["loc"])
    path = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent, key = loc[:-1], loc[-1]
        close = difflib.get_close_matches(key, _fields_at(parent), n=1)
        hint = f"; did you mean {'.'.join((*parent, close[0]))}?" if close else ""
        allowed = _fields_at(parent)
        return f"{path}: unknown key{hint}" + ("" if close else f" (allowed: {', '.join(allowed)})")
    if kind == "missing":
        return f"{path}: missing key (params.yaml is the only place defaults live: add it)"
    msg = err["msg"]
    msg = msg[0].lower() + msg[1:]
    if msg.startswith("value error, "):
        msg = msg[len("value error, "):]
    if isinstance(err.get("input"), dict):  # a check across a section's keys: the message names them
        return f"{path}: {msg}"
    return f"{path}: {msg}, got {err.get('input')!r}"


def validate_params(raw: Any) -> dict:
    """Validate a whole params mapping; returns it as plain dicts. Raises FerError with one line."""
    if not isinstance(raw, dict):
        raise FerError("params.yaml: expected a mapping of sections (ingest, validate, ...)")
    try:
        return Params.model_validate(raw).model_dump()
    except ValidationError as exc:
        errs = exc.errors()
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise FerError(f"params.yaml: {_one_line(errs[0])}{more}") from None


def select(params: dict, paths: list[str]) -> dict:
    """Only the sections (dotted paths) named in ``paths``, nested as in the file."""
    out: dict = {}
    for path in paths:
        *parents, leaf = path.split(".")
        src, dst = params, out
        for p in parents:
            src, dst = src[p], dst.setdefault(p, {})
        dst[leaf] = src[leaf]
    return out


def load(sections: list[str] | None = None, path: str | os.PathLike = "params.yaml") -> dict:
    """Read and validate ``params.yaml``; return only ``sections`` (all when None)."""
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise FerError(f"{path} not found: run from the repository root") from None
    except yaml.YAMLError as exc:
        raise FerError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    params = validate_params(raw)
    if sections is None:
        return params
    return select(params, sections)


def for_stage(stage: str, path: str | os.PathLike = "params.yaml") -> dict:
    """The validated params a stage reads (the whole file is validated first)."""
    return load(STAGE_PARAMS[stage], path)
