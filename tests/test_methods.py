from pathlib import Path

import pytest
import torch

from fusion.errors import RgbtError
from fusion.methods import LEARNED, available_methods, build_method
from fusion.models.zoo import ZOO, find_weights

CLASSICAL = [m for m in available_methods() if m not in LEARNED]
RANDOM = Path(__file__).parent / "fixtures" / "zoo_random"  # official-format random weights (test_zoo.py)


def build(name: str):
    """The method with its weights; one whose trained files are not in the sample data (FusionGAN, GANMcC,
    PIAFusion) with the random weights of fixtures/zoo_random."""
    if name in ZOO and find_weights(name) is None and (RANDOM / name).is_dir():
        return build_method(name, ckpt=next((RANDOM / name).glob("*.index")))
    return build_method(name)


@pytest.mark.parametrize("name", available_methods())
@pytest.mark.parametrize("size", [(37, 53), (64, 64), (5, 3), (1, 1)])
def test_every_method_shape_range_no_nan(name, size):
    g = torch.Generator().manual_seed(0)
    vis, ir = torch.rand(2, 1, *size, generator=g), torch.rand(2, 1, *size, generator=g)
    out = build(name)(vis, ir)
    assert out.shape == vis.shape
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", CLASSICAL)  # learned networks only approximate this
def test_identical_sources_give_the_source(name):
    x = torch.rand(1, 1, 40, 56, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(build_method(name)(x, x), x, atol=2e-3)


@pytest.mark.parametrize("name", available_methods())
def test_batch_items_are_independent(name):
    g = torch.Generator().manual_seed(2)
    vis, ir = torch.rand(3, 1, 32, 40, generator=g), torch.rand(3, 1, 32, 40, generator=g)
    m = build(name)
    assert torch.allclose(m(vis, ir)[1:2], m(vis[1:2], ir[1:2]), atol=1e-5)


def test_known_values():
    vis, ir = torch.full((1, 1, 4, 4), 0.2), torch.full((1, 1, 4, 4), 0.6)
    assert torch.allclose(build_method("average")(vis, ir), torch.full_like(vis, 0.4))
    assert torch.allclose(build_method("max")(vis, ir), ir)
    assert torch.allclose(build_method("weighted", w_vis=0.75)(vis, ir), torch.full_like(vis, 0.3))
    # Flat images: contrast weights fall back to the mean.
    assert torch.allclose(build_method("weighted")(vis, ir), torch.full_like(vis, 0.4))


def test_weighted_prefers_the_contrasty_source():
    g = torch.Generator().manual_seed(3)
    vis, ir = torch.rand(1, 1, 16, 16, generator=g), torch.full((1, 1, 16, 16), 0.5)
    out = build_method("weighted")(vis, ir)
    assert torch.allclose(out, vis)  # IR has no contrast: weight 1 on visible


def test_detail_methods_keep_the_stronger_edge():
    # A step edge only in IR, a flat visible image: averaging halves the step, detail selection keeps more.
    ir = torch.zeros(1, 1, 64, 64)
    ir[..., 32:] = 1.0
    vis = torch.full_like(ir, 0.5)
    for name, min_jump in (("average", 0.5), ("laplacian", 0.8), ("gff", 0.55)):
        out = build_method(name)(vis, ir)
        jump = (out[..., 32] - out[..., 31]).mean()
        assert jump >= min_jump - 1e-6, name


def test_unknown_method_and_bad_shapes():
    with pytest.raises(RgbtError, match="unknown method 'nope'.*average"):
        build_method("nope")
    with pytest.raises(ValueError, match="same shape"):
        build_method("average")(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5))


def test_fixed_kernels_are_buffers():
    m = build_method("gff")
    assert "method.laplacian" in dict(m.named_buffers()) and not list(m.parameters())
