"""Structural and correlation metrics: SSIM (three published forms), VIF, CC, SCD.

Inputs are (B, 1, H, W) float64 grey levels on the 0-255 scale; outputs have shape (B,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fusion.metrics._kernels import filter_valid, flat_windows, gaussian_window


def ssim_pair(
    f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, variant: str = "wang", dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM(F, A) and SSIM(F, B) of (B, 1, H, W) images under one of the published forms, from one
    filtering pass over the eight moment channels.

    wang: 11x11 Gaussian (sigma 1.5), 'valid' windows, K = (0.01, 0.03), L = 255 (VIFB, standard).
    matlab: MATLAB ``ssim`` on doubles 0-255 with its default L = 1, 11x11 Gaussian, replicate padding,
        full-size map (tang).
    skimage: ``structural_similarity`` defaults on float data: 7x7 uniform window, sample covariance
        (x 49/48), 'valid' positions, data_range 2 (cddfuse).

    The window shrinks to the largest odd size that fits tiny images. Data are centred on a common offset
    before filtering (moments are shift-invariant), which keeps float32 filtering accurate.
    """
    size = {"wang": 11, "matlab": 11, "skimage": 7}[variant]
    size = max(1, min(size, 2 * ((min(f.shape[-2:]) - 1) // 2) + 1))
    if variant == "skimage":
        g = torch.full((size,), 1.0 / size, dtype=torch.float64, device=f.device)
        c1, c2, cov = (0.01 * 2) ** 2, (0.03 * 2) ** 2, size * size / max(1, size * size - 1)
    else:
        g = gaussian_window(size, 1.5, device=f.device)
        peak = 1.0 if variant == "matlab" else 255.0
        c1, c2, cov = (0.01 * peak) ** 2, (0.03 * peak) ** 2, 1.0
    off = centre(f, a, b)
    fc, ac, bc = ((x - off).to(dtype) for x in (f, a, b))
    stack = torch.cat([fc, ac, bc, fc * fc, ac * ac, bc * bc, fc * ac, fc * bc], dim=1)
    if variant == "matlab":
        p = size // 2
        stack = F.pad(stack, (p, p, p, p), mode="replicate")
    return ssim_from_moments(filter_valid(stack, g, dtype), off, c1, c2, cov)


def centre(*xs: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1) mean of the images' means: the common offset of the moment filters."""
    return sum(x.mean(dim=(1, 2, 3), keepdim=True) for x in xs) / len(xs)


def ssim_from_moments(
    m: torch.Tensor, off: torch.Tensor, c1: float, c2: float, cov: float = 1.0, reduce: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM(F, A) and SSIM(F, B) from windowed moments (B, 8+, h, w) of F, A, B, FF, AA, BB, FA, FB,
    all centred on ``off``; computed in the moments' precision, averaged in float64 (``reduce=False``: the two
    (B, 1, h, w) maps, for scoring in strips)."""
    off = off.to(m.dtype)
    mf, uf = m[:, 0:1], m[:, 0:1] + off
    vf = (m[:, 3:4] - mf * mf) * cov

    def index(mx: torch.Tensor, sq: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        vx, cxy = (sq - mx * mx) * cov, (cross - mf * mx) * cov
        ux = mx + off
        s = ((2 * ux * uf + c1) * (2 * cxy + c2)) / ((ux * ux + uf * uf + c1) * (vx + vf + c2))
        return s.flatten(1).mean(1, dtype=torch.float64) if reduce else s

    return index(m[:, 1:2], m[:, 4:5], m[:, 6:7]), index(m[:, 2:3], m[:, 5:6], m[:, 7:8])


def _vif_pair(
    ref: torch.Tensor,
    dist: torch.Tensor,
    dtype: torch.dtype = torch.float64,
    uint8_products: bool = False,
    strip: VifStrip | None = None,
) -> torch.Tensor:
    """Pixel-domain multiscale VIF (Sheikh and Bovik's ``vifp_mscale``) of (B, R, H, W) references against
    one (B, 1, H, W) distorted image, all references in the same filtering passes; returns (B, R), float64.

    ``uint8_products``: at the first scale the products ref*ref, dist*dist and ref*dist saturate at 255, as
    MATLAB's uint8 arithmetic does when the images are handed over as uint8 (the 2022 tang code).
    ``dtype`` float32 filters and combines the moments in float32 (faster on CPU). Its rounding would hide the
    reference code's test for flat reference windows (variance below 1e-10), so those are found from neighbour
    differences instead and their variance set to 0; data are centred first (moments are shift-invariant).

    ``strip`` scores rows of a larger image (:mod:`fusion.metrics.streaming`): the whole image's offset and
    number of scales, and per scale the map rows this strip owns; the result is then the stacked numerator and
    denominator sums (B, 2, R) instead of their ratio.
    """
    sigma_nsq, eps = 2.0, 1e-10
    r = ref.shape[1]
    num = torch.zeros(ref.shape[0], r, dtype=torch.float64, device=ref.device)
    den = torch.zeros_like(num)
    fast = dtype == torch.float32
    if fast:
        if strip is None:
            off = (ref.mean(dim=(1, 2, 3), keepdim=True) + dist.mean(dim=(1, 2, 3), keepdim=True)) / 2
        else:
            off = strip.off
        ref, dist = (ref - off).float(), (dist - off).float()
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        g = gaussian_window(n, n / 5.0, device=ref.device)
        if strip is not None and (scale > strip.scales or ref.shape[-2] < n):
            break  # (a strip too short for a scale owns none of its rows, nor of any coarser scale's)
        if scale > 1:
            if strip is None and min(ref.shape[-2:]) < n:
                break
            rd = filter_valid(torch.cat([ref, dist], 1), g, dtype, stride=2)
            ref, dist = rd[:, :r], rd[:, r:]
        if min(ref.shape[-2:]) < n:
            break
        prods = [ref * ref, dist * dist, ref * dist]
        if uint8_products and scale == 1:
            prods = [p.clamp(max=255) for p in prods]
        m = filter_valid(torch.cat([ref, dist, *prods], 1), g, dtype)
        mu1, mu2 = m[:, :r], m[:, r : r + 1]
        s1 = (m[:, r + 1 : 2 * r + 1] - mu1 * mu1).clamp_min(0)
        s2 = (m[:, 2 * r + 1 : 2 * r + 2] - mu2 * mu2).clamp_min(0)
        if fast:  # tolerance far below one grey level: only windows flat up to float32 rounding
            # (a flat distorted window needs no test: its variance's rounding only meets a zero gain)
            s1 = s1.masked_fill(flat_windows(ref, n, tol=1e-3), 0)
        s2 = s2.expand_as(s1)
        s12 = m[:, 2 * r + 2 :] - mu1 * mu2
        gain = s12 / (s1 + eps)
        sv = s2 - gain * s12
        # The order of these masks follows the reference code: each uses the values left by the last.
        low1 = s1 < eps
        gain = gain.masked_fill(low1, 0)
        sv = torch.where(low1, s2, sv)
        s1 = s1.masked_fill(low1, 0)
        low2 = s2 < eps
        gain = gain.masked_fill(low2, 0)
        sv = sv.masked_fill(low2, 0)
        neg = gain < 0
        sv = torch.where(neg, s2, sv)
        gain = gain.masked_fill(neg, 0)
        sv = sv.clamp_min(eps)
        nmap, dmap = torch.log10(1 + gain * gain * s1 / (sv + sigma_nsq)), torch.log10(1 + s1 / sigma_nsq)
        if strip is not None:  # the map rows this strip owns at this scale
            lo, hi = strip.rows[scale - 1]
            nmap, dmap = nmap[..., lo:hi, :], dmap[..., lo:hi, :]
        num += nmap.flatten(2).sum(2, dtype=torch.float64)
        den += dmap.flatten(2).sum(2, dtype=torch.float64)
    return num / den if strip is None else torch.stack([num, den], 1)


@dataclass(frozen=True)
class VifStrip:
    """How a strip of rows sits in the whole image, for :func:`_vif_pair`."""

    off: torch.Tensor  # (B, 1, 1, 1) the whole image's offset (mean of the reference and distorted means)
    scales: int  # how many scales the whole image has
    rows: tuple[tuple[int, int], ...]  # per scale, the map rows (relative to the strip's map) it owns


def vif_scales(h: int, w: int) -> int:
    """How many of VIF's four scales an h x w image has (each must fit its window)."""
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        if scale > 1:
            if min(h, w) < n:
                return scale - 1
            h, w = (h - n) // 2 + 1, (w - n) // 2 + 1
        if min(h, w) < n:
            return scale - 1
    return 4


def vif(
    f: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    nan_to_one: bool = True,
    dtype: torch.dtype = torch.float64,
    uint8_products: bool = False,
) -> torch.Tensor:
    """VIF(A, F) + VIF(B, F). A flat source gives 0/0; with ``nan_to_one`` that term is 1 (as cddfuse).
    ``dtype`` float32 is the fast path of :func:`_vif_pair`; ``uint8_products`` the 2022 tang code's
    saturating first scale."""
    v = _vif_pair(torch.cat([a, b], 1), f, dtype, uint8_products)
    if nan_to_one:
        v = torch.nan_to_num(v, nan=1.0)
    return v.sum(1)


def _corr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per image; 0 where either image is flat."""
    xc = x - x.mean(dim=(1, 2, 3), keepdim=True)
    yc = y - y.mean(dim=(1, 2, 3), keepdim=True)
    return corr_of((xc * yc).flatten(1).sum(1), (xc * xc).flatten(1).sum(1), (yc * yc).flatten(1).sum(1))


def corr_of(sxy: torch.Tensor, sxx: torch.Tensor, syy: torch.Tensor) -> torch.Tensor:
    """Pearson correlation from the centred sums of x*y, x*x and y*y; 0 where either is flat."""
    den = torch.sqrt(sxx * syy)
    return (sxy / den.clamp_min(1e-300)).where(den > 0, torch.zeros_like(den))


def correlation(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """CC: mean of corr(A, F) and corr(B, F).

    The tang code subtracts mean(A) from B in the numerator of the second term; that changes nothing,
    since the numerator also holds sum(F - mean(F)) = 0 as a factor of the shift, so it is not emulated.
    """
    return 0.5 * (_corr(f, a) + _corr(f, b))


def scd(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SCD (Aslantas and Bendes 2015): corr(F - B, A) + corr(F - A, B)."""
    return _corr(f - b, a) + _corr(f - a, b)
