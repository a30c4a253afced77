"""Error metrics: MSE, RMSE, PSNR. Inputs (B, 1, H, W) float64 levels 0-255; outputs (B,)."""

from __future__ import annotations

import torch


def mse(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over the two sources of the mean squared error, on the 0-255 scale."""
    return 0.5 * (((f - a) ** 2).flatten(1).mean(1) + ((f - b) ** 2).flatten(1).mean(1))


def vifb_mse(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """VIFB's "mse": sqrt(sum (S - F)^2) / N (a root of the sum, not a mean square), mean of the two."""
    n = f.shape[-1] * f.shape[-2]
    return 0.5 * (torch.sqrt(((f - a) ** 2).flatten(1).sum(1)) + torch.sqrt(((f - b) ** 2).flatten(1).sum(1))) / n


def rmse(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMSE: mean over the two sources of the root mean squared error (0-255)."""
    return 0.5 * (((f - a) ** 2).flatten(1).mean(1).sqrt() + ((f - b) ** 2).flatten(1).mean(1).sqrt())


def psnr(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, variant: str = "standard") -> torch.Tensor:
    """PSNR in dB; +inf when F equals both sources.

    standard: 10 log10(255^2 / MSE). tang: MSE taken on the [0, 1] scale (+48.13 dB). cddfuse: the peak
    is max(F). vifb: 20 log10(255 / sqrt(VIFB "mse")).
    """
    if variant == "vifb":
        return 20 * torch.log10(255.0 / torch.sqrt(vifb_mse(f, a, b)))
    m = mse(f, a, b)
    if variant == "tang":
        return 20 * torch.log10(255.0 / torch.sqrt(m / 255.0**2))
    peak = f.flatten(1).amax(1) if variant == "cddfuse" else torch.full_like(m, 255.0)
    return 10 * torch.log10(peak**2 / m)
