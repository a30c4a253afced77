"""First metrics of the ``standard`` convention: EN, SD, MSE, PSNR and SSIM.

Inputs are grey (B, 1, H, W) tensors on the 0-255 scale (see :func:`fusion.metrics.prepare`); every
function returns one value per image, shape (B,). Two-source metrics are the mean of the fused image's
score against the visible and against the infrared image.
"""

from __future__ import annotations

import torch

from fusion.metrics._kernels import filter_valid, gaussian_window, histogram256


def entropy(f: torch.Tensor) -> torch.Tensor:
    """EN: Shannon entropy in bits of the 256-bin grey-level histogram of round(F)."""
    hist = histogram256(f.round().clamp(0, 255))
    p = hist / hist.sum(1, keepdim=True)
    # + 0.0 turns the -0.0 of a flat image into 0.0
    return -(p * torch.log2(p.where(p > 0, torch.ones_like(p)))).sum(1) + 0.0


def std(f: torch.Tensor) -> torch.Tensor:
    """SD: population standard deviation of F (divide by N)."""
    return f.double().flatten(1).std(dim=1, correction=0)


def mse(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MSE: mean over the two sources of the mean squared error, on the 0-255 scale."""
    fd = f.double()
    return 0.5 * (((fd - a.double()) ** 2).flatten(1).mean(1) + ((fd - b.double()) ** 2).flatten(1).mean(1))


def psnr(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB with peak 255 on the two-source MSE; +inf when F equals both sources."""
    m = mse(f, a, b)
    return 10 * torch.log10(255.0**2 / m)


def ssim_index(
    x: torch.Tensor, y: torch.Tensor, win: int = 11, sigma: float = 1.5, peak: float = 255.0
) -> torch.Tensor:
    """Mean SSIM of (B, 1, H, W) images with a Gaussian window, 'valid' positions, K = (0.01, 0.03).

    The window shrinks to the largest odd size that fits tiny images; below 3 pixels one global window
    is used.
    """
    win = min(win, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    # Centre on a common offset: variances are shift-invariant and float32 filtering stays precise.
    off = 0.5 * (x.mean(dim=(1, 2, 3), keepdim=True) + y.mean(dim=(1, 2, 3), keepdim=True))
    xc, yc = x.double() - off, y.double() - off
    if win < 3:
        mx, my = xc.mean(dim=(2, 3)), yc.mean(dim=(2, 3))
        vx = (xc**2).mean(dim=(2, 3)) - mx**2
        vy = (yc**2).mean(dim=(2, 3)) - my**2
        cxy = (xc * yc).mean(dim=(2, 3)) - mx * my
    else:
        g = gaussian_window(win, sigma, device=x.device)
        m = filter_valid(torch.cat([xc, yc, xc * xc, yc * yc, xc * yc], dim=1), g).double()
        mx, my = m[:, 0:1], m[:, 1:2]
        vx, vy, cxy = m[:, 2:3] - mx**2, m[:, 3:4] - my**2, m[:, 4:5] - mx * my
    off = off.view(-1, 1, 1, 1) if mx.ndim == 4 else off.view(-1, 1)
    mx, my = mx + off, my + off
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def ssim(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K = (0.01, 0.03), L = 255, 'valid'
    windows, averaged over the map; mean of SSIM(F, A) and SSIM(F, B)."""
    return 0.5 * (ssim_index(f, a) + ssim_index(f, b))


# The field's names, as in the papers' tables.
STANDARD = {
    "EN": (lambda f, a, b: entropy(f), True),
    "SD": (lambda f, a, b: std(f), True),
    "SSIM": (ssim, True),
    "PSNR": (psnr, True),
    "MSE": (mse, False),
}
