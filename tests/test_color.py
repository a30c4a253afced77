import torch

from fusion.color import ColorFusion, fuse_color, merge_luma, split_luma
from fusion.methods import AverageFusion


def test_split_merge_round_trip():
    x = torch.rand(2, 3, 8, 9)
    y, cbcr = split_luma(x)
    assert y.shape == (2, 1, 8, 9) and cbcr.shape == (2, 2, 8, 9)
    assert torch.allclose(merge_luma(y, cbcr), x, atol=1e-5)


def test_grey_stays_grey():
    g = torch.rand(1, 1, 5, 5)
    y, cbcr = split_luma(g)
    assert cbcr is None and torch.equal(y, g)
    out = fuse_color(AverageFusion(), g, torch.rand(1, 1, 5, 5))
    assert out.shape == (1, 1, 5, 5)


def test_fusion_on_y_keeps_visible_colour():
    vis, ir = torch.rand(1, 3, 6, 7), torch.rand(1, 1, 6, 7)
    # Fusing that returns the visible luminance must give back the visible image.
    out = fuse_color(lambda v, i: v, vis, ir)
    assert torch.allclose(out, vis, atol=1e-5)
    # The fused image's Y is the model's output (up to clamping at the gamut edge).
    fused = ColorFusion(AverageFusion())(vis, ir)
    y_vis, _ = split_luma(vis)
    y_out, cbcr_out = split_luma(fused)
    inside = (fused > 0.01).all(1, keepdim=True) & (fused < 0.99).all(1, keepdim=True)
    assert torch.allclose(y_out[inside], (0.5 * (y_vis + ir))[inside], atol=1e-5)


def test_colour_fusion_is_differentiable():
    vis, ir = torch.rand(1, 3, 6, 7, requires_grad=True), torch.rand(1, 1, 6, 7, requires_grad=True)
    fuse_color(AverageFusion(), vis, ir).sum().backward()
    assert vis.grad is not None and ir.grad.abs().sum() > 0
