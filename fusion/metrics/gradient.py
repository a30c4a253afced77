"""Gradient-based metrics: SF, AG, EI, Qabf.

Inputs are (B, 1, H, W) float64 grey levels on the 0-255 scale; outputs have shape (B,).
"""

from __future__ import annotations

import math

import torch

from fusion.metrics._kernels import matlab_gradient, min_max_ratio, sobel


def spatial_frequency(f: torch.Tensor, variant: str = "standard") -> torch.Tensor:
    """SF = sqrt(RF + CF) from squared neighbour differences.

    standard / tang / cddfuse: RF and CF are means over the (H, W-1) and (H-1, W) difference arrays.
    vifb: both sums are divided by H*W; a colour image is passed as one (H, 3W) mosaic (see conventions).
    """
    dx = (f[..., :, 1:] - f[..., :, :-1]) ** 2
    dy = (f[..., 1:, :] - f[..., :-1, :]) ** 2
    if variant == "vifb":
        n = f.shape[-1] * f.shape[-2]
        return torch.sqrt((dx.flatten(1).sum(1) + dy.flatten(1).sum(1)) / n)
    rf = dx.flatten(1).mean(1) if dx.numel() else torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
    cf = dy.flatten(1).mean(1) if dy.numel() else torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
    return torch.sqrt(rf + cf)


def average_gradient(f: torch.Tensor, variant: str = "standard") -> torch.Tensor:
    """AG: sqrt((gx^2 + gy^2) / 2) with MATLAB ``gradient``; mean over all pixels (standard, cddfuse) or
    the sum divided by (H-1)(W-1) (vifb, tang)."""
    gx, gy = matlab_gradient(f)
    s = torch.sqrt((gx**2 + gy**2) / 2).flatten(1).sum(1)
    h, w = f.shape[-2:]
    if variant in ("vifb", "tang"):
        return s / max(1, (h - 1) * (w - 1))
    return s / (h * w)


def edge_intensity(f: torch.Tensor) -> torch.Tensor:
    """EI: mean Sobel gradient magnitude, replicate padding (VIFB)."""
    gx, gy = sobel(f, padding="replicate")
    return torch.sqrt(gx * gx + gy * gy).flatten(1).mean(1)


# Xydeas-Petrovic constants
_TG, _KG, _DG, _TA, _KA, _DA = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8


def _sobel_fab(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, padding: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel responses (sx, sy) of F, A and B in one pass, each (B, 3, H, W) in F, A, B order."""
    return sobel(torch.cat([f, a, b], 1), padding)


def qabf(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Qabf (Xydeas and Petrovic 2000) as in the VIFB, tang and cddfuse codes; 0 when no source has an edge.

    ``dtype`` float32 computes strengths, angles and sigmoids in single precision. The published codes set
    the strength ratio G to gF (not 1) where gA == gF, so a tie changes the value discontinuously; ties are
    therefore found in float64, on the exact squared Sobel strengths.
    """
    return _qabf(*_sobel_fab(f, a, b, "zeros"), dtype)


def _qabf(sx: torch.Tensor, sy: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return qabf_of(*_qabf_sums(sx, sy, dtype))


def qabf_of(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """Qabf from its numerator and denominator sums; 0 where no source has an edge."""
    return (num / den.clamp_min(1e-300)).where(den > 0, torch.zeros_like(den))


def _qabf_sums(sx: torch.Tensor, sy: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Qabf's numerator and denominator sums (B,) from the Sobel responses (B, 3, H, W) of F, A, B."""
    s2 = torch.addcmul(sx * sx, sy, sy)
    tie = s2[:, 1:] == s2[:, :1]  # (B, 2, H, W): A and B against F
    g = s2.to(dtype).sqrt_()
    sx, sy = sx.to(dtype), sy.to(dtype)
    ang = torch.where(sx != 0, torch.atan(sy / sx), math.pi / 2)  # MATLAB atan(sy/sx), pi/2 where sx = 0
    gf, gs = g[:, :1], g[:, 1:]
    gr = torch.where(tie, gf, min_max_ratio(gs, gf, 1.0))  # the tie quirk: gF where gA == gF
    ar = 1 - (ang[:, 1:] - ang[:, :1]).abs_().mul_(2 / math.pi)
    q = torch.sigmoid((gr - _DG) * -_KG).mul_(torch.sigmoid((ar - _DA) * -_KA)).mul_(_TG * _TA)
    num = (q * gs).flatten(1).sum(1, dtype=torch.float64)
    return num, gs.flatten(1).sum(1, dtype=torch.float64)


def qabf_and_nabf(
    f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Qabf and Nabf (levels 0-255) from one Sobel pass: Nabf's mirror-padded responses differ from Qabf's
    zero-padded ones only on the outer rows and columns, which are recomputed from two-pixel strips."""
    x = torch.cat([f, a, b], 1)
    sx, sy = sobel(x, "zeros")
    q = _qabf(sx, sy, dtype)
    h, w = x.shape[-2:]
    if min(h, w) < 2:  # as nabf: a 1-pixel side cannot be mirrored
        return q, torch.zeros_like(q)
    sx, sy = sx.clone(), sy.clone()
    top, bottom = (sobel(x[..., r, :], "reflect") for r in (slice(0, 2), slice(h - 2, h)))
    left, right = (sobel(x[..., c], "reflect") for c in (slice(0, 2), slice(w - 2, w)))
    for out, t, bo, le, ri in zip((sx, sy), top, bottom, left, right, strict=True):
        out[..., 0, :], out[..., -1, :] = t[..., 0, :], bo[..., -1, :]
        out[..., :, 0], out[..., :, -1] = le[..., :, 0], ri[..., :, -1]
    return q, _nabf(sx, sy, dtype)


# Kumar's Nabf constants (Petrovic's model with his modified artefact term)
_N = {"Td": 2.0, "wt_min": 0.001, "Nrg": 0.9999, "kg": 19.0, "sg": 0.5, "Nra": 0.9995, "ka": 22.0, "sa": 0.5}


def nabf(
    f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float = 1.0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Nabf: Kumar's modified fusion-artefact measure (lower is better).

    Where F has a stronger edge than both sources, the edge-information loss (1 - Q) is summed with the
    sources' edge weights. Inputs are levels 0-255 multiplied by ``scale`` first: the tang code works on
    [0, 1] images (``scale = 1/255``), where no gradient reaches the weight threshold Td = 2, so every
    weight is wt_min; the standard convention uses the 0-255 scale the method was designed for.

    Kumar's gradients are Sobel / 8 with symmetric (mirror, edge not repeated) extension; his vertical and
    horizontal responses are sx / 8 and -sy / 8. Strength ratios and angles do not depend on the / 8.
    The comparisons (F stronger than both sources, the weight threshold) are made in float64 on the exact
    squared strengths; ``dtype`` float32 computes the rest, with 1 - Q written without cancellation.
    """
    f, a, b = f * scale, a * scale, b * scale
    if min(f.shape[-2:]) < 2:  # a 1-pixel side cannot be mirrored: no gradient, no artefact
        return torch.zeros(f.shape[0], dtype=torch.float64, device=f.device)
    return _nabf(*_sobel_fab(f, a, b, "reflect"), dtype)


def _nabf(sx: torch.Tensor, gh: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    num, den = _nabf_sums(sx, gh, dtype)
    return num / den


def _nabf_sums(sx: torch.Tensor, gh: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Nabf's numerator and denominator sums (B,) from the mirror-padded Sobel responses of F, A, B."""
    s2 = torch.addcmul(sx * sx, gh, gh)
    artefact = (s2[:, :1] > s2[:, 1:]).all(1, keepdim=True)  # F stronger than both sources
    heavy = s2[:, 1:] >= 64 * _N["Td"] ** 2  # g / 8 >= Td
    sx, gh = sx.to(dtype), torch.sub(0.0, gh).to(dtype)  # -sy, +0 (not -0) where sy = 0 as in the reference
    ang = torch.where((sx == 0) & (gh == 0), 0.0, torch.atan(sx / gh))  # atan(gv / gh), 0 where both are 0
    g = s2.to(dtype).sqrt_()
    gf, gs = g[:, :1], g[:, 1:]
    gr = min_max_ratio(gs, gf, 0.0)  # 0 where both strengths are 0 (and where one is: 0 / g)
    ar = ((ang[:, 1:] - ang[:, :1]).abs_() - math.pi / 2).abs_().mul_(2 / math.pi)
    # Q^2 = c s_g s_a with sigmoids s = 1 - u; near a perfect fusion 1 - Q is small, so it is computed from
    # the complements u = sigmoid(-z): 1 - Q^2 = (1 - c) + c (u_g + u_a s_g), then 1 - Q = (1 - Q^2) / (1 + Q).
    ug = torch.sigmoid((gr - _N["sg"]) * -_N["kg"])
    ua = torch.sigmoid((ar - _N["sa"]) * -_N["ka"])
    c = _N["Nrg"] * _N["Nra"]
    loss = ua.mul_(1 - ug).add_(ug).mul_(c).add_(1 - c)  # 1 - Q^2
    loss = loss / (1 + torch.sqrt(1 - loss))
    # Edge weights (g / 8)^1.5 (Kumar's Lg) at or above Td, wt_min elsewhere; t^1.5 as t sqrt(t), several
    # times faster than pow.
    t = gs / 8
    w = torch.where(heavy, t * t.sqrt(), _N["wt_min"])
    num = (loss * w).sum(1, keepdim=True).where(artefact, 0.0).flatten(1).sum(1, dtype=torch.float64)
    return num, w.flatten(1).sum(1, dtype=torch.float64)
