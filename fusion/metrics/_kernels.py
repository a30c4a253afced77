"""Shared building blocks of the metrics: window filters, gradients, histograms, grey conversions.

All take batched (B, 1, H, W) tensors and run on CPU or GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))  # MATLAB fspecial('sobel')
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def gaussian_window(size: int, sigma: float, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd ``size``; its outer product is MATLAB's ``fspecial('gaussian')``."""
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def _toeplitz(rows: int, g: torch.Tensor) -> torch.Tensor:
    """(rows, rows + k - 1) matrix whose product with a column is its 'valid' correlation with ``g``."""
    k = g.numel()
    t = torch.zeros(rows, rows + k - 1, dtype=g.dtype, device=g.device)
    i = torch.arange(rows, device=g.device)
    for j in range(k):
        t[i, i + j] = g[j]
    return t


def _valid_rows(x: torch.Tensor, g: torch.Tensor, strip: int) -> torch.Tensor:
    """'valid' filtering along dim -2 as banded matrix products over strips of ``strip`` output rows."""
    k, h = g.numel(), x.shape[-2]
    ho = h - k + 1
    n = ho // strip
    parts = []
    if n:
        xu = x[..., : n * strip + k - 1, :].unfold(-2, strip + k - 1, strip)  # (..., n, W, strip + k - 1)
        parts.append(torch.matmul(_toeplitz(strip, g), xu.transpose(-1, -2)).flatten(-3, -2))
    if ho > n * strip:  # the last, shorter strip
        parts.append(torch.matmul(_toeplitz(ho - n * strip, g), x[..., n * strip :, :]))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)


def _depthwise_valid(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, stride: int) -> torch.Tensor:
    """float32 'valid' separable filtering with per-channel 1-D windows ``rows``/``cols`` of shape (C, k).

    oneDNN's depthwise convolution is fast for channel counts that are multiples of 8 and several times slower
    for others (3 to 5 channels of a 17-tap window cost over three times as much as 8), so channels go in
    groups of 8 and a remainder of 2 to 7 is zero-padded to 8 (a single channel is fast on its own).
    """
    c, k = rows.shape
    outs = []
    for i in range(0, c, 8):
        xi, ri, ci = x[:, i : i + 8], rows[i : i + 8], cols[i : i + 8]
        n = xi.shape[1]
        if 1 < n < 8:
            xi = F.pad(xi, (0, 0, 0, 0, 0, 8 - n))
            ri, ci = F.pad(ri, (0, 0, 0, 8 - n)), F.pad(ci, (0, 0, 0, 8 - n))
        m = xi.shape[1]
        y = F.conv2d(xi, ri.reshape(m, 1, k, 1), stride=(stride, 1), groups=m)
        outs.append(F.conv2d(y, ci.reshape(m, 1, 1, k), stride=(1, stride), groups=m)[:, :n])
    return outs[0] if len(outs) == 1 else torch.cat(outs, 1)


def filter_valid(x: torch.Tensor, g: torch.Tensor, dtype: torch.dtype = torch.float64, stride: int = 1) -> torch.Tensor:
    """Separable 'valid' filtering of every channel of (B, C, H, W) with the symmetric 1-D window ``g``.

    float64 (the default; the published conventions need it: float32 misses VIFB's fifth digit on some SSIM
    values) runs each pass as a banded matrix product over strips of rows (BLAS), about ten times faster on
    CPU than a float64 depthwise convolution; float32 uses the depthwise convolution. ``stride`` keeps every
    stride-th output row and column (filter-and-downsample, computed directly in float32).
    """
    x, g = x.to(dtype), g.to(dtype)
    if dtype == torch.float32:
        c = x.shape[1]
        return _depthwise_valid(x, g.expand(c, -1), g.expand(c, -1), stride)
    strip = max(32, 4 * g.numel())
    y = _valid_rows(x, g, strip)
    y = _valid_rows(y.transpose(-1, -2), g, strip).transpose(-1, -2)
    return y if stride == 1 else y[..., ::stride, ::stride]


def min_max_ratio(x: torch.Tensor, y: torch.Tensor, both_zero: float) -> torch.Tensor:
    """Elementwise min(x, y) / max(x, y) of non-negative maps; ``both_zero`` where both are 0 (equal
    non-zero values give exactly 1)."""
    lo, hi = torch.minimum(x, y), torch.maximum(x, y)
    return torch.where(hi > 0, lo / hi, both_zero)


def _window_max(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """'valid' running maximum over ``size`` along ``dim``: maxima over 2, 4, 8, ... by doubling, then two
    overlapping power-of-two windows (elementwise maxima; several times faster than CPU max pooling)."""
    p = 1
    while 2 * p <= size:
        n = x.shape[dim]
        x = torch.maximum(x.narrow(dim, 0, n - p), x.narrow(dim, p, n - p))
        p *= 2
    n = x.shape[dim] - (size - p)
    return torch.maximum(x.narrow(dim, 0, n), x.narrow(dim, size - p, n))


def flat_windows(x: torch.Tensor, size: int, tol: float = 0.0) -> torch.Tensor:
    """Boolean (B, C, H - size + 1, W - size + 1): whether each 'valid' size x size window of x is flat.

    A window is flat when its maximum and minimum differ by at most ``tol``: exact (tol 0) where a float32
    moment filter cannot tell a flat window's variance (0) from its rounding.
    """
    c = x.shape[1]
    x = x.float()
    m = _window_max(_window_max(torch.cat([x, -x], 1), size, -2), size, -1)
    return m[:, :c] + m[:, c:] <= tol  # max - min


def sobel(x: torch.Tensor, padding: str = "zeros") -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel responses of (B, C, H, W), 'same' size: correlation with ``SOBEL_X`` and
    ``SOBEL_Y`` (MATLAB's ``fspecial('sobel')`` and its transpose; magnitudes and atan(y/x) as in conv2).

    ``padding``: "zeros" (MATLAB conv2/filter2 'same'), "replicate" or "reflect" (mirror without repeating the
    edge). Computed separably, a [1 2 1] smoothing then a central difference: exact for integer data, as is
    every order of the sums.
    """
    xp = F.pad(x, (1, 1, 1, 1)) if padding == "zeros" else F.pad(x, (1, 1, 1, 1), mode=padding)
    h, w = x.shape[-2:]
    sv = xp[..., :-2, :] + 2 * xp[..., 1:-1, :] + xp[..., 2:, :]  # (..., H, W + 2) smoothed down columns
    sh = xp[..., :, :-2] + 2 * xp[..., :, 1:-1] + xp[..., :, 2:]  # (..., H + 2, W) smoothed along rows
    return sv[..., :, 2:] - sv[..., :, :w], sh[..., :h, :] - sh[..., 2:, :]


def matlab_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB ``gradient``: central differences inside, one-sided at the borders; (gx, gy)."""

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        if n < 2:
            return torch.zeros_like(t)
        g = torch.empty_like(t)
        g.narrow(dim, 0, 1).copy_(t.narrow(dim, 1, 1) - t.narrow(dim, 0, 1))
        g.narrow(dim, n - 1, 1).copy_(t.narrow(dim, n - 1, 1) - t.narrow(dim, n - 2, 1))
        if n > 2:
            g.narrow(dim, 1, n - 2).copy_((t.narrow(dim, 2, n - 2) - t.narrow(dim, 0, n - 2)) / 2)
        return g

    return along(x, 3), along(x, 2)


def histogram(levels: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Per-image histogram of integer levels in [0, bins): (B, ...) -> (B, bins) float64 counts."""
    b = levels.shape[0]
    idx = levels.reshape(b, -1).long() + torch.arange(b, device=levels.device)[:, None] * bins
    return torch.bincount(idx.flatten(), minlength=bins * b).view(b, bins).to(torch.float64)


def joint_histogram(x: torch.Tensor, y: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Per-image joint histogram of integer levels: (B, ...) x (B, ...) -> (B, bins, bins) float64."""
    return histogram(x.reshape(x.shape[0], -1).long() * bins + y.reshape(y.shape[0], -1).long(), bins * bins).view(
        -1, bins, bins
    )


def entropy_of(counts: torch.Tensor, dims: tuple[int, ...] = (1,), log=torch.log2) -> torch.Tensor:
    """Shannon entropy of histogram counts over ``dims`` (0 log 0 = 0)."""
    p = counts / counts.sum(dim=dims, keepdim=True).clamp_min(1e-300)
    return -(p * log(p.where(p > 0, torch.ones_like(p)))).sum(dim=dims) + 0.0


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's rounding for non-negative values (half away from zero), unlike torch's half-to-even."""
    return torch.floor(x + 0.5)


def rgb2gray_matlab(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``rgb2gray`` of uint8 levels (B, 3, H, W) -> (B, 1, H, W) rounded levels."""
    w = x.new_tensor([0.298936021293775, 0.587043074451121, 0.114020904255103]).view(1, 3, 1, 1)
    return round_half_up((x * w).sum(1, keepdim=True))


def rgb2gray_pil(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert('L')`` of uint8 levels (B, 3, H, W) -> (B, 1, H, W): (19595 R + 38470 G + 7471 B + 32768) >> 16,
    in integers (ITU-R 601-2 in 16-bit fixed point)."""
    r, g, b = (x[:, i : i + 1].round().to(torch.int64) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.float64)


def bgr2gray_opencv_float(x: torch.Tensor) -> torch.Tensor:
    """``np.round(cv2.cvtColor(float32 BGR, BGR2GRAY))`` of levels (B, 3, H, W) RGB -> (B, 1, H, W)."""
    r, g, b = (x[:, i : i + 1].to(torch.float32) for i in range(3))
    y = b * 0.114 + g * 0.587 + r * 0.299
    return torch.round(y).to(torch.float64)  # numpy rounds half to even, as torch does
