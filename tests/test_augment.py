import numpy as np
import tensorflow as tf

from conftest import synthetic_face
from fer_pipeline.augment import AugmentConfig, augment_batch, mixup

FULL = AugmentConfig(flip=True, rotation=0.05, translation=0.1, zoom=0.1, erasing_prob=1.0, erasing_max_area=0.2)
BATCH = tf.constant(np.stack([synthetic_face(i) for i in range(16)])[..., None].astype(np.float32))


def test_augmentation_keeps_shape_dtype_and_range_and_changes_pixels():
    out = augment_batch(BATCH, FULL, tf.constant([1, 2], tf.int64)).numpy()
    assert out.shape == (16, 48, 48, 1) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    changed = np.abs(out - BATCH.numpy()).mean(axis=(1, 2, 3))
    assert (changed > 1.0).all()


def test_augmentation_is_a_function_of_the_seed():
    a = augment_batch(BATCH, FULL, tf.constant([3, 4], tf.int64)).numpy()
    b = augment_batch(BATCH, FULL, tf.constant([3, 4], tf.int64)).numpy()
    c = augment_batch(BATCH, FULL, tf.constant([3, 5], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1.0


def test_flip_only_mirrors_and_disabled_is_identity():
    out = augment_batch(BATCH, AugmentConfig(flip=True), tf.constant([0, 0], tf.int64)).numpy()
    x = BATCH.numpy()
    for o, i in zip(out, x):
        assert np.array_equal(o, i) or np.array_equal(o, i[:, ::-1])
    assert any(not np.array_equal(o, i) for o, i in zip(out, x))
    off = AugmentConfig.from_params({"enabled": False, "rotation": 0.3})
    np.testing.assert_array_equal(augment_batch(BATCH, off, tf.constant([0, 0], tf.int64)).numpy(), x)


def test_mixup_mixes_images_and_labels_consistently():
    y = tf.one_hot(tf.range(16) % 7, 7)
    w = tf.ones([16])
    x2, y2, w2 = mixup(BATCH, y, w, 0.4, tf.constant([9, 9], tf.int64))
    assert x2.shape == BATCH.shape and y2.shape == (16, 7)
    np.testing.assert_allclose(y2.numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert (y2.numpy().max(axis=1) < 1.0 - 1e-6).any()
    np.testing.assert_allclose(w2.numpy(), 1.0, rtol=1e-5)
