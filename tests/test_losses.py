"""Fusion losses: shapes, known values, invariants and gradients on small synthetic tensors."""

from __future__ import annotations

import pytest
import torch

from fusion.losses import (
    DDcGANLoss,
    FusionLoss,
    ReconstructionLoss,
    adversarial_loss,
    ddcgan_content_loss,
    gradient_loss,
    intensity_loss,
    laplacian_3x3,
    sobel_magnitude,
    ssim_loss,
)


@pytest.fixture
def imgs():
    g = torch.Generator().manual_seed(0)
    vis, ir = torch.rand(2, 1, 24, 20, generator=g), torch.rand(2, 1, 24, 20, generator=g)
    return vis, ir


def test_sobel_magnitude_known_value():
    # a vertical step of height 1: unnormalised Sobel_x gives 1 + 2 + 1 = 4 on the two columns beside the edge
    x = torch.zeros(1, 1, 5, 6)
    x[..., 3:] = 1.0
    m = sobel_magnitude(x)
    assert m.shape == x.shape
    assert torch.allclose(m[0, 0, 2, 2:4], torch.tensor([4.0, 4.0]))
    assert m[0, 0, 2, 0] == 0 and m[0, 0, 2, 5] == 0


def test_intensity_loss_values(imgs):
    vis, ir = imgs
    target = torch.maximum(vis, ir)
    assert intensity_loss(target, vis, ir) == 0
    assert torch.isclose(intensity_loss(target + 0.1, vis, ir), torch.tensor(0.1))
    mix = 0.3 * vis + 0.7 * ir
    assert intensity_loss(mix, vis, ir, vis_weight=0.3) < 1e-7


def test_gradient_loss_zero_on_max_gradient_source():
    flat = torch.full((1, 1, 16, 16), 0.5)
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1.0
    assert gradient_loss(edge, flat, edge) == 0  # fused has exactly the stronger source's gradients
    assert gradient_loss(flat, flat, edge) > 0


def test_ssim_loss_identity_and_symmetry(imgs):
    vis, ir = imgs
    assert ssim_loss(vis, vis, vis) < 1e-5
    a = ssim_loss((vis + ir) / 2, vis, ir)
    b = ssim_loss((vis + ir) / 2, ir, vis)
    assert torch.isclose(a, b)  # mean weighting is symmetric in the sources
    g = ssim_loss((vis + ir) / 2, vis, ir, weighting="gradient")
    assert 0 < g < 2
    with pytest.raises(ValueError):
        ssim_loss(vis, vis, ir, weighting="nope")


def test_ssim_gradient_weighting_follows_texture():
    flat = torch.full((1, 1, 32, 32), 0.5)
    tex = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    # all weight on the textured source: fused == textured source gives ~0 loss, fused == flat source does not
    assert ssim_loss(tex, tex, flat, weighting="gradient") < 1e-4
    assert ssim_loss(flat, tex, flat, weighting="gradient") > 0.5


def test_fusion_loss_terms_and_weights(imgs):
    vis, ir = imgs
    fused = ((vis + ir) / 2).requires_grad_()
    terms = FusionLoss(w_int=2.0, w_grad=3.0, w_ssim=4.0, ssim_weighting="mean")(fused, vis, ir)
    assert set(terms) == {"int", "grad", "ssim", "total"}
    assert all(t.shape == () and torch.isfinite(t) for t in terms.values())
    expect = 2 * terms["int"] + 3 * terms["grad"] + 4 * terms["ssim"]
    assert torch.isclose(terms["total"], expect)
    terms["total"].backward()
    assert fused.grad is not None and fused.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        FusionLoss(ssim_weighting="bad")


def test_reconstruction_loss(imgs):
    vis, _ = imgs
    zero = ReconstructionLoss(100)(vis, vis)
    assert zero["pixel"] == 0 and zero["total"] < 1e-3
    out = (vis * 0.5).requires_grad_()
    t = ReconstructionLoss(10)(out, vis)
    assert torch.isclose(t["total"], t["pixel"] + 10 * t["ssim"])
    t["total"].backward()
    assert out.grad.abs().sum() > 0


def test_ddcgan_terms(imgs):
    vis, ir = imgs
    k = laplacian_3x3(torch.ones(1, 1, 5, 5))
    assert torch.allclose(k[0, 0, 1:-1, 1:-1], torch.zeros(3, 3))  # flat interior: zero gradient
    c = ddcgan_content_loss(ir, vis, ir)
    assert c["int"] == 0
    # intensity is summed over pixels: a uniform offset of 0.1 on 24x20 pixels gives 480 * 0.01 / 16
    c2 = ddcgan_content_loss(ir + 0.1, vis, ir)
    assert torch.isclose(c2["int"], torch.tensor(480 * 0.01 / 16))
    assert torch.isclose(adversarial_loss(torch.tensor([0.5]), True), torch.log(torch.tensor(2.0)))
    assert adversarial_loss(torch.tensor([1.0]), True) < 1e-6 and adversarial_loss(torch.tensor([0.0]), False) < 1e-6
    fused = ((vis + ir) / 2).requires_grad_()
    p = torch.full((2, 1), 0.3)
    t = DDcGANLoss()(fused, vis, ir, p, p)
    assert torch.isclose(t["total"], t["adv_vis"] + t["adv_ir"] + 0.6 * t["content"])
    t["total"].backward()
    assert fused.grad.abs().sum() > 0


def test_ddcgan_loss_with_the_default_objective(imgs):
    vis, ir = imgs
    fused = ((vis + ir) / 2).requires_grad_()
    p = torch.full((2, 1), 0.3)
    content = FusionLoss(w_int=20.0, w_grad=20.0, w_ssim=10.0)
    t = DDcGANLoss(content_weight=1.0, adv_weight=0.1, content=content)(fused, vis, ir, p, p)
    ref = content(fused, vis, ir)
    assert {"int", "grad", "ssim", "content"} <= set(t)
    assert torch.isclose(t["content"], ref["total"]) and torch.isclose(t["ssim"], ref["ssim"])
    assert torch.isclose(t["total"], 0.1 * (t["adv_vis"] + t["adv_ir"]) + t["content"])
    t["total"].backward()
    assert fused.grad.abs().sum() > 0


def test_swinfusion_ssim_variant_known_values_and_gradient():
    """The authors' pytorch-ssim term: 0 when the fused image equals both sources, the source weights follow the
    batch's gradient shares, differentiable; it differs from our kornia default at the borders only."""
    from fusion.losses import FusionLoss, swinfusion_ssim_loss

    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32)
    assert float(swinfusion_ssim_loss(x, x, x)) < 1e-6
    flat = torch.zeros_like(x)  # no gradient, even at the zero-padded border: all the weight on the textured source
    assert abs(float(swinfusion_ssim_loss(x, x, flat))) < 1e-6
    f = torch.rand(2, 1, 32, 32, requires_grad=True)
    swinfusion_ssim_loss(f, x, torch.rand(2, 1, 32, 32)).backward()
    assert f.grad.abs().sum() > 0 and torch.isfinite(f.grad).all()
    with pytest.raises(ValueError, match="ssim_variant"):
        FusionLoss(ssim_variant="pytorch")
