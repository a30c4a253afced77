"""Structural and correlation metrics: SSIM (three published forms), VIF, CC, SCD.

Inputs are (B, 1, H, W) float64 grey levels on the 0-255 scale; outputs have shape (B,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fusion.metrics._kernels import filter_valid, gaussian_window


def _local_stats(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, pad: str | None, dtype=torch.float64):
    """Windowed means, variances and covariance of x and y. float64: with float32 windows (even on
    centred data) two of VIFB's 126 published SSIM values are missed in the fifth digit."""
    off = 0.5 * (x.mean(dim=(1, 2, 3), keepdim=True) + y.mean(dim=(1, 2, 3), keepdim=True))
    xc, yc = x - off, y - off
    stack = torch.cat([xc, yc, xc * xc, yc * yc, xc * yc], dim=1)
    if pad is not None:
        p = g.numel() // 2
        stack = F.pad(stack, (p, p, p, p), mode=pad)
    m = filter_valid(stack, g, dtype).double()
    mx, my = m[:, 0:1], m[:, 1:2]
    return mx + off, my + off, m[:, 2:3] - mx**2, m[:, 3:4] - my**2, m[:, 4:5] - mx * my


def ssim_index(
    x: torch.Tensor,
    y: torch.Tensor,
    variant: str = "wang",
) -> torch.Tensor:
    """Mean SSIM of two (B, 1, H, W) images under one of the published forms.

    wang: 11x11 Gaussian (sigma 1.5), 'valid' windows, K = (0.01, 0.03), L = 255 (VIFB, standard).
    matlab: MATLAB ``ssim`` on doubles 0-255 with its default L = 1, 11x11 Gaussian, replicate padding,
        full-size map (tang).
    skimage: ``structural_similarity`` defaults on float data: 7x7 uniform window, sample covariance
        (x 49/48), 'valid' positions, data_range 2 (cddfuse).

    The window shrinks to the largest odd size that fits tiny images.
    """
    size = {"wang": 11, "matlab": 11, "skimage": 7}[variant]
    size = max(1, min(size, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1))
    if variant == "skimage":
        g = torch.full((size,), 1.0 / size, dtype=torch.float64, device=x.device)
        c1, c2, cov = (0.01 * 2) ** 2, (0.03 * 2) ** 2, size * size / max(1, size * size - 1)
    else:
        g = gaussian_window(size, 1.5, device=x.device)
        peak = 1.0 if variant == "matlab" else 255.0
        c1, c2, cov = (0.01 * peak) ** 2, (0.03 * peak) ** 2, 1.0
    pad = "replicate" if variant == "matlab" else None
    mx, my, vx, vy, cxy = _local_stats(x, y, g, pad)
    vx, vy, cxy = vx * cov, vy * cov, cxy * cov
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def _vif_pair(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Pixel-domain multiscale VIF (Sheikh and Bovik's ``vifp_mscale``) of (B, R, H, W) references against
    one (B, 1, H, W) distorted image, all references in the same filtering passes; returns (B, R), float64."""
    sigma_nsq, eps = 2.0, 1e-10
    r = ref.shape[1]
    num = torch.zeros(ref.shape[0], r, dtype=torch.float64, device=ref.device)
    den = torch.zeros_like(num)
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        g = gaussian_window(n, n / 5.0, device=ref.device)
        if scale > 1:
            if min(ref.shape[-2:]) < n:
                break
            rd = filter_valid(torch.cat([ref, dist], 1), g)
            ref, dist = rd[:, :r, ::2, ::2], rd[:, r:, ::2, ::2]
        if min(ref.shape[-2:]) < n:
            break
        m = filter_valid(torch.cat([ref, dist, ref * ref, dist * dist, ref * dist], 1), g)
        mu1, mu2 = m[:, :r], m[:, r : r + 1]
        s1 = (m[:, r + 1 : 2 * r + 1] - mu1 * mu1).clamp_min(0)
        s2 = (m[:, 2 * r + 1 : 2 * r + 2] - mu2 * mu2).clamp_min(0).expand_as(s1)
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
        num += torch.log10(1 + gain * gain * s1 / (sv + sigma_nsq)).flatten(2).sum(2)
        den += torch.log10(1 + s1 / sigma_nsq).flatten(2).sum(2)
    return num / den


def vif(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, nan_to_one: bool = True) -> torch.Tensor:
    """VIF(A, F) + VIF(B, F). A flat source gives 0/0; with ``nan_to_one`` that term is 1 (as cddfuse)."""
    v = _vif_pair(torch.cat([a, b], 1), f)
    if nan_to_one:
        v = torch.nan_to_num(v, nan=1.0)
    return v.sum(1)


def _corr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per image; 0 where either image is flat."""
    xc = x - x.mean(dim=(1, 2, 3), keepdim=True)
    yc = y - y.mean(dim=(1, 2, 3), keepdim=True)
    num = (xc * yc).flatten(1).sum(1)
    den = torch.sqrt((xc * xc).flatten(1).sum(1) * (yc * yc).flatten(1).sum(1))
    return (num / den.clamp_min(1e-300)).where(den > 0, torch.zeros_like(den))


def correlation(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """CC: mean of corr(A, F) and corr(B, F).

    The tang code subtracts mean(A) from B in the numerator of the second term; that changes nothing,
    since the numerator also holds sum(F - mean(F)) = 0 as a factor of the shift, so it is not emulated.
    """
    return 0.5 * (_corr(f, a) + _corr(f, b))


def scd(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SCD (Aslantas and Bendes 2015): corr(F - B, A) + corr(F - A, B)."""
    return _corr(f - b, a) + _corr(f - a, b)
