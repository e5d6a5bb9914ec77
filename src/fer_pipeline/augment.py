"""On-the-fly augmentation for the ``tf.data`` training pipeline.

Everything is batched and *stateless*: the random numbers of batch ``i`` derive from
``(seed, i)``, so the same seed gives the same augmented stream whatever the parallelism.
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

    @classmethod
    def from_params(cls, p: dict, crop_size: int = 48) -> AugmentConfig:
        """From the validated section; ``enabled: false`` turns every transform off (crops stay)."""
        if not p["enabled"]:
            return cls.none(crop_size)
        return cls(**{k: p[k] for k in cls.__dataclass_fields__ if k != "crop_size"}, crop_size=crop_size)

    @classmethod
    def none(cls, crop_size: int = 48) -> AugmentConfig:
        return cls(flip=False, rotation=0.0, translation=0.0, zoom=0.0, erasing_prob=0.0,
                   erasing_max_area=0.0, mixup_alpha=0.0, crop_size=crop_size)


# How uncovered borders are filled (Keras name): reflection with the edge pixel repeated, numpy's
# "symmetric"; metrics.shifted fills test-time shifts the same way (tests/test_metrics.py).
FILL_MODE = "reflect"


def affine_transforms(angle, scale, shift, offset, width, height):
    """Keras's 8-number transforms (``keras.ops.image.affine_transform``), one row per image, for a
    rotation by ``angle`` radians about the centre of a ``width`` x ``height`` face, a zoom
    ``scale`` (> 1 zooms in), a ``shift`` (dx, dy) in fractions of the sides, then a crop whose
    top-left corner is at ``offset`` pixels (None: no crop). Written in ``keras.ops`` so that the
    TensorFlow pipeline here and the JAX script ``scripts/gpu_profile.py`` share the geometry; the
    order of the arithmetic is kept as it was, so TensorFlow's graph rewrites give the same floats."""
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


def _affine(batch: tf.Tensor, cfg: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    n = tf.shape(batch)[0]
    h = tf.cast(tf.shape(batch)[1], tf.float32)
    w = tf.cast(tf.shape(batch)[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    angle = tf.random.stateless_uniform([n], seeds[0], -1.0, 1.0) * cfg.rotation * 2 * math.pi
    scale = 1.0 + tf.random.stateless_uniform([n], seeds[1], -1.0, 1.0) * cfg.zoom
    shift = tf.random.stateless_uniform([n, 2], seeds[2], -1.0, 1.0) * cfg.translation
    crop = cfg.crop_size < 48
    offset = tf.random.stateless_uniform([n, 2], seeds[3], 0.0, 1.0) * (w - cfg.crop_size) if crop else None
    transforms = affine_transforms(angle, scale, shift, offset, w, h)
    out = keras.ops.image.affine_transform(batch, transforms, interpolation="bilinear", fill_mode=FILL_MODE)
    return out[:, :cfg.crop_size, :cfg.crop_size, :] if crop else out


def _erase(batch: tf.Tensor, cfg: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    n, h, w = tf.shape(batch)[0], tf.shape(batch)[1], tf.shape(batch)[2]
    s = tf.random.experimental.stateless_split(seed, 5)
    apply = tf.random.stateless_uniform([n], s[0]) < cfg.erasing_prob
    area = tf.random.stateless_uniform([n], s[1], 0.02, cfg.erasing_max_area)
    ratio = tf.exp(tf.random.stateless_uniform([n], s[2], math.log(0.3), math.log(3.3)))
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    eh = tf.minimum(tf.sqrt(area * ratio) * hf, hf)
    ew = tf.minimum(tf.sqrt(area / ratio) * wf, wf)
    y0 = tf.random.stateless_uniform([n], s[3]) * (hf - eh)
    x0 = tf.random.stateless_uniform([n], s[4]) * (wf - ew)
    ys = tf.cast(tf.range(h), tf.float32)[None, :, None]
    xs = tf.cast(tf.range(w), tf.float32)[None, None, :]
    inside = ((ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None])
              & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None]) & apply[:, None, None])
    # Erased pixels get the image's own mean, so the patch carries no brightness cue.
    fill = tf.reduce_mean(batch, axis=[1, 2, 3], keepdims=True)
    return tf.where(inside[..., None], fill, batch)


def augment_batch(images: tf.Tensor, cfg: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """Augment a float32 batch (n, 48, 48, 1) of 0-255 pixels with a stateless ``seed`` (shape [2])."""
    import tensorflow as tf

    s = tf.random.experimental.stateless_split(seed, 3)
    x = images
    if cfg.flip:
        flip = tf.random.stateless_uniform([tf.shape(x)[0], 1, 1, 1], s[0]) < 0.5
        x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    if cfg.rotation or cfg.zoom or cfg.translation or cfg.crop_size < 48:
        x = _affine(x, cfg, s[1])
    if cfg.erasing_prob:
        x = _erase(x, cfg, s[2])
    return x


def mixup(images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, alpha: float, seed: tf.Tensor):
    """Mix each example with a shuffled partner; lambda ~ Beta(alpha, alpha) per example."""
    import tensorflow as tf

    s = tf.random.experimental.stateless_split(seed, 3)
    n = tf.shape(images)[0]
    g1 = tf.random.stateless_gamma([n], s[0], alpha=alpha)
    g2 = tf.random.stateless_gamma([n], s[1], alpha=alpha)
    lam = g1 / (g1 + g2)
    perm = tf.argsort(tf.random.stateless_uniform([n], s[2]))
    lam_x = lam[:, None, None, None]
    lam_y = lam[:, None]
    x = lam_x * images + (1 - lam_x) * tf.gather(images, perm)
    y = lam_y * labels + (1 - lam_y) * tf.gather(labels, perm)
    w = lam * weights + (1 - lam) * tf.gather(weights, perm)
    return x, y, w
