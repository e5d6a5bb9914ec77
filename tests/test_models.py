import numpy as np
import pytest

from fer_pipeline.models import REGISTRY, build_model, forward_macs, training_flops_at, training_flops_per_image

from helpers import repo_params

TINY = {"bn_vgg": {"widths": [8, 16], "convs_per_stage": 1, "dropout": 0.0, "dense": 0},
        "mini_xception": {"widths": [8, 16], "stem": 4, "dropout": 0.0, "dense": 0},
        "vgg16": {"dense": 64, "dropout": 0.0}}


@pytest.mark.parametrize("name", ["bn_vgg", "mini_xception", "vgg16"])
def test_builders_take_raw_pixels_and_output_seven_probabilities(name):
    model = build_model(name, 48, **TINY[name])
    assert model.input_shape == (None, 48, 48, 1)
    out = model.predict(np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype("float32"), verbose=0)
    assert out.shape == (3, 7)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_vgg16_has_the_seed_layer_structure():
    model = build_model("vgg16", 48, **repo_params()["train"]["model"]["vgg16"])
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 3 + [512] * 3
    assert all(c.kernel_size == (3, 3) for c in convs)
    pools = [layer.name for layer in model.layers if layer.__class__.__name__ == "MaxPooling2D"]
    assert pools == ["block1_pool", "block2_pool", "block3_pool", "block4_pool"]
    assert any(layer.__class__.__name__ == "GlobalAveragePooling2D" for layer in model.layers)
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [4096, 7]
    assert model.count_params() == pytest.approx(16.8e6, rel=0.02)


def test_default_bn_vgg_size_flops_and_registry():
    model = build_model("bn_vgg", 48, **repo_params()["train"]["model"]["bn_vgg"])
    assert model.count_params() == pytest.approx(1.24e6, rel=0.01)
    # The notes' hand count: about 117M multiply-adds forward, about 0.70 GFLOP per training image.
    assert forward_macs(model) == pytest.approx(117.5e6, rel=0.01)
    assert training_flops_per_image(model) == pytest.approx(0.705e9, rel=0.01)
    assert set(REGISTRY) == {"vgg16", "bn_vgg", "mini_xception"}
    with pytest.raises(ValueError, match="choose one of vgg16, bn_vgg, mini_xception"):
        build_model("resnet", 48)


def test_flops_are_counted_by_hand_for_a_one_conv_model_and_shrink_with_the_crop():
    full = build_model("bn_vgg", 48, widths=[8], convs_per_stage=1, dropout=0.0, dense=0)
    # one 3x3 conv, 1 -> 8 channels, at 48x48; then GAP and a 8 -> 7 dense layer
    assert forward_macs(full) == 48 * 48 * 8 * 9 * 1 + 8 * 7
    cropped = build_model("bn_vgg", 40, widths=[8], convs_per_stage=1, dropout=0.0, dense=0)
    assert forward_macs(cropped) == 40 * 40 * 8 * 9 * 1 + 8 * 7
    sep = build_model("mini_xception", 48, widths=[8], stem=4, dropout=0.0, dense=0)
    stem = 48 * 48 * 4 * 9 * 1 + 48 * 48 * 4 * 9 * 4
    shortcut = 24 * 24 * 8 * 4                                   # 1x1 conv, stride 2
    separable = 48 * 48 * 4 * 9 + 48 * 48 * 4 * 8 + 48 * 48 * 8 * 9 + 48 * 48 * 8 * 8
    assert forward_macs(sep) == stem + shortcut + separable + 8 * 7


def test_a_cropping_model_takes_whole_faces_and_sees_their_centre():
    model = build_model("bn_vgg", 40, widths=[4], convs_per_stage=1, dropout=0.0, dense=0)
    faces = np.random.default_rng(1).uniform(0, 255, (2, 48, 48, 1)).astype("float32")
    whole = model.predict(faces, verbose=0)
    centre = model.predict(faces[:, 4:44, 4:44], verbose=0)  # a crop-sized input passes unchanged
    np.testing.assert_allclose(whole, centre, rtol=1e-5, atol=1e-6)


def test_a_model_of_any_size_takes_smaller_and_whole_faces_and_its_flops_are_counted_at_a_size():
    kw = {"widths": [8], "convs_per_stage": 1, "dropout": 0.0, "dense": 0}
    model = build_model("bn_vgg", 48, any_size=True, **kw)
    for side in (24, 32, 48):
        assert model.predict(np.zeros((2, side, side, 1), "float32"), verbose=0).shape == (2, 7)
    assert training_flops_at("bn_vgg", 32, **kw) == 6 * (32 * 32 * 8 * 9 * 1 + 8 * 7)
    assert training_flops_at("bn_vgg", 48, **kw) == training_flops_per_image(build_model("bn_vgg", 48, **kw))
    with pytest.raises(ValueError, match="use crop_size 48"):
        build_model("bn_vgg", 40, any_size=True, **kw)
