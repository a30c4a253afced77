"""Shared building blocks of the metrics: window filters and histograms, batched, CPU or GPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_window(size: int, sigma: float, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd ``size`` (MATLAB ``fspecial('gaussian')`` is its outer product)."""
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' filtering of every channel of (B, C, H, W) with the 1-D window ``g``.

    Runs in float32 (several times faster than float64 on CPU); callers centre their data first so the
    rounding error stays far below the precision the metrics are reported with.
    """
    c, k = x.shape[1], g.numel()
    g = g.to(torch.float32)
    x = x.to(torch.float32)
    x = F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def histogram256(x: torch.Tensor) -> torch.Tensor:
    """Per-image 256-bin histogram of integer levels 0..255: (B, ...) -> (B, 256) float64 counts."""
    b = x.shape[0]
    levels = x.reshape(b, -1).long()
    offset = torch.arange(b, device=x.device)[:, None] * 256
    return torch.bincount((levels + offset).flatten(), minlength=256 * b).view(b, 256).to(torch.float64)
