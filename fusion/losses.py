"""Unsupervised fusion losses: intensity, Sobel gradient, SSIM and the family-specific terms.

Every loss is a pure function on ``(B, 1, H, W)`` tensors in [0, 1] plus a thin ``nn.Module`` whose weights are
constructor arguments (set in the YAML configs). Modules return a dict of named terms, ``total`` included, which
the LightningModules log as they are.

The default objective for every model is ``total = w_int * int + w_grad * grad + w_ssim * ssim`` (:class:`FusionLoss`):

- intensity (SeAFusion): ``mean |F - max(vis, ir)|`` (or a fixed mix ``a * vis + (1 - a) * ir``),
- gradient (SeAFusion): ``mean | |grad F| - max(|grad vis|, |grad ir|) |`` with ``|grad| = |Sobel_x| + |Sobel_y|``,
- SSIM: ``1 - (w_vis * SSIM(F, vis) + w_ir * SSIM(F, ir))`` with an 11x11 Gaussian window (sigma 1.5), where the
  weights are 1/2 each or, as in SwinFusion, each source's share of the mean gradient magnitude.

Note: the SSIM term is ``1 - SSIM``, not kornia's ``ssim_loss`` (which is ``(1 - SSIM) / 2``), so weights copied
from papers that write ``1 - SSIM`` apply unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import get_gaussian_kernel2d, spatial_gradient
from kornia.losses import ssim_loss as kornia_ssim_loss
from kornia.metrics import ssim as kornia_ssim
from torch import nn


def sobel_magnitude(x: torch.Tensor, padding: str = "replicate") -> torch.Tensor:
    """``|Sobel_x| + |Sobel_y|`` with the unnormalised 3x3 Sobel kernels (as SeAFusion); (B, C, H, W) -> same.

    Args:
        padding: ``"replicate"`` (kornia's, the default) or ``"zeros"`` (SeAFusion's training code, ``padding=1``).
    """
    if padding == "zeros":  # the authors' two convolutions as written: the same floats, so L1's signs agree
        kx = x.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).expand(x.shape[1], 1, 3, 3)
        ky = x.new_tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]).expand(x.shape[1], 1, 3, 3)
        c = x.shape[1]
        return F.conv2d(x, kx, padding=1, groups=c).abs() + F.conv2d(x, ky, padding=1, groups=c).abs()
    g = spatial_gradient(x, mode="sobel", order=1, normalized=False)  # (B, C, 2, H, W), replicate-padded
    return g.abs().sum(2)


def intensity_loss(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor, vis_weight: float | None = None):
    """L1 distance of ``fused`` to the element-wise max of the sources, or to ``a*vis + (1-a)*ir`` if ``vis_weight=a``.

    Args:
        fused, vis, ir: (B, 1, H, W) in [0, 1].
        vis_weight: None for the max target (SeAFusion, SwinFusion); a number in [0, 1] for a fixed mix.

    Returns:
        Scalar tensor, 0 when ``fused`` equals the target.
    """
    target = torch.maximum(vis, ir) if vis_weight is None else vis_weight * vis + (1 - vis_weight) * ir
    return (fused - target).abs().mean()


def gradient_loss(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor, padding: str = "replicate") -> torch.Tensor:
    """L1 between ``|grad F|`` and ``max(|grad vis|, |grad ir|)`` (SeAFusion's texture loss); scalar. ``padding``:
    see :func:`sobel_magnitude`."""
    target = torch.maximum(sobel_magnitude(vis, padding), sobel_magnitude(ir, padding))
    return (sobel_magnitude(fused, padding) - target).abs().mean()


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Per-image mean SSIM (Gaussian window, sigma 1.5, data range 1) through kornia: (B,) in [-1, 1]."""
    return kornia_ssim(a, b, window, max_val=1.0, padding="valid").flatten(1).mean(1)


def ssim_loss(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor, weighting: str = "mean", window: int = 11):
    """``1 - (w_vis * SSIM(F, vis) + w_ir * SSIM(F, ir))``, averaged over the batch.

    Args:
        weighting: ``"mean"`` (1/2 each) or ``"gradient"`` (SwinFusion: each source's share of the mean
            Sobel magnitude, computed per image and not differentiated through).
    """
    s_vis, s_ir = ssim_map(fused, vis, window), ssim_map(fused, ir, window)
    if weighting == "mean":
        w_vis = torch.full_like(s_vis, 0.5)
    elif weighting == "gradient":
        with torch.no_grad():
            g_vis = sobel_magnitude(vis).flatten(1).mean(1)
            g_ir = sobel_magnitude(ir).flatten(1).mean(1)
            w_vis = torch.where(g_vis + g_ir > 0, g_vis / (g_vis + g_ir).clamp_min(1e-12), 0.5)
    else:
        raise ValueError(f"ssim weighting must be 'mean' or 'gradient', got {weighting!r}")
    return (1 - (w_vis * s_vis + (1 - w_vis) * s_ir)).mean()


def swinfusion_ssim_loss(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """SwinFusion's training SSIM term as its code computes it (``models/loss_vif.py`` ``L_SSIM`` with
    pytorch-ssim): ``1 - (w_ir * SSIM(ir, F) + w_vis * SSIM(vis, F))``, the SSIM maps from an 11x11 Gaussian window
    (sigma 1.5) over zero-padded images averaged over the whole batch, the weights each source's share of the
    batch's mean zero-padded Sobel magnitude. Scalar; (B, 1, H, W) inputs in [0, 1]."""
    win = get_gaussian_kernel2d((11, 11), (1.5, 1.5)).to(fused)[:, None]  # (1, 1, 11, 11)

    def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mu1, mu2 = F.conv2d(a, win, padding=5), F.conv2d(b, win, padding=5)
        s11 = F.conv2d(a * a, win, padding=5) - mu1.pow(2)
        s22 = F.conv2d(b * b, win, padding=5) - mu2.pow(2)
        s12 = F.conv2d(a * b, win, padding=5) - mu1 * mu2
        c1, c2 = 0.01**2, 0.03**2
        return (((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1.pow(2) + mu2.pow(2) + c1) * (s11 + s22 + c2))).mean()

    g_ir, g_vis = sobel_magnitude(ir, "zeros").mean(), sobel_magnitude(vis, "zeros").mean()
    w_ir, w_vis = g_ir / (g_ir + g_vis), g_vis / (g_ir + g_vis)
    return 1 - (w_ir * ssim(ir, fused) + w_vis * ssim(vis, fused))


class FusionLoss(nn.Module):
    """The default unsupervised objective: ``w_int * intensity + w_grad * gradient + w_ssim * ssim``.

    Defaults are SwinFusion's (20, 20, 10, gradient-weighted SSIM); SeAFusion is ``w_int=1, w_grad=10, w_ssim=0``.

    Returns from ``forward(fused, vis, ir)``: ``{"int", "grad", "ssim", "total"}`` scalars.
    """

    def __init__(
        self,
        w_int: float = 20.0,
        w_grad: float = 20.0,
        w_ssim: float = 10.0,
        ssim_weighting: str = "gradient",
        intensity_vis_weight: float | None = None,
        sobel_padding: str = "replicate",
        ssim_variant: str = "kornia",
    ):
        super().__init__()
        if ssim_variant not in ("kornia", "swinfusion"):
            raise ValueError(f"ssim_variant must be 'kornia' or 'swinfusion', got {ssim_variant!r}")
        if ssim_weighting not in ("mean", "gradient"):
            raise ValueError(f"ssim_weighting must be 'mean' or 'gradient', got {ssim_weighting!r}")
        if sobel_padding not in ("replicate", "zeros"):
            raise ValueError(f"sobel_padding must be 'replicate' or 'zeros', got {sobel_padding!r}")
        self.w_int, self.w_grad, self.w_ssim = w_int, w_grad, w_ssim
        self.ssim_weighting, self.intensity_vis_weight = ssim_weighting, intensity_vis_weight
        self.sobel_padding = sobel_padding  # "zeros": SeAFusion's, CDDFuse's and SwinFusion's training code
        self.ssim_variant = ssim_variant  # "swinfusion": the authors' pytorch-ssim term (swinfusion_ssim_loss)

    def forward(self, fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {
            "int": intensity_loss(fused, vis, ir, self.intensity_vis_weight),
            "grad": gradient_loss(fused, vis, ir, self.sobel_padding),
            "ssim": self._ssim(fused, vis, ir) if self.w_ssim else fused.new_zeros(()),
        }
        terms["total"] = self.w_int * terms["int"] + self.w_grad * terms["grad"] + self.w_ssim * terms["ssim"]
        return terms

    def _ssim(self, fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        if self.ssim_variant == "swinfusion":
            return swinfusion_ssim_loss(fused, vis, ir)
        return ssim_loss(fused, vis, ir, self.ssim_weighting)


MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _densefuse_ssim(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One scale of the SSIM of densefuse-pytorch's ``pytorch_msssim``: a Gaussian window (sigma 1.5) of
    ``min(11, H, W)``, no padding, the data range guessed from ``a`` (255 if its max exceeds 128, else 1; from -1 if
    its min is below -0.5), means over the whole batch. Returns (ssim, cs)."""
    lo = -1.0 if float(a.detach().min()) < -0.5 else 0.0
    big = 255.0 if float(a.detach().max()) > 128 else 1.0
    c1, c2 = (0.01 * (big - lo)) ** 2, (0.03 * (big - lo)) ** 2
    size = min(11, *a.shape[-2:])
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - size // 2) ** 2) / (2 * 1.5**2))
    g = (g / g.sum()).to(a)
    win = (g[:, None] @ g[None, :]).expand(a.shape[1], 1, size, size)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, win, groups=a.shape[1])

    mu1, mu2 = blur(a), blur(b)
    s11, s22, s12 = blur(a * a) - mu1 * mu1, blur(b * b) - mu2 * mu2, blur(a * b) - mu1 * mu2
    v1, v2 = 2.0 * s12 + c2, s11 + s22 + c2
    ssim = ((2 * mu1 * mu2 + c1) * v1) / ((mu1 * mu1 + mu2 * mu2 + c1) * v2)
    return ssim.mean(), (v1 / v2).mean()


def densefuse_msssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The MS-SSIM DenseFuse's PyTorch release trains with (``pytorch_msssim.msssim(out, x, normalize=True)``),
    kept as it computes: five scales (2x2 average pooling), each scale's SSIM and contrast term mapped to
    ``(x + 1) / 2``, and the product ``prod(cs[:4] ** w[:4] * ssim[4] ** w[4])``, which takes the last scale's SSIM
    four times (the original definition takes it once). (B, 1, H, W) -> scalar."""
    w = torch.tensor(MSSSIM_WEIGHTS, dtype=a.dtype, device=a.device)
    sims, css = [], []
    for _ in MSSSIM_WEIGHTS:
        s, c = _densefuse_ssim(a, b)
        sims.append(s)
        css.append(c)
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    sim, cs = (torch.stack(sims) + 1) / 2, (torch.stack(css) + 1) / 2
    return torch.prod(cs[:-1] ** w[:-1] * sim[-1] ** w[-1])


def reconstruction_loss(
    out: torch.Tensor, target: torch.Tensor, ssim_weight: float = 100.0, ssim: str = "ssim"
) -> dict:
    """DenseFuse stage 1: ``MSE(out, target) + lambda * (1 - SSIM(out, target))``; dict of pixel, ssim, total.

    Args:
        ssim: ``"ssim"`` (ours: per-image Gaussian SSIM, data range 1) or ``"msssim"`` (the authors' release:
            :func:`densefuse_msssim`, on the 0-255 images it trains on).
    """
    pixel = F.mse_loss(out, target)
    if ssim == "msssim":
        term = 1 - densefuse_msssim(out, target)
    elif ssim == "ssim":
        term = (1 - ssim_map(out, target)).mean()
    else:
        raise ValueError(f"ssim must be 'ssim' or 'msssim', not {ssim!r}")
    return {"pixel": pixel, "ssim": term, "total": pixel + ssim_weight * term}


class ReconstructionLoss(nn.Module):
    """Module form of :func:`reconstruction_loss`; ``ssim_weight`` is DenseFuse's lambda (100 in the release),
    ``ssim`` the SSIM variant (``"msssim"``: the authors')."""

    def __init__(self, ssim_weight: float = 100.0, ssim: str = "ssim"):
        super().__init__()
        if ssim not in ("ssim", "msssim"):
            raise ValueError(f"ssim must be 'ssim' or 'msssim', not {ssim!r}")
        self.ssim_weight, self.ssim = ssim_weight, ssim

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return reconstruction_loss(out, target, self.ssim_weight, self.ssim)


def laplacian_3x3(x: torch.Tensor) -> torch.Tensor:
    """DDcGAN's gradient operator: 3x3 kernel with 1/8 around and -1 in the centre (zero padding)."""
    k = x.new_full((1, 1, 3, 3), 1 / 8)
    k[0, 0, 1, 1] = -1.0
    return F.conv2d(x, k.expand(x.shape[1], 1, 3, 3), padding=1, groups=x.shape[1])


def ddcgan_content_loss(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor, grad_weight: float = 1.2):
    """DDcGAN's content term: ``||F - IR||_F^2 / 16 + grad_weight * ||grad F - grad VIS||_1``.

    Norms are summed over the pixels of each image and averaged over the batch, as in the official code, so the
    value scales with the patch area. Returns a dict of ``int``, ``grad`` and ``total``.
    """
    intensity = (fused - ir).pow(2).flatten(1).sum(1).mean() / 16
    grad = (laplacian_3x3(fused) - laplacian_3x3(vis)).abs().flatten(1).sum(1).mean()
    return {"int": intensity, "grad": grad, "total": intensity + grad_weight * grad}


def adversarial_loss(prob: torch.Tensor, real: bool, eps: float = 1e-8) -> torch.Tensor:
    """Cross-entropy of discriminator probabilities against the label real (1) or fake (0); scalar."""
    prob = prob.clamp(eps, 1 - eps)
    return -(prob.log() if real else (1 - prob).log()).mean()


class DDcGANLoss(nn.Module):
    """Generator objective of DDcGAN: ``adv_weight * (-log D_v(F) - log D_i(F)) + content_weight * content``.

    ``forward(fused, vis, ir, p_vis, p_ir)`` takes the two discriminators' probabilities for the fused image and
    returns ``{"adv_vis", "adv_ir", <content terms>, "content", "total"}``. The content term is the paper's
    (:func:`ddcgan_content_loss`: intensity against IR, gradient against visible) unless ``content`` names another
    objective such as :class:`FusionLoss`, the project's default, whose terms are then logged instead.
    """

    def __init__(
        self,
        content_weight: float = 0.6,
        grad_weight: float = 1.2,
        adv_weight: float = 1.0,
        content: nn.Module | None = None,
    ):
        super().__init__()
        self.content_weight, self.grad_weight, self.adv_weight = content_weight, grad_weight, adv_weight
        self.content = content

    def content_terms(self, fused, vis, ir) -> dict[str, torch.Tensor]:
        """The content objective alone (used for warm-up); its ``total`` is unweighted."""
        if self.content is None:
            return ddcgan_content_loss(fused, vis, ir, self.grad_weight)
        return self.content(fused, vis, ir)

    def forward(self, fused, vis, ir, p_vis, p_ir) -> dict[str, torch.Tensor]:
        c = self.content_terms(fused, vis, ir)
        terms = {
            "adv_vis": adversarial_loss(p_vis, real=True),
            "adv_ir": adversarial_loss(p_ir, real=True),
            **{k: v for k, v in c.items() if k != "total"},
            "content": c["total"],
        }
        terms["total"] = self.adv_weight * (terms["adv_vis"] + terms["adv_ir"]) + self.content_weight * c["total"]
        return terms


def feature_cc(a: torch.Tensor, b: torch.Tensor, eps: float = 1.1920929e-07) -> torch.Tensor:
    """Mean over batch and channels of the Pearson correlation of two (B, C, H, W) feature maps (CDDFuse's ``cc``).

    Returns:
        Scalar in [-1, 1]: 1 for feature maps that are positive multiples of each other.
    """
    a = a.flatten(2) - a.flatten(2).mean(-1, keepdim=True)
    b = b.flatten(2) - b.flatten(2).mean(-1, keepdim=True)
    r = (a * b).sum(-1) / (eps + a.square().sum(-1).sqrt() * b.square().sum(-1).sqrt())
    return r.clamp(-1, 1).mean()


def decomposition_loss(vis_base, ir_base, vis_detail, ir_detail) -> dict[str, torch.Tensor]:
    """CDDFuse's correlation-driven decomposition: ``cc(detail)^2 / (1.01 + cc(base))``.

    Low when the base features of the two sources correlate (shared, low-frequency content) and their detail
    features do not (modality-specific content). Returns ``{"cc_base", "cc_detail", "decomp"}``.
    """
    cc_b, cc_d = feature_cc(vis_base, ir_base), feature_cc(vis_detail, ir_detail)
    return {"cc_base": cc_b, "cc_detail": cc_d, "decomp": cc_d.square() / (1.01 + cc_b)}


class CDDFuseLoss(nn.Module):
    """CDDFuse's two training phases (Zhao et al., CVPR 2023), weights as in the official ``train.py``.

    - Phase I (``phase1``), the encoder and decoder reconstruct each source:
      ``sum over sources (w_rec_ssim * SSIMLoss + MSE) + w_rec_grad * L1(grad vis_hat, grad vis) + w_decomp * decomp``
      with kornia's SSIM loss ``(1 - SSIM) / 2`` (11x11) and kornia's normalised Sobel gradient.
    - Phase II (``phase2``), fusion: ``fusion(F, vis, ir) + w_decomp * decomp``. The official code's fusion term is
      SeAFusion's ``int + 10 grad`` (``FusionLoss(w_int=1, w_grad=10, w_ssim=0)``); the config adds SSIM.

    Both return a dict of named terms with ``total``.
    """

    def __init__(
        self,
        fusion: nn.Module | None = None,
        w_decomp: float = 2.0,
        w_rec_ssim: float = 5.0,
        w_rec_grad: float = 5.0,
    ):
        super().__init__()
        self.fusion = fusion if fusion is not None else FusionLoss(w_int=1.0, w_grad=10.0, w_ssim=0.0)
        self.w_decomp, self.w_rec_ssim, self.w_rec_grad = w_decomp, w_rec_ssim, w_rec_grad

    def phase1(self, vis, ir, vis_hat, ir_hat, feats: dict) -> dict[str, torch.Tensor]:
        rec = {
            f"rec_{k}": self.w_rec_ssim * kornia_ssim_loss(x, x_hat, 11) + F.mse_loss(x, x_hat)
            for k, x, x_hat in (("vis", vis, vis_hat), ("ir", ir, ir_hat))
        }
        grad = F.l1_loss(spatial_gradient(vis), spatial_gradient(vis_hat))
        d = decomposition_loss(feats["vis_base"], feats["ir_base"], feats["vis_detail"], feats["ir_detail"])
        total = rec["rec_vis"] + rec["rec_ir"] + self.w_decomp * d["decomp"] + self.w_rec_grad * grad
        return {**rec, "rec_grad": grad, **d, "total": total}

    def phase2(self, fused, vis, ir, feats: dict) -> dict[str, torch.Tensor]:
        terms = self.fusion(fused, vis, ir)
        d = decomposition_loss(feats["vis_base"], feats["ir_base"], feats["vis_detail"], feats["ir_detail"])
        return {**{k: v for k, v in terms.items() if k != "total"}, **d,
                "total": terms["total"] + self.w_decomp * d["decomp"]}  # fmt: skip
