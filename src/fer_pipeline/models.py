"""CNN builders. Each takes raw 0-255 pixels shaped (48, 48, 1) and scales inside the model, so a
saved model needs no separate preprocessing. ``build_model(name, **kwargs)`` picks one by name."""

from __future__ import annotations

from typing import Callable

import keras
from keras import layers

from .labels import NUM_CLASSES

INPUT_SHAPE = (48, 48, 1)


def _inputs() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input(shape=INPUT_SHAPE, name="pixels")
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)


def _head(x, dropout: float, dense: int, num_classes: int):
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    if dense:
        x = layers.Dense(dense, activation="relu", name="fc")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    return layers.Dense(num_classes, activation="softmax", name="probs", dtype="float32")(x)


def vgg16(num_classes: int = NUM_CLASSES, dense: int = 4096, dropout: float = 0.0) -> keras.Model:
    """The seed notebook's modified VGG-16: 13 3x3 convs in blocks 64/128/256/512/512, max-pool
    after the first four blocks, global average pooling, Dense 4096, softmax. Like the seed it
    sees 3 channels (the gray channel repeated)."""
    inputs, x = _inputs()
    x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    blocks = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
    for b, (width, convs) in enumerate(blocks, start=1):
        for c in range(1, convs + 1):
            x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"block{b}_conv{c}")(x)
        if b <= 4:
            x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(dense, activation="relu", name="fc")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="vgg16")


def bn_vgg(num_classes: int = NUM_CLASSES, widths: tuple[int, ...] = (32, 64, 128, 256),
           convs_per_stage: int = 2, dropout: float = 0.4, dense: int = 256,
           weight_decay: float = 0.0) -> keras.Model:
    """VGG-style stages of (3x3 conv, BN, ReLU) x ``convs_per_stage`` then max-pool; GAP head."""
    reg = keras.regularizers.L2(weight_decay) if weight_decay else None
    inputs, x = _inputs()
    for s, width in enumerate(widths, start=1):
        for c in range(1, convs_per_stage + 1):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_regularizer=reg,
                              name=f"s{s}_conv{c}")(x)
            x = layers.BatchNormalization(name=f"s{s}_bn{c}")(x)
            x = layers.ReLU(name=f"s{s}_relu{c}")(x)
        x = layers.MaxPooling2D(2, name=f"s{s}_pool")(x)
    return keras.Model(inputs, _head(x, dropout, dense, num_classes), name="bn_vgg")


def mini_xception(num_classes: int = NUM_CLASSES, widths: tuple[int, ...] = (16, 32, 64, 128),
                  stem: int = 8, dropout: float = 0.0, dense: int = 0) -> keras.Model:
    """mini-Xception-like: a small conv stem, then residual blocks of depthwise-separable convs."""
    inputs, x = _inputs()
    for i in (1, 2):
        x = layers.Conv2D(stem, 3, use_bias=False, padding="same", name=f"stem_conv{i}")(x)
        x = layers.BatchNormalization(name=f"stem_bn{i}")(x)
        x = layers.ReLU()(x)
    for width in widths:
        shortcut = layers.Conv2D(width, 1, strides=2, padding="same", use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
        x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.Add()([x, shortcut])
    return keras.Model(inputs, _head(x, dropout, dense, num_classes), name="mini_xception")


REGISTRY: dict[str, Callable[..., keras.Model]] = {
    "vgg16": vgg16, "bn_vgg": bn_vgg, "mini_xception": mini_xception,
}


def build_model(name: str, **kwargs) -> keras.Model:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}")
    for key in ("widths",):
        if key in kwargs and isinstance(kwargs[key], list):
            kwargs[key] = tuple(kwargs[key])
    return REGISTRY[name](**kwargs)
