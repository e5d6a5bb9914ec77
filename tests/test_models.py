import numpy as np
import pytest

from fer_pipeline.models import REGISTRY, build_model


@pytest.mark.parametrize("name,kwargs", [("bn_vgg", {"widths": [8, 16]}), ("mini_xception", {"widths": [8, 16]}),
                                         ("vgg16", {"dense": 64})])
def test_builders_take_raw_pixels_and_output_seven_probabilities(name, kwargs):
    model = build_model(name, **kwargs)
    assert model.input_shape == (None, 48, 48, 1)
    out = model.predict(np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype("float32"), verbose=0)
    assert out.shape == (3, 7)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_vgg16_has_the_seed_layer_structure():
    model = build_model("vgg16")
    convs = [l for l in model.layers if l.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 3 + [512] * 3
    assert all(c.kernel_size == (3, 3) for c in convs)
    pools = [l.name for l in model.layers if l.__class__.__name__ == "MaxPooling2D"]
    assert pools == ["block1_pool", "block2_pool", "block3_pool", "block4_pool"]
    assert any(l.__class__.__name__ == "GlobalAveragePooling2D" for l in model.layers)
    dense = [l for l in model.layers if l.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [4096, 7]
    assert model.count_params() == pytest.approx(16.8e6, rel=0.02)


def test_default_bn_vgg_size_and_registry():
    assert build_model("bn_vgg").count_params() == pytest.approx(1.24e6, rel=0.01)
    assert set(REGISTRY) == {"vgg16", "bn_vgg", "mini_xception"}
    with pytest.raises(ValueError, match="choose one of vgg16, bn_vgg, mini_xception"):
        build_model("resnet")
