"""On-the-fly augmentation of training batches, on any Keras backend.

Two halves. The random draws of a batch (which faces flip, each face's angle, zoom, shift, crop
offset, erasing rectangle, mixup partner and ratio) come from ``(seed, batch index)``, statelessly,
so the same seed gives the same augmented stream whatever the parallelism: ``draw_tf`` inside the
TensorFlow ``tf.data`` pipeline (the CPU default's stream, unchanged), ``draw_numpy`` in the
backend-neutral input (``inputs.FaceBatches``: JAX, GPUs, several processes). The pixel work is
one function in ``keras.ops`` for both (``apply``, ``mix``).
Rotation, zoom and translation are composed into one affine transform per image (one
``keras.ops.image.affine_transform`` call per batch), which keeps the two CPU cores on the model.
A random crop (``crop_size`` < 48) is the same call with a random offset folded into the
transform, then the top-left ``crop_size`` square. The uncovered border is filled by reflection
with the edge pixel repeated (TF's ``REFLECT``, numpy's ``symmetric``), the convention
``metrics.shifted`` uses for test-time shifts too.

Why the public Keras op and not the raw TensorFlow one: benchmarks/README.md (augmentation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class AugmentConfig:
    """The validated ``preprocess.augment`` section (``params.yaml`` holds every value)."""

    flip: bool
    rotation: float             # max rotation, fraction of a full turn (0.04 = +-14.4 degrees)
    translation: float          # max shift, fraction of the image side
    zoom: float                 # max zoom in/out, fraction (0.1 = scale 0.9-1.1)
    erasing_prob: float         # probability of one random-erasing rectangle per image
    erasing_max_area: float
    mixup_alpha: float          # 0 disables mixup
    crop_size: int = 48         # random crops of this side (``train.crop_size``); 48 = whole face
    low_res_prob: float = 0.0   # share of faces scaled down and back up (a small face's resolution)
    low_res_min_side: int = 16  # ...to a side drawn from LOW_RES_STEP steps between this and 48

    @classmethod
    def from_params(cls, p: dict, crop_size: int = 48) -> AugmentConfig:
        """From the validated section; ``enabled: false`` turns every transform off (crops stay)."""
        if not p["enabled"]:
            return cls.none(crop_size)
        return cls(**{k: p[k] for k in cls.__dataclass_fields__ if k != "crop_size"}, crop_size=crop_size)

    def low_res_sides(self, side: int = 48) -> list[int]:
        """The sides a low-resolution face is scaled down to, every LOW_RES_STEP px below ``side``."""
        return list(range(self.low_res_min_side, side, LOW_RES_STEP)) if self.low_res_prob else []

    @classmethod
    def none(cls, crop_size: int = 48) -> AugmentConfig:
        return cls(flip=False, rotation=0.0, translation=0.0, zoom=0.0, erasing_prob=0.0,
                   erasing_max_area=0.0, mixup_alpha=0.0, crop_size=crop_size)


# How uncovered borders are filled (Keras name): reflection with the edge pixel repeated, numpy's
# "symmetric"; metrics.shifted fills test-time shifts the same way (tests/test_metrics.py).
FILL_MODE = "reflect"

# Low-resolution faces: scaled down by area averaging (a camera's small face) to one of the sides
# every LOW_RES_STEP px from ``low_res_min_side``, then back up bilinearly (as ``faces.align`` upscales
# a small face). A fixed set of sides keeps the pixel work batched: one pair of resizes per side.
LOW_RES_STEP = 4


def affine_transforms(angle, scale, shift, offset, width, height):
    """Keras's 8-number transforms (``keras.ops.image.affine_transform``), one row per image, for a
    rotation by ``angle`` radians about the centre of a ``width`` x ``height`` face, a zoom
    ``scale`` (> 1 zooms in), a ``shift`` (dx, dy) in fractions of the sides, then a crop whose
    top-left corner is at ``offset`` pixels (None: no crop). The order of the arithmetic is kept
    as it was, so the TensorFlow stream gives the same floats as before the split into draws and
    pixel work (tests/test_augment.py holds both halves to it)."""
    ops = keras.ops
    dx, dy = shift[:, 0] * width, shift[:, 1] * height
    # Output pixel (x, y) samples input at A @ (x, y) + b: rotation about the centre, scaled by
    # 1/scale, then shifted.
    cos, sin = ops.cos(angle) / scale, ops.sin(angle) / scale
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    a2 = cx - a0 * cx - a1 * cy - dx
    b2 = cy - b0 * cx - b1 * cy - dy
    if offset is not None:
        # A random crop: output pixel (x, y) is pixel (x + ox, y + oy) of the transformed face.
        a2, b2 = a2 + a0 * offset[:, 0] + a1 * offset[:, 1], b2 + b0 * offset[:, 0] + b1 * offset[:, 1]
    zeros = ops.zeros_like(a0)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)



# --- the random draws of one batch: a dict of arrays, from TensorFlow's stateless ops or numpy ---

def draw_tf(n: tf.Tensor, cfg: AugmentConfig, seed: tf.Tensor, side: int = 48) -> dict:
    """The draws of a batch of ``n`` faces from a stateless TF ``seed`` (shape [2]); the splits
    and their order are those of the default's stream since it was first trained."""
    import tensorflow as tf

    uniform = tf.random.stateless_uniform
    s = tf.random.experimental.stateless_split(seed, 3)
    d = {"flip": uniform([n, 1, 1, 1], s[0]) < 0.5}
    a = tf.random.experimental.stateless_split(s[1], 4)
    d["angle"] = uniform([n], a[0], -1.0, 1.0) * cfg.rotation * 2 * math.pi
    d["scale"] = 1.0 + uniform([n], a[1], -1.0, 1.0) * cfg.zoom
    d["shift"] = uniform([n, 2], a[2], -1.0, 1.0) * cfg.translation
    d["offset"] = uniform([n, 2], a[3], 0.0, 1.0) * float(side - cfg.crop_size)
    e = tf.random.experimental.stateless_split(s[2], 5)
    d["erase"] = uniform([n], e[0]) < cfg.erasing_prob
    d["area"] = uniform([n], e[1], 0.02, cfg.erasing_max_area)
    d["ratio"] = tf.exp(uniform([n], e[2], math.log(0.3), math.log(3.3)))
    d["y0"], d["x0"] = uniform([n], e[3]), uniform([n], e[4])
    if cfg.low_res_prob:
        # From a seed of its own, so the draws above (the default's stream) stay as they were.
        r = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, 1), 2)
        d["low_res"] = uniform([n], r[0]) < cfg.low_res_prob
        d["low_side"] = tf.random.stateless_uniform([n], r[1], 0, len(cfg.low_res_sides(side)), tf.int32)
    return d


def draw_numpy(n: int, cfg: AugmentConfig, rng: np.random.Generator, side: int = 48) -> dict:
    """The same draws, same distributions, from a numpy generator (``inputs.FaceBatches`` seeds one
    per batch from ``(seed, batch index)``)."""
    f = np.float32
    u = rng.uniform
    d = {"flip": (u(size=(n, 1, 1, 1)) < 0.5),
            "angle": (u(-1, 1, n) * cfg.rotation * 2 * math.pi).astype(f),
            "scale": (1.0 + u(-1, 1, n) * cfg.zoom).astype(f),
            "shift": (u(-1, 1, (n, 2)) * cfg.translation).astype(f),
            "offset": (u(0, 1, (n, 2)) * float(side - cfg.crop_size)).astype(f),
            "erase": u(size=n) < cfg.erasing_prob,
            "area": u(0.02, max(cfg.erasing_max_area, 0.02), n).astype(f),
            "ratio": np.exp(u(math.log(0.3), math.log(3.3), n)).astype(f),
            "y0": u(size=n).astype(f), "x0": u(size=n).astype(f)}
    if cfg.low_res_prob:
        d["low_res"] = u(size=n) < cfg.low_res_prob
        d["low_side"] = rng.integers(0, len(cfg.low_res_sides(side)), n).astype(np.int32)
    return d


def draw_mix_tf(n: tf.Tensor, alpha: float, seed: tf.Tensor) -> tuple:
    """Mixup's ratio per example (lambda ~ Beta(alpha, alpha)) and partner permutation, from TF."""
    import tensorflow as tf

    s = tf.random.experimental.stateless_split(seed, 3)
    g1 = tf.random.stateless_gamma([n], s[0], alpha=alpha)
    g2 = tf.random.stateless_gamma([n], s[1], alpha=alpha)
    return g1 / (g1 + g2), tf.argsort(tf.random.stateless_uniform([n], s[2]))


def draw_mix_numpy(n: int, alpha: float, rng: np.random.Generator) -> tuple:
    return rng.beta(alpha, alpha, n).astype(np.float32), rng.permutation(n)


# --- the pixel work: keras.ops, one definition for every backend ---

def _affine(batch, cfg: AugmentConfig, d: dict):
    side = batch.shape[1]
    w = h = float(side)
    crop = cfg.crop_size < side
    transforms = affine_transforms(d["angle"], d["scale"], d["shift"], d["offset"] if crop else None, w, h)
    out = keras.ops.image.affine_transform(batch, transforms, interpolation="bilinear", fill_mode=FILL_MODE)
    return out[:, :cfg.crop_size, :cfg.crop_size, :] if crop else out


def _erase(batch, cfg: AugmentConfig, d: dict):
    ops = keras.ops
    h, w = batch.shape[1], batch.shape[2]
    area, ratio = d["area"], d["ratio"]
    hf, wf = float(h), float(w)
    eh = ops.minimum(ops.sqrt(area * ratio) * hf, hf)
    ew = ops.minimum(ops.sqrt(area / ratio) * wf, wf)
    y0 = d["y0"] * (hf - eh)
    x0 = d["x0"] * (wf - ew)
    ys = ops.arange(h, dtype="float32")[None, :, None]
    xs = ops.arange(w, dtype="float32")[None, None, :]
    inside = ((ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None])
              & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None]) & d["erase"][:, None, None])
    # Erased pixels get the image's own mean, so the patch carries no brightness cue.
    fill = ops.mean(batch, axis=[1, 2, 3], keepdims=True)
    return ops.where(inside[..., None], fill, batch)


def _low_res(batch, cfg: AugmentConfig, d: dict):
    ops = keras.ops
    side = batch.shape[1]
    out = batch
    for i, s in enumerate(cfg.low_res_sides(side)):
        small = ops.image.resize(batch, (s, s), interpolation="area")
        back = ops.image.resize(small, (side, side), interpolation="bilinear")
        pick = d["low_res"] & (d["low_side"] == i)
        out = ops.where(pick[:, None, None, None], back, out)
    return out


def apply(images, cfg: AugmentConfig, d: dict):
    """Augment a float32 batch (n, side, side, 1) of 0-255 pixels with the draws ``d``."""
    x = images
    if cfg.low_res_prob:
        x = _low_res(x, cfg, d)
    if cfg.flip:
        x = keras.ops.where(d["flip"], keras.ops.flip(x, axis=2), x)
    if cfg.rotation or cfg.zoom or cfg.translation or cfg.crop_size < images.shape[1]:
        x = _affine(x, cfg, d)
    if cfg.erasing_prob:
        x = _erase(x, cfg, d)
    return x


def mix(images, labels, weights, lam, perm):
    """Each example mixed with its partner ``perm[i]`` at ratio ``lam[i]``: images, targets, weights."""
    ops = keras.ops
    lam_x, lam_y = lam[:, None, None, None], lam[:, None]
    x = lam_x * images + (1 - lam_x) * ops.take(images, perm, axis=0)
    y = lam_y * labels + (1 - lam_y) * ops.take(labels, perm, axis=0)
    w = lam * weights + (1 - lam) * ops.take(weights, perm, axis=0)
    return x, y, w


# --- the TensorFlow stream (tf.data) ---

def augment_batch(images: tf.Tensor, cfg: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """Augment a float32 batch (n, 48, 48, 1) of 0-255 pixels with a stateless TF ``seed`` (shape [2])."""
    import tensorflow as tf

    return apply(images, cfg, draw_tf(tf.shape(images)[0], cfg, seed, images.shape[1]))


def mixup(images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, alpha: float, seed: tf.Tensor):
    """Mix each example with a shuffled partner; lambda ~ Beta(alpha, alpha) per example."""
    import tensorflow as tf

    return mix(images, labels, weights, *draw_mix_tf(tf.shape(images)[0], alpha, seed))
