"""Human-perception metrics from VIFB: Qcb (Chen-Blum) and Qcv (Chen-Varshney), plus MEF-SSIM.

Inputs are (B, 1, H, W) float64 grey levels on the 0-255 scale; outputs have shape (B,). Qcb and Qcv follow
Z. Liu's MATLAB implementations used by VIFB, including their frequency grids, their complex-valued
filtering and MATLAB's rounding.
"""

from __future__ import annotations

import math
from functools import lru_cache

import scipy.fft
import torch
import torch.nn.functional as F

from fusion.metrics._kernels import (
    filter_valid,
    gaussian_window,
    round_half_up,
    sobel,
)


def _normalize255(x: torch.Tensor) -> torch.Tensor:
    """Z. Liu's normalize1: min-max to 0..255, rounded half up; an all-zero image stays as it is."""
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    span = (hi - lo).where(hi > lo, torch.ones_like(hi))
    return round_half_up((x - lo) / span * 255).where(hi > lo, torch.zeros_like(x))


def _radius(h: int, w: int, sx: float, sy: float, device) -> torch.Tensor:
    """MATLAB ``freqspace([h w], 'meshgrid')`` frequencies, scaled, as the ifftshift-ed radius map, (h, w // 2 + 1)
    columns for ``rfft2``.

    The map is even in the DFT sense (mirror frequencies have bitwise equal radii), so a filter built on it
    keeps real images real: the published codes' complex results differ from the real ones only by rounding.
    """
    fx = (torch.arange(w, dtype=torch.float64, device=device) - w // 2) * (2.0 / w) * sx
    fy = (torch.arange(h, dtype=torch.float64, device=device) - h // 2) * (2.0 / h) * sy
    r = torch.sqrt(fx[None, :] ** 2 + fy[:, None] ** 2)
    return torch.fft.ifftshift(r)[:, : w // 2 + 1]


def _freq_filter(x: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """``real(ifft2(ifftshift(fftshift(fft2(x)) .* S)))`` with S already ifftshift-ed, as (h, w // 2 + 1)."""
    return torch.fft.irfft2(torch.fft.rfft2(x) * response, s=x.shape[-2:])


@lru_cache(maxsize=8)
def _qcb_filters(h: int, w: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Chen-Blum's frequency responses for an h x w image, cached per size: the DoG contrast-sensitivity filter
    (h, w // 2 + 1), and the two unnormalised 31x31 Gaussians (sigma 2 and 4) as spectra (2, H, W // 2 + 1) of
    a zero-padded H x W grid (H >= h + 15, W >= w + 15), on which circular convolution is ``filter2(G, y,
    'same')`` with zero padding; and (H, W)."""
    f0, f1, amp = 15.3870, 1.3456, 0.7622
    r = _radius(h, w, w / 30, h / 30, device)
    sd = torch.exp(-((r / f0) ** 2)) - amp * torch.exp(-((r / f1) ** 2))
    hp, wp = (scipy.fft.next_fast_len(max(n + 15, 31), real=True) for n in (h, w))  # also holds the window
    x = torch.arange(-15, 16, dtype=torch.float64, device=device)
    kernels = torch.zeros(2, hp, wp, dtype=torch.float64, device=device)
    for i, sg in enumerate((2.0, 4.0)):
        g = torch.exp(-(x**2) / (2 * sg * sg)) / math.sqrt(2 * math.pi * sg * sg)
        kernels[i, :31, :31] = g[:, None] * g[None, :]
    kernels = torch.roll(kernels, (-15, -15), (1, 2))  # centre the window on the origin
    return sd.to(dtype), torch.fft.rfft2(kernels.to(dtype)), (hp, wp)


def qcb(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Qcb (Chen and Blum 2009): contrast preservation under a DoG contrast-sensitivity filter.

    Both stages filter in the frequency domain: the DoG as in the published code, the two Gaussians of the
    contrast ``|G2 * Y / G4 * Y - 1|`` as zero-padded linear convolutions. The published code's complex
    values are real up to rounding (see :func:`_radius`). ``dtype`` float32 runs the FFTs and everything
    after them in single precision.
    """
    z = 1e-4  # and the exponents p = 3, q = 2 of the contrast response c^p / (c^q + z)
    h, w = f.shape[-2:]
    sd, gauss, padded = _qcb_filters(h, w, dtype, f.device)
    # All three images in one batch of channels.
    x = torch.cat([_normalize255(a), _normalize255(b), _normalize255(f)], 1).to(dtype)
    y = torch.fft.irfft2(torch.fft.rfft2(x) * sd, s=(h, w))
    yg = torch.fft.irfft2(torch.fft.rfft2(y, s=padded).unsqueeze(2) * gauss, s=padded)[..., :h, :w]
    g2, g4 = yg[:, :, 0], yg[:, :, 1]  # (B, 3, h, w) each
    c = ((g2 - g4) / g4).abs_()  # |g2 / g4 - 1|
    c2 = c * c
    c = (c2 * c).div_(c2 + z)
    ca, cb, cf = c[:, 0:1], c[:, 1:2], c[:, 2:3]

    def preserve(c: torch.Tensor) -> torch.Tensor:
        lo, hi = torch.minimum(c, cf), torch.maximum(c, cf)
        return torch.where(hi > 0, lo / hi, 1.0)

    a2, b2 = ca * ca, cb * cb
    den = a2 + b2
    la = torch.where(den > 0, a2 / den, 0.5)
    return (la * preserve(ca) + (1 - la) * preserve(cb)).flatten(1).mean(1, dtype=torch.float64)


def _block_sum(x: torch.Tensor, size: int = 16) -> torch.Tensor:
    """Per-block sums over size x size blocks, zero-padding partial blocks (MATLAB ``blkproc``)."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (-w) % size, 0, (-h) % size))
    return F.avg_pool2d(x, size) * size * size


@lru_cache(maxsize=8)
def _qcv_filter(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Chen-Varshney's contrast-sensitivity response for an h x w image (h, w // 2 + 1), cached per size."""
    r = _radius(h, w, w / 8, h / 8, device)
    return 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))


def qcv(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, window: int = 16, alpha: float = 5.0) -> torch.Tensor:
    """Qcv (Chen and Varshney 2007): CSF-filtered local differences weighted by edge saliency (lower is
    better). The published code squares complex values that are real up to rounding (see :func:`_radius`)."""
    f, src = _normalize255(f), torch.cat([_normalize255(a), _normalize255(b)], 1)  # (B, 2, H, W) A and B
    h, w = f.shape[-2:]
    gx, gy = sobel(src)  # the code's vertical kernel is -SOBEL_Y; only squares are used
    sal = _block_sum(torch.addcmul(gx * gx, gy, gy) ** (alpha / 2), window)  # |grad|^alpha per block
    dist = _block_sum(_freq_filter(src - f, _qcv_filter(h, w, f.device)) ** 2, window) / (window * window)
    num = (sal * dist).flatten(1).sum(1)
    den = sal.flatten(1).sum(1)
    return (num / den.where(den > 0, torch.ones_like(den))).where(den > 0, torch.zeros_like(den))


def _box_sum(x: torch.Tensor, size: int) -> torch.Tensor:
    """'valid' size x size window sums from an integral image. Exact here: the inputs are 8-bit levels or
    their 2x2 averages (multiples of 1/4^k), whose sums float64 represents exactly."""
    c = F.pad(x, (1, 0, 1, 0)).cumsum(-1).cumsum(-2)
    return c[..., size:, size:] - c[..., :-size, size:] - c[..., size:, :-size] + c[..., :-size, :-size]


def _mef_ssim_scale(
    seq: torch.Tensor, fi: torch.Tensor, k: float = 0.03, size: int = 11, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """One scale of MEF-SSIM (Ma, Zeng and Wang 2015) for a (B, S, H, W) source stack, vectorised.

    The reference code builds, per 11x11 patch, a desired patch from the sources' normalised structures
    and compares it with the fused patch by SSIM; every patch statistic it needs is a windowed moment,
    so the whole map comes from box and Gaussian filtering. The box moments are exact (float64 integral
    images); with ``dtype`` float32 everything after them is computed in float32.
    """
    s = seq.shape[1]
    n = size * size
    gau = gaussian_window(size, 1.5, device=seq.device)
    pairs = [(i, j) for i in range(s) for j in range(i, s)]
    prods = torch.cat([seq[:, i : i + 1] * seq[:, j : j + 1] for i, j in pairs], 1)
    # Box moments from exact window sums: n * cov = sum(xy) - sum(x) sum(y) / n, exactly 0 on flat windows.
    sb = _box_sum(torch.cat([seq, prods], 1), size)
    cov_box = {p: ((sb[:, s + t] - sb[:, p[0]] * sb[:, p[1]] / n) / n).to(dtype) for t, p in enumerate(pairs)}
    ed = torch.stack([torch.sqrt((n * cov_box[(i, i)]).clamp_min(0)) + 0.001 for i in range(s)], 1)
    flat = torch.stack([cov_box[(i, i)] <= 0 for i in range(s)], 1)
    eps = torch.finfo(torch.float64).eps
    var_sum = sum(cov_box[(min(i, j), max(i, j))] for i in range(s) for j in range(s))
    num = torch.sqrt((n * var_sum).clamp_min(0)) + eps
    den = (ed - 0.001).sum(1) + eps
    ratio = (num / den).clamp(eps, 1 - eps)
    # tan in float64: in float32, pi/2 rounds above pi/2 and tan turns negative
    p = torch.tan(math.pi / 2 * ratio.double()).clamp(max=10).to(dtype)
    wmap = (ed / size) ** p[:, None] + eps
    wmap = wmap / wmap.sum(1, keepdim=True)
    c = (wmap / ed).masked_fill(flat, 0)  # desired patch = sum_k c_k (X_k - mu_k), before scaling
    norm2 = n * sum(c[:, i] * c[:, j] * cov_box[(min(i, j), max(i, j))] for i in range(s) for j in range(s))
    norm2 = norm2.clamp_min(0)
    scale = (ed.amax(1) / torch.sqrt(norm2).where(norm2 > 0, torch.ones_like(norm2))).where(
        norm2 > 0, torch.zeros_like(norm2)
    )
    # Gaussian moments of centred data (moments are shift-invariant; keeps float32 accurate).
    off = torch.cat([seq, fi], 1).mean(dim=(1, 2, 3), keepdim=True)
    sc, fc = seq - off, fi - off
    gprods = torch.cat([sc[:, i : i + 1] * sc[:, j : j + 1] for i, j in pairs] + [sc * fc, fc * fc], 1)
    mg = filter_valid(torch.cat([sc, fc, gprods], 1), gau, dtype)
    mu_g, mu_f = mg[:, :s], mg[:, s]
    cov_g = {p: mg[:, s + 1 + t] - mu_g[:, p[0]] * mu_g[:, p[1]] for t, p in enumerate(pairs)}
    cov_xf = mg[:, s + 1 + len(pairs) : 2 * s + 1 + len(pairs)] - mu_g * mu_f[:, None]
    var_f = mg[:, -1] - mu_f * mu_f
    var_r = scale**2 * sum(c[:, i] * c[:, j] * cov_g[(min(i, j), max(i, j))] for i in range(s) for j in range(s))
    cov_rf = scale * (c * cov_xf).sum(1)
    cc = (k * 255) ** 2
    return ((2 * cov_rf + cc) / (var_r + var_f + cc)).flatten(1).mean(1, dtype=torch.float64)


def mef_ssim(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """MEF-SSIM over 3 scales, weights (0.0448, 0.2856, 0.3001) renormalised, the two sources as the
    exposure stack (what the tang code reports as MS-SSIM). Scales that no longer fit the 11x11 window
    are dropped and the remaining weights renormalised."""
    weights = torch.tensor([0.0448, 0.2856, 0.3001], dtype=torch.float64)
    seq, fi = torch.cat([a, b], 1), f
    qs = []
    for level in range(3):
        if min(seq.shape[-2:]) < 11:
            break
        qs.append(_mef_ssim_scale(seq, fi, dtype=dtype))
        if level < 2:
            # imfilter(ones(2)/4, 'symmetric', 'same') then every other pixel.
            seq, fi = (F.avg_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, 2, ceil_mode=False) for x in (seq, fi))
    if not qs:
        return torch.ones(f.shape[0], dtype=torch.float64, device=f.device)
    w = weights[: len(qs)].to(f.device)
    w = w / w.sum()
    q = torch.stack(qs, 1)
    return torch.exp((w * torch.log(q.clamp_min(1e-300))).sum(1))
