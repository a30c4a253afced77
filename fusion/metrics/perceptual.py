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

from fusion.metrics import structural
from fusion.metrics._kernels import (
    filter_valid,
    gaussian_window,
    min_max_ratio,
    round_half_up,
    sobel,
)


def _normalize255(x: torch.Tensor) -> torch.Tensor:
    """Z. Liu's normalize1 of each channel of (B, C, H, W): min-max to 0..255, rounded half up; a flat
    channel becomes 0."""
    lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    span = torch.where(hi > lo, hi - lo, torch.inf)  # the flat case: (x - lo) / inf = 0
    return round_half_up((x - lo) / span * 255)  # in the reference's order: rounding ties stay as they were


def _radius(h: int, w: int, sx: float, sy: float, device) -> torch.Tensor:
    """MATLAB ``freqspace([h w], 'meshgrid')`` frequencies, scaled, as the ifftshift-ed radius map, (h, w // 2 + 1)
    columns for ``rfft2``.

    The map is even in the DFT sense (mirror frequencies have bitwise equal radii), so a filter built on it
    keeps real images real: the published codes' complex results differ from the real ones only by rounding.
    """
    fx, fy = radius_axes(h, w, sx, sy, device)
    return torch.sqrt(fx[None, :] ** 2 + fy[:, None] ** 2)


def radius_axes(h: int, w: int, sx: float, sy: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ifftshift-ed frequency axes of :func:`_radius`: (w // 2 + 1,) and (h,); the map's rows t..b are
    ``sqrt(fx^2 + fy[t:b, None]^2)``. Shifting the axes before the outer sum gives the same values as
    shifting the full map, and only the half spectrum is ever allocated (192 MB at 24 megapixels)."""
    fx = (torch.arange(w, dtype=torch.float64, device=device) - w // 2) * (2.0 / w) * sx
    fy = (torch.arange(h, dtype=torch.float64, device=device) - h // 2) * (2.0 / h) * sy
    return torch.fft.ifftshift(fx)[: w // 2 + 1], torch.fft.ifftshift(fy)


def _freq_filter(x: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """``real(ifft2(ifftshift(fftshift(fft2(x)) .* S)))`` with S already ifftshift-ed, as (h, w // 2 + 1)."""
    return torch.fft.irfft2(torch.fft.rfft2(x) * response, s=x.shape[-2:])


def _fast_even_len(n: int) -> int:
    """The smallest even length >= n whose FFT is fast (factors 2, 3, 5, 7, 11): real FFTs of odd lengths
    take about twice as long."""
    m = n + n % 2
    while scipy.fft.next_fast_len(m) != m:
        m += 2
    return m


def qcb_dog_response(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Chen-Blum's DoG contrast-sensitivity response for an h x w image, (h, w // 2 + 1) for ``rfft2``."""
    return qcb_dog(_radius(h, w, w / 30, h / 30, device))


def qcb_dog(r: torch.Tensor) -> torch.Tensor:
    """Chen-Blum's DoG response at frequency radii ``r`` (scaled as :func:`qcb_dog_response` scales them)."""
    f0, f1, amp = 15.3870, 1.3456, 0.7622
    return torch.exp(-((r / f0) ** 2)) - amp * torch.exp(-((r / f1) ** 2))


def qcb_gaussians(device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1-D factors (31,) of Chen-Blum's two unnormalised Gaussians, sigma 2 and 4 (float64)."""
    x = torch.arange(-15, 16, dtype=torch.float64, device=device)
    return tuple(torch.exp(-(x**2) / (2 * sg * sg)) / math.sqrt(2 * math.pi * sg * sg) for sg in (2.0, 4.0))


def qcb_quality(g2: torch.Tensor, g4: torch.Tensor) -> torch.Tensor:
    """Qcb's quality map (B, 1, h, w) from the Gaussian-filtered (sigma 2 and 4) DoG responses (B, 3, h, w) of A,
    B and F: the contrast |g2 / g4 - 1| through the response c^3 / (c^2 + z), preserved as in Chen-Blum."""
    z = 1e-4  # and the exponents p = 3, q = 2 of the contrast response c^p / (c^q + z)
    c = ((g2 - g4) / g4).abs_()  # |g2 / g4 - 1|
    c2 = c * c
    c = (c2 * c).div_(c2 + z)
    ca, cb, cf = c[:, 0:1], c[:, 1:2], c[:, 2:3]
    a2, b2 = ca * ca, cb * cb
    den = a2 + b2
    la = torch.where(den > 0, a2 / den, 0.5)
    return la * min_max_ratio(ca, cf, 1.0) + (1 - la) * min_max_ratio(cb, cf, 1.0)  # contrast preserved


@lru_cache(maxsize=4)  # a dataset has one or a few sizes; the spectra of a 1280x1024 image take ~20 MB
def _qcb_filters(h: int, w: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Chen-Blum's frequency responses for an h x w image, cached per size: the DoG contrast-sensitivity filter
    (h, w // 2 + 1), and the two unnormalised 31x31 Gaussians (sigma 2 and 4) as spectra (2, H, W // 2 + 1) of
    a zero-padded H x W grid (H >= h + 15, W >= w + 15), on which circular convolution is ``filter2(G, y,
    'same')`` with zero padding; and (H, W)."""
    sd = qcb_dog_response(h, w, device)
    hp, wp = (_fast_even_len(max(n + 15, 31)) for n in (h, w))  # also holds the window
    kernels = torch.zeros(2, hp, wp, dtype=torch.float64, device=device)
    for i, g in enumerate(qcb_gaussians(device)):
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
    h, w = f.shape[-2:]
    sd, gauss, padded = _qcb_filters(h, w, dtype, f.device)
    # All three images in one batch of channels.
    x = _normalize255(torch.cat([a, b, f], 1)).to(dtype)
    y = torch.fft.irfft2(torch.fft.rfft2(x) * sd, s=(h, w))
    yg = torch.fft.irfft2(torch.fft.rfft2(y, s=padded).unsqueeze(2) * gauss, s=padded)[..., :h, :w]
    q = qcb_quality(yg[:, :, 0], yg[:, :, 1])  # from (B, 3, h, w) each: (B, 1, h, w)
    return q.flatten(1).mean(1, dtype=torch.float64)


def _block_sum(x: torch.Tensor, size: int = 16) -> torch.Tensor:
    """Per-block sums over size x size blocks, zero-padding partial blocks (MATLAB ``blkproc``)."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (-w) % size, 0, (-h) % size))
    return F.avg_pool2d(x, size) * size * size


@lru_cache(maxsize=4)
def _qcv_filter(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Chen-Varshney's contrast-sensitivity response for an h x w image (h, w // 2 + 1), cached per size."""
    return qcv_csf(_radius(h, w, w / 8, h / 8, device))


def qcv_csf(r: torch.Tensor) -> torch.Tensor:
    """Chen-Varshney's contrast-sensitivity response at frequency radii ``r`` (scaled as in :func:`_qcv_filter`)."""
    return 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))


def qcv_saliency(grad: tuple[torch.Tensor, torch.Tensor], alpha: float = 5.0) -> torch.Tensor:
    """Chen-Varshney's edge saliency |grad|^alpha of the sources' Sobel responses (the code's vertical kernel
    is -SOBEL_Y; only squares are used)."""
    gx, gy = grad
    s2 = torch.addcmul(gx * gx, gy, gy)
    # alpha = 5 as s2^2 sqrt(s2), several times faster than pow in float64
    return s2 * s2 * s2.sqrt() if alpha == 5 else s2 ** (alpha / 2)


def qcv(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, window: int = 16, alpha: float = 5.0) -> torch.Tensor:
    """Qcv (Chen and Varshney 2007): CSF-filtered local differences weighted by edge saliency (lower is
    better). The published code squares complex values that are real up to rounding (see :func:`_radius`)."""
    fab = _normalize255(torch.cat([f, a, b], 1))
    f, src = fab[:, :1], fab[:, 1:]  # (B, 1, H, W) and (B, 2, H, W): A and B
    h, w = f.shape[-2:]
    sal = _block_sum(qcv_saliency(sobel(src), alpha), window)
    dist = _block_sum(_freq_filter(src - f, _qcv_filter(h, w, f.device)) ** 2, window) / (window * window)
    num = (sal * dist).flatten(1).sum(1)
    den = sal.flatten(1).sum(1)
    return (num / den.where(den > 0, torch.ones_like(den))).where(den > 0, torch.zeros_like(den))


def _box_sum(x: torch.Tensor, size: int) -> torch.Tensor:
    """'valid' size x size window sums, as running sums along rows then columns. Exact here: the inputs are
    8-bit levels or their 2x2 averages (multiples of 1/4^k), whose sums float64 represents exactly."""
    r = F.pad(x, (1, 0)).cumsum(-1)
    r = r[..., size:] - r[..., :-size]  # (..., H, W - size + 1)
    c = F.pad(r, (0, 0, 1, 0)).cumsum(-2)
    return c[..., size:, :] - c[..., :-size, :]


def _mef_ssim_scale(
    a: torch.Tensor,
    b: torch.Tensor,
    f: torch.Tensor,
    k: float = 0.03,
    size: int = 11,
    dtype: torch.dtype = torch.float64,
    ssim: bool = False,
    off: torch.Tensor | None = None,
    reduce: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One scale of MEF-SSIM (Ma, Zeng and Wang 2015) for the two-image stack (A, B) and fused F, each
    (B, 1, H, W), vectorised.

    The reference code builds, per 11x11 patch, a desired patch from the sources' normalised structures
    and compares it with the fused patch by SSIM; every patch statistic it needs is a windowed moment,
    so the whole map comes from box and Gaussian filtering. The box moments are exact (float64 integral
    images); with ``dtype`` float32 everything after them is computed in float32. With ``ssim``, also returns
    SSIM(F, A) and SSIM(F, B) (11x11 Gaussian, L = 255), which need a subset of the same moments.
    ``off`` (default: the images' mean) centres the Gaussian moments; ``reduce=False`` returns the 'valid' maps
    instead of their means (for scoring in strips, with the whole image's ``off``).
    """
    n = size * size
    # Box moments from exact window sums: n * cov = sum(xy) - sum(x) sum(y) / n, exactly 0 on flat windows.
    sb = _box_sum(torch.cat([a, b, a * a, b * b, a * b], 1), size)
    var = ((sb[:, 2:4] - sb[:, :2] * sb[:, :2] / n) / n).to(dtype)  # (B, 2, h, w): A and B
    cov = ((sb[:, 4] - sb[:, 0] * sb[:, 1] / n) / n).to(dtype)  # (B, h, w)
    ed = torch.sqrt((n * var).clamp_min(0)) + 0.001
    eps = torch.finfo(torch.float64).eps
    num = torch.sqrt((n * (var[:, 0] + 2 * cov + var[:, 1])).clamp_min(0)) + eps  # norm of the summed patches
    den = (ed - 0.001).sum(1) + eps
    ratio = (num / den).clamp(eps, 1 - eps)
    # tan in float64: in float32, pi/2 rounds above pi/2 and tan turns negative
    p = torch.tan(math.pi / 2 * ratio.double()).clamp(max=10).to(dtype)
    wmap = (ed / size) ** p[:, None] + eps
    wmap = wmap / wmap.sum(1, keepdim=True)
    c = (wmap / ed).masked_fill(var <= 0, 0)  # desired patch = sum_k c_k (X_k - mu_k), before scaling
    ca, cb = c[:, 0], c[:, 1]

    def quad(v: torch.Tensor, cv: torch.Tensor) -> torch.Tensor:  # c' V c for the 2x2 (co)variances
        return ca * ca * v[:, 0] + 2 * ca * cb * cv + cb * cb * v[:, 1]

    norm2 = (n * quad(var, cov)).clamp_min(0)
    scale = torch.where(norm2 > 0, ed.amax(1) / norm2.sqrt(), 0.0)
    # Gaussian moments of centred data (moments are shift-invariant; keeps float32 accurate). The first eight
    # channels are SSIM's (same window, same offset): see mef_ssim_and_ssim.
    off = structural.centre(f, a, b) if off is None else off
    fc, ac, bc = ((x - off).to(dtype) for x in (f, a, b))
    gau = gaussian_window(size, 1.5, device=a.device)
    m = filter_valid(torch.cat([fc, ac, bc, fc * fc, ac * ac, bc * bc, fc * ac, fc * bc, ac * bc], 1), gau, dtype)
    mu_f, mu = m[:, 0], m[:, 1:3]
    var_f = m[:, 3] - mu_f * mu_f
    var_g = m[:, 4:6] - mu * mu
    cov_xf = m[:, 6:8] - mu * mu_f[:, None]
    cov_g = m[:, 8] - mu[:, 0] * mu[:, 1]
    var_r = scale * scale * quad(var_g, cov_g)
    cov_rf = scale * (ca * cov_xf[:, 0] + cb * cov_xf[:, 1])
    k2 = (k * 255) ** 2
    q = (2 * cov_rf + k2) / (var_r + var_f + k2)
    if reduce:
        q = q.flatten(1).mean(1, dtype=torch.float64)
    if ssim:  # Wang's SSIM (L = 255) of F against A and B from the same moments
        return q, structural.ssim_from_moments(m, off, (0.01 * 255) ** 2, (0.03 * 255) ** 2, reduce=reduce)
    return q


def mef_ssim(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """MEF-SSIM over 3 scales, weights (0.0448, 0.2856, 0.3001) renormalised, the two sources as the
    exposure stack (what the tang code reports as MS-SSIM). Scales that no longer fit the 11x11 window
    are dropped and the remaining weights renormalised."""
    return _mef_ssim(f, a, b, dtype)[0]


def mef_ssim_and_ssim(
    f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """MEF-SSIM and Wang's SSIM (L = 255, mean of SSIM(F, A) and SSIM(F, B)) together: the first scale of
    MEF-SSIM filters every moment SSIM needs, so SSIM costs no filtering of its own."""
    return _mef_ssim(f, a, b, dtype, ssim=True)


def _mef_ssim(
    f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, ssim: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    qs, s = [], None
    if ssim and min(f.shape[-2:]) < 11:  # SSIM's window shrinks to fit; MEF-SSIM has no scale here
        s = sum(structural.ssim_pair(f, a, b, "wang", dtype)) / 2
    for level in range(3):
        if min(a.shape[-2:]) < 11:
            break
        if ssim and level == 0:
            q, (sa, sb) = _mef_ssim_scale(a, b, f, dtype=dtype, ssim=True)
            s = (sa + sb) / 2
        else:
            q = _mef_ssim_scale(a, b, f, dtype=dtype)
        qs.append(q)
        if level < 2:
            # imfilter(ones(2)/4, 'symmetric', 'same') then every other pixel, the three images at once.
            abf = F.avg_pool2d(F.pad(torch.cat([a, b, f], 1), (0, 1, 0, 1), mode="replicate"), 2, 2)
            a, b, f = abf[:, 0:1], abf[:, 1:2], abf[:, 2:3]
    if not qs:
        return torch.ones(f.shape[0], dtype=torch.float64, device=f.device), s
    return mef_combine(torch.stack(qs, 1)), s


def mef_combine(q: torch.Tensor) -> torch.Tensor:
    """MEF-SSIM from the per-scale means (B, S), S <= 3: their weighted geometric mean, the weights
    (0.0448, 0.2856, 0.3001) cut to S scales and renormalised."""
    w = torch.tensor([0.0448, 0.2856, 0.3001], dtype=torch.float64, device=q.device)[: q.shape[1]]
    w = w / w.sum()
    return torch.exp((w * torch.log(q.clamp_min(1e-300))).sum(1))
