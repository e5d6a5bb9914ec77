"""The training input: the tf.data pipeline (TensorFlow's) and FaceBatches (any backend)."""

import numpy as np

from fer_pipeline.augment import AugmentConfig
from fer_pipeline.inputs import FaceBatches, make_dataset

FULL = AugmentConfig(flip=True, rotation=0.05, translation=0.1, zoom=0.1, erasing_prob=0.5,
                     erasing_max_area=0.2, mixup_alpha=0.0)


def numbered(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Image i is filled with the value i, its label is i % 7."""
    return np.repeat(np.arange(n, dtype=np.uint8), 48 * 48).reshape(n, 48, 48, 1), np.arange(n) % 7


def test_training_batches_keep_images_labels_and_weights_together():
    # Image i is filled with the value i, its label is i % 7 and its weight i: after shuffling,
    # batching and the parallel map, every example must still carry its own label and weight.
    n = 50
    x = np.repeat(np.arange(n, dtype=np.uint8), 48 * 48).reshape(n, 48, 48, 1)
    y = np.arange(n) % 7
    weights = np.arange(n, dtype=np.float32)
    ds = make_dataset(x, y, 16, training=True, aug=AugmentConfig.none(), sample_weights=weights, seed=3)
    seen = []
    for images, labels, w in ds.take(8):
        idx = images.numpy()[:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(images.numpy().reshape(len(idx), -1).min(axis=1), idx)  # untouched
        np.testing.assert_array_equal(labels.numpy().argmax(axis=1), idx % 7)
        np.testing.assert_array_equal(w.numpy(), idx.astype(np.float32))
        seen += idx.tolist()
    assert seen[:16] != sorted(seen[:16])          # shuffled
    assert set(seen) == set(range(n))              # and every example comes round


def test_progressive_resizing_scales_down_the_first_batches_only_and_keeps_examples_together():
    # Image i is filled with i: scaled down (area-averaged) it is still filled with i, with its label.
    n = 32
    x = np.repeat(np.arange(n, dtype=np.uint8), 48 * 48).reshape(n, 48, 48, 1)
    y = np.arange(n) % 7
    ds = make_dataset(x, y, 16, training=True, aug=AugmentConfig.none(), seed=3, shrink=(3, 24))
    batches = list(ds.take(6))
    assert [tuple(b[0].shape[1:3]) for b in batches] == [(24, 24)] * 3 + [(48, 48)] * 3
    for images, labels, _ in batches[:3]:
        idx = np.rint(images.numpy()[:, 0, 0, 0]).astype(int)
        np.testing.assert_allclose(images.numpy().reshape(len(idx), -1), np.repeat(idx[:, None], 24 * 24, 1),
                                   atol=1e-3)
        np.testing.assert_array_equal(labels.numpy().argmax(axis=1), idx % 7)


def test_training_dataset_is_augmented_and_val_is_not():
    x = np.random.default_rng(0).integers(0, 255, (10, 48, 48, 1), dtype=np.uint8)
    y = np.arange(10) % 7
    val = next(iter(make_dataset(x, y, 10, training=False)))
    np.testing.assert_array_equal(val[0].numpy(), x.astype(np.float32))
    assert val[1].shape == (10, 7)
    aug = AugmentConfig(flip=True, rotation=0.1, translation=0.0, zoom=0.0, erasing_prob=0.0,
                        erasing_max_area=0.2, mixup_alpha=0.0)
    tr = next(iter(make_dataset(x, y, 10, training=True, aug=aug)))
    assert tr[0].dtype.name == "float32" and tr[0].shape == (10, 48, 48, 1)
    assert not np.array_equal(np.sort(tr[0].numpy().ravel()), np.sort(x.astype(np.float32).ravel()))


def test_face_batches_keep_examples_together_shuffle_and_cover_every_example():
    x, y = numbered(50)
    weights = np.arange(50, dtype=np.float32)
    ds = FaceBatches(x, y, 16, AugmentConfig.none(), weights, seed=3)
    assert len(ds) == 4
    seen = []
    for _ in range(2):
        for i in range(len(ds)):
            images, labels, w = ds[i]
            assert images.shape == (16, 48, 48, 1) and images.dtype == np.float32   # always full batches
            idx = images[:, 0, 0, 0].astype(int)
            np.testing.assert_array_equal(images.reshape(16, -1).min(axis=1), idx)
            np.testing.assert_array_equal(labels.argmax(axis=1), idx % 7)
            np.testing.assert_array_equal(w, idx.astype(np.float32))
            seen += idx.tolist()
        ds.on_epoch_end()
    assert seen[:16] != sorted(seen[:16]) and set(seen) == set(range(50))
    assert seen[:50] != seen[50:100]                      # a new order each pass
    # Stateless: batch k is a function of (seed, k), whoever asks and in whatever order.
    again = FaceBatches(x, y, 16, AugmentConfig.none(), weights, seed=3)
    np.testing.assert_array_equal(again[2][0], FaceBatches(x, y, 16, AugmentConfig.none(), weights, seed=3)[2][0])


def test_face_batches_shards_are_the_rows_of_the_single_process_batch():
    # Two processes, each its half: together exactly the batch one process gets, augmentation and
    # mixup partners included (the draws are those of the whole batch).
    x = np.random.default_rng(0).integers(0, 255, (40, 48, 48, 1), dtype=np.uint8)
    y = np.arange(40) % 7
    aug = AugmentConfig(**{**FULL.__dict__, "mixup_alpha": 0.4})
    whole = FaceBatches(x, y, 16, aug, seed=5)
    halves = [FaceBatches(x, y, 16, aug, seed=5, shard=(r, 2)) for r in (0, 1)]
    for i in (0, 2):
        joined = [np.concatenate([h[i][j] for h in halves]) for j in range(3)]
        for a, b in zip(joined, whole[i]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-4)
    assert halves[0][0][0].shape == (8, 48, 48, 1)
    moved = np.abs(whole[0][0] - x[:16].astype(np.float32)).mean()
    assert moved > 1.0                                                   # it augments


def test_face_batches_evaluation_is_in_order_unaugmented_and_padded_with_weight_zero():
    x, y = numbered(10)
    ds = FaceBatches(x, y, 4, pad_to=4)
    assert len(ds) == 3
    images, labels, w = ds[2]
    assert images.shape == (4, 48, 48, 1)
    np.testing.assert_array_equal(images[:2, 0, 0, 0], [8, 9])
    np.testing.assert_array_equal(w, [1, 1, 0, 0])
    np.testing.assert_array_equal(ds[0][0], x[:4].astype(np.float32))
    assert FaceBatches(x, y, 4)[2][0].shape[0] == 2                      # no padding asked: none


def test_face_batches_scale_down_the_first_batches_only():
    x, y = numbered(32)
    ds = FaceBatches(x, y, 16, AugmentConfig.none(), seed=3, shrink=(3, 24))
    sides = []
    for _ in range(3):
        sides += [ds[i][0].shape[1] for i in range(len(ds))]
        ds.on_epoch_end()
    assert sides == [24, 24, 24, 48, 48, 48]
    images, labels, _ = FaceBatches(x, y, 16, AugmentConfig.none(), seed=3, shrink=(3, 24))[0]
    idx = np.rint(images[:, 0, 0, 0]).astype(int)
    np.testing.assert_allclose(images.reshape(16, -1), np.repeat(idx[:, None], 24 * 24, 1), atol=1e-3)
    np.testing.assert_array_equal(labels.argmax(axis=1), idx % 7)
