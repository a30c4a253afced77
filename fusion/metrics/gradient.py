"""Gradient-based metrics: SF, AG, EI, Qabf.

Inputs are (B, 1, H, W) float64 grey levels on the 0-255 scale; outputs have shape (B,).
"""

from __future__ import annotations

import math

import torch

from fusion.metrics._kernels import SOBEL_X, correlate3x3, matlab_gradient, sobel


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
    return torch.sqrt(gx**2 + gy**2).flatten(1).mean(1)


# Xydeas-Petrovic constants
_TG, _KG, _DG, _TA, _KA, _DA = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8


def _strength_angle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sx, sy = sobel(x, padding="zeros")
    g = torch.sqrt(sx**2 + sy**2)
    safe = sx.where(sx != 0, torch.ones_like(sx))
    a = torch.atan(sy / safe).where(sx != 0, torch.full_like(sx, math.pi / 2))
    return g, a


def _edge_preservation(ga, aa, gf, af) -> torch.Tensor:
    # The published codes set G = gF where gA == gF (0 where both are 0), not 1.
    big = ga.where(ga > gf, torch.ones_like(ga))
    small = gf.where(gf > ga, torch.ones_like(gf))
    g = torch.where(ga > gf, gf / big, torch.where(ga == gf, gf, ga / small))
    a = 1 - (aa - af).abs() / (math.pi / 2)
    return _TG / (1 + torch.exp(_KG * (g - _DG))) * _TA / (1 + torch.exp(_KA * (a - _DA)))


def qabf(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Qabf (Xydeas and Petrovic 2000) as in the VIFB, tang and cddfuse codes; 0 when no source has an edge."""
    gf, af = _strength_angle(f)
    ga, aa = _strength_angle(a)
    gb, ab = _strength_angle(b)
    qa, qb = _edge_preservation(ga, aa, gf, af), _edge_preservation(gb, ab, gf, af)
    num = (qa * ga + qb * gb).flatten(1).sum(1)
    den = (ga + gb).flatten(1).sum(1)
    return (num / den.clamp_min(1e-300)).where(den > 0, torch.zeros_like(den))


# Kumar's Nabf constants (Petrovic's model with his modified artefact term)
_N = {"Td": 2.0, "wt_min": 0.001, "Lg": 1.5, "Nrg": 0.9999, "kg": 19.0, "sg": 0.5, "Nra": 0.9995, "ka": 22.0, "sa": 0.5}


def _kumar_strength_angle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Sobel / 8 with symmetric (mirror, edge not repeated) extension, as Kumar's sobel_fn.
    if min(x.shape[-2:]) < 2:  # a 1-pixel side cannot be mirrored: no gradient
        return torch.zeros_like(x), torch.zeros_like(x)
    k = tuple(tuple(v / 8 for v in row) for row in SOBEL_X)
    gv = correlate3x3(x, k, "reflect")
    gh = correlate3x3(x, tuple(zip(*k, strict=True)), "reflect")
    g = torch.sqrt(gh * gh + gv * gv)
    both0 = (gv == 0) & (gh == 0)
    a = torch.atan(gv / gh.where(~both0, torch.ones_like(gh))).where(~both0, torch.zeros_like(gv))
    return g, a


def _kumar_q(g: torch.Tensor, a: torch.Tensor, gf: torch.Tensor, af: torch.Tensor) -> torch.Tensor:
    zero = (g == 0) | (gf == 0)
    ratio = torch.minimum(g, gf) / torch.maximum(g, gf).where(~zero, torch.ones_like(g))
    gr = ratio.where(~zero, torch.zeros_like(g))
    ar = ((a - af).abs() - math.pi / 2).abs() * 2 / math.pi
    qg = _N["Nrg"] / (1 + torch.exp(-_N["kg"] * (gr - _N["sg"])))
    qa = _N["Nra"] / (1 + torch.exp(-_N["ka"] * (ar - _N["sa"])))
    return torch.sqrt(qg * qa)


def nabf(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Nabf: Kumar's modified fusion-artefact measure (lower is better).

    Where F has a stronger edge than both sources, the edge-information loss (1 - Q) is summed with the
    sources' edge weights. Inputs are levels 0-255 multiplied by ``scale`` first: the tang code works on
    [0, 1] images (``scale = 1/255``), where no gradient reaches the weight threshold Td = 2, so every
    weight is wt_min; the standard convention uses the 0-255 scale the method was designed for.
    """
    f, a, b = f * scale, a * scale, b * scale
    gf, af = _kumar_strength_angle(f)
    ga, aa = _kumar_strength_angle(a)
    gb, ab = _kumar_strength_angle(b)
    qa, qb = _kumar_q(ga, aa, gf, af), _kumar_q(gb, ab, gf, af)
    wa = torch.where(ga >= _N["Td"], ga ** _N["Lg"], torch.full_like(ga, _N["wt_min"]))
    wb = torch.where(gb >= _N["Td"], gb ** _N["Lg"], torch.full_like(gb, _N["wt_min"]))
    artefact = ((gf > ga) & (gf > gb)).to(f.dtype)
    num = (artefact * ((1 - qa) * wa + (1 - qb) * wb)).flatten(1).sum(1)
    return num / (wa + wb).flatten(1).sum(1)
