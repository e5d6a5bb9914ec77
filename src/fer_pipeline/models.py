"""CNN builders. Each takes raw 0-255 pixels shaped (48, 48, 1) and scales inside the model, so a
saved model needs no separate preprocessing. ``build_model(name, crop_size, **kwargs)`` picks one by
name; every size comes from ``params.yaml`` (no defaults here).

With ``crop_size`` < 48 the model trains on random crops of that size (made by the augmentation)
and, given a 48x48 face, looks at its centre crop: a ``CenterCrop`` layer is the identity on a
crop-sized input and crops a full face, so a saved model still takes 48x48 faces.

``any_size=True`` (progressive resizing: the first epochs train on smaller faces) gives an input of
any side and no crop: the convolutions and the global-average-pooling head work at every size."""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from .labels import NUM_CLASSES

INPUT_SHAPE = (48, 48, 1)


def _inputs(crop_size: int, any_size: bool) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    if any_size:
        if crop_size < INPUT_SHAPE[0]:
            raise ValueError("a model of any input size does not crop: use crop_size 48")
        inputs = keras.Input(shape=(None, None, 1), name="pixels")
        return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    if crop_size >= INPUT_SHAPE[0]:
        inputs = keras.Input(shape=INPUT_SHAPE, name="pixels")
        return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    inputs = keras.Input(shape=(None, None, 1), name="pixels")  # 48x48 faces, or crops in training
    x = layers.CenterCrop(crop_size, crop_size, name="center_crop")(inputs)
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(x)


def _head(x, dropout: float, dense: int, num_classes: int):
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    if dense:
        x = layers.Dense(dense, activation="relu", name="fc")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    return layers.Dense(num_classes, activation="softmax", name="probs", dtype="float32")(x)


def vgg16(*, dense: int, dropout: float, crop_size: int, any_size: bool = False,
          num_classes: int = NUM_CLASSES) -> keras.Model:
    """The seed notebook's modified VGG-16: 13 3x3 convs in blocks 64/128/256/512/512, max-pool
    after the first four blocks, global average pooling, Dense 4096, softmax. Like the seed it
    sees 3 channels (the gray channel repeated)."""
    inputs, x = _inputs(crop_size, any_size)
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


def bn_vgg(*, widths: tuple[int, ...], convs_per_stage: int, dropout: float, dense: int, crop_size: int,
           any_size: bool = False, num_classes: int = NUM_CLASSES) -> keras.Model:
    """VGG-style stages of (3x3 conv, BN, ReLU) x ``convs_per_stage`` then max-pool; GAP head."""
    inputs, x = _inputs(crop_size, any_size)
    for s, width in enumerate(widths, start=1):
        for c in range(1, convs_per_stage + 1):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"s{s}_conv{c}")(x)
            x = layers.BatchNormalization(name=f"s{s}_bn{c}")(x)
            x = layers.ReLU(name=f"s{s}_relu{c}")(x)
        x = layers.MaxPooling2D(2, name=f"s{s}_pool")(x)
    return keras.Model(inputs, _head(x, dropout, dense, num_classes), name="bn_vgg")


def mini_xception(*, widths: tuple[int, ...], stem: int, dropout: float, dense: int, crop_size: int,
                  any_size: bool = False, num_classes: int = NUM_CLASSES) -> keras.Model:
    """mini-Xception-like: a small conv stem, then residual blocks of depthwise-separable convs."""
    inputs, x = _inputs(crop_size, any_size)
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


def build_model(name: str, crop_size: int, **kwargs) -> keras.Model:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}")
    if isinstance(kwargs.get("widths"), list):
        kwargs["widths"] = tuple(kwargs["widths"])
    return REGISTRY[name](crop_size=crop_size, **kwargs)


def forward_macs(model: keras.Model) -> int:
    """Multiply-adds of one forward pass of one image, from the layers' static shapes: convolutions
    (plain, depthwise, separable) and dense layers; BN, pooling and activations (under 1%) are
    left out. Training costs about 3x the forward pass: ``training_flops_per_image``."""
    total = 0
    for layer in model.layers:
        if not isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D, layers.Dense)):
            continue
        out = layer.output.shape
        cin = int(layer.input.shape[-1])
        if isinstance(layer, layers.Dense):
            total += cin * int(out[-1])
            continue
        hw = int(out[1]) * int(out[2])
        kh, kw = layer.kernel_size
        if isinstance(layer, layers.SeparableConv2D):
            mult = layer.depth_multiplier
            total += hw * cin * mult * kh * kw + hw * cin * mult * int(out[-1])
        elif isinstance(layer, layers.DepthwiseConv2D):
            total += hw * cin * layer.depth_multiplier * kh * kw
        else:
            total += hw * int(out[-1]) * kh * kw * cin // layer.groups
    return int(total)


def training_flops_per_image(model: keras.Model) -> int:
    """FLOPs to train on one image: 2 FLOPs per multiply-add, forward + backward (about 2x forward)."""
    return 6 * forward_macs(model)


def training_flops_at(name: str, size: int, **kwargs) -> int:
    """Training FLOPs per image of model ``name`` fed ``size`` x ``size`` images: those of its twin
    built for ``size`` crops, which has the same layers at that size (``forward_macs`` needs the
    static shapes that a model of any input size lacks)."""
    return training_flops_per_image(build_model(name, size, **kwargs))
