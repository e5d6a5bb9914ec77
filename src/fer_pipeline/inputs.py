"""The training input: batches of (faces, target rows, weights), augmented on the fly.

Two feeds, one augmentation (``augment``: the draws from ``(seed, batch index)``, the pixel work in
``keras.ops``):

- ``make_dataset``: a ``tf.data`` pipeline, the TensorFlow backend's (the CPU default). Kept
  because it is the default's random stream and its speed: benchmarks/README.md (training input).
- ``FaceBatches``: a ``keras.utils.PyDataset`` over numpy arrays, for every backend; what Keras on
  JAX trains from (GPUs, several processes), with no TensorFlow installed. In a run of several
  processes every process draws the same global batch and keeps its own rows of it, so the model
  sees what one process with the same global batch would see.

Both always give full batches: the training stream runs through one shuffled pass after another,
so a batch may straddle two passes, as ``shuffle().repeat().batch()`` does.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras
import numpy as np

from .labels import NUM_CLASSES

if TYPE_CHECKING:
    from .augment import AugmentConfig


def target_rows(y: np.ndarray) -> np.ndarray:
    """Label ids (n,) as one-hot rows, or (n, 7) target rows (FER+ targets) as they are."""
    return np.eye(NUM_CLASSES, dtype=np.float32)[y] if y.ndim == 1 else y.astype(np.float32)


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, training: bool,
                 aug: AugmentConfig | None = None, sample_weights: np.ndarray | None = None,
                 seed: int = 0, shrink: tuple[int, int] | None = None):
    """(images float32 0-255, target rows, weights) batches as a ``tf.data.Dataset``; ``y`` is
    label ids or (n, 7) target rows (``targets.make_targets``). Training: shuffled, repeated,
    augmented per batch with stateless seeds (seed, batch index), parallel and prefetched.
    ``shrink`` = (batches, side): the first ``batches`` training batches are scaled down to ``side``
    x ``side`` after augmentation (progressive resizing; area-averaging, as ``antialias`` does)."""
    import tensorflow as tf

    from .augment import AugmentConfig, augment_batch, mixup

    AUTOTUNE = tf.data.AUTOTUNE
    weights = sample_weights if sample_weights is not None else np.ones(len(y), np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, target_rows(y), weights.astype(np.float32)))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=False)
    aug = aug or AugmentConfig.none()

    def prepare(step, batch):
        images, labels, w = batch
        images = tf.cast(images, tf.float32)
        if training:
            batch_seed = tf.stack([tf.constant(seed, tf.int64), step])
            images = augment_batch(images, aug, batch_seed)
            if aug.mixup_alpha:
                images, labels, w = mixup(images, labels, w, aug.mixup_alpha, batch_seed + 1)
            if shrink:
                batches, side = shrink
                images = tf.cond(step < batches,
                                 lambda: tf.image.resize(images, [side, side], antialias=True),
                                 lambda: images)
        return images, labels, w

    parallel = {"num_parallel_calls": AUTOTUNE, "deterministic": True} if training else {}
    ds = ds.enumerate().map(prepare, **parallel)
    return ds.prefetch(AUTOTUNE)


class FaceBatches(keras.utils.PyDataset):
    """Backend-neutral batches for ``model.fit``. Training (``aug`` given): batch ``k`` (counted
    across epochs) takes the next ``batch_size`` images of a stream of shuffled passes (pass ``p``
    shuffled by ``(seed, 0, p)``), augmented with draws from ``(seed, 1, k)``; ``shrink`` as in
    ``make_dataset``. Evaluation (``aug`` None): the images in order, the last batch padded with
    weight-0 rows to a multiple of ``pad_to`` (devices must share a batch evenly).

    ``shard`` = (process index, processes): each process returns its own contiguous rows of the
    global batch (the batch size must divide by the processes); the draws, mixup partners included,
    are those of the whole batch."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, aug: AugmentConfig | None = None,
                 sample_weights: np.ndarray | None = None, seed: int = 0,
                 shrink: tuple[int, int] | None = None, shard: tuple[int, int] = (0, 1), pad_to: int = 1):
        super().__init__()
        self.x, self.targets = x, target_rows(y)
        self.weights = (sample_weights if sample_weights is not None else np.ones(len(x))).astype(np.float32)
        self.batch_size, self.aug, self.seed, self.shrink = batch_size, aug, seed, shrink
        self.rank, self.processes = shard
        self.pad_to, self.epoch = pad_to, 0
        self._augment = _compiled(aug) if aug is not None else None
        if batch_size % self.processes:
            raise ValueError(f"batch size {batch_size} does not divide by {self.processes} processes")
        self._passes: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def _order(self, start: int, n: int) -> np.ndarray:
        """Rows ``start`` .. ``start + n`` of the endless stream of shuffled passes."""
        size, out = len(self.x), []
        while n > 0:
            p, offset = divmod(start, size)
            if p not in self._passes:
                self._passes = {p: np.random.default_rng((self.seed, 0, p)).permutation(size)}
            take = min(n, size - offset)
            out.append(self._passes[p][offset:offset + take])
            start, n = start + take, n - take
        return np.concatenate(out)

    def __getitem__(self, i: int):
        if self.aug is None:
            return self._evaluation_batch(i)
        from .augment import draw_mix_numpy, draw_numpy, mix

        k = self.epoch * len(self) + i
        rows = self._order(k * self.batch_size, self.batch_size)
        rng = np.random.default_rng((self.seed, 1, k))
        images = self._augment(self.x[rows].astype(np.float32), draw_numpy(len(rows), self.aug, rng))
        labels, w = self.targets[rows], self.weights[rows]
        if self.aug.mixup_alpha:
            images, labels, w = mix(images, labels, w, *draw_mix_numpy(len(rows), self.aug.mixup_alpha, rng))
        if self.shrink and k < self.shrink[0]:
            side = self.shrink[1]
            images = keras.ops.image.resize(images, (side, side), antialias=True)
        local = slice(self.rank * self.batch_size // self.processes,
                      (self.rank + 1) * self.batch_size // self.processes)
        return tuple(keras.ops.convert_to_numpy(t)[local] for t in (images, labels, w))

    def _evaluation_batch(self, i: int):
        rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
        x, y, w = self.x[rows].astype(np.float32), self.targets[rows], self.weights[rows]
        pad = -len(x) % self.pad_to
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros((pad, y.shape[1]), y.dtype)])
            w = np.concatenate([w, np.zeros(pad, w.dtype)])
        return x, y, w


def _compiled(aug: AugmentConfig):
    """``augment.apply`` for one config, compiled on JAX (2.6x faster per batch than op by op,
    measured on this 2-core CPU)."""
    from .augment import apply

    def fn(images, draws):
        return apply(images, aug, draws)

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn
