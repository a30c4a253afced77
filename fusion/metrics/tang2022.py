"""The tang code as the 2022 papers ran it (commit of 2022-05-02, before the fix of 2023-03-03).

No metric function changed in the fix; the old dispatcher handed some metrics uint8 images and others images
divided by 255, and MATLAB's uint8 arithmetic saturates. These functions reproduce what MATLAB computed
(``shared/docs/metric-conventions.md``, "Older tang code"). Inputs are grey levels 0-255 (rounded), as the
``tang2022`` convention makes them; results are float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fusion.metrics import gradient

_TG, _KG, _DG, _TA, _KA, _DA = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's round: halves away from zero."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def sd(f: torch.Tensor) -> torch.Tensor:
    """SD on uint8 F: ``d = uint8(F - mean(F))`` saturates (negative differences become 0), then ``d.^2``
    saturates at 255; the sum is in double. Never above sqrt(255)."""
    f = f.double()
    mu = f.flatten(1).mean(1).view(-1, 1, 1, 1)
    d = _round_half_away(f - mu).clamp(0, 255)
    return torch.sqrt((d * d).clamp(max=255).flatten(1).sum(1) / f[0].numel())


def sf(f: torch.Tensor) -> torch.Tensor:
    """SF on f = F / 255: the fixed code's SF divided by 255."""
    return gradient.spatial_frequency(f.double() / 255.0)


def _sobel_matlab(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tang code's Sobel loops, zero padding, the six non-zero terms summed left to right (so that exact
    zeros and ties come out as in MATLAB); i is the row, j the column."""
    q = torch.nn.functional.pad(p, (1, 1, 1, 1))
    h, w = p.shape[-2:]

    def at(di: int, dj: int) -> torch.Tensor:  # p(i + di, j + dj) for every (i, j)
        return q[..., 1 + di : 1 + di + h, 1 + dj : 1 + dj + w]

    sx = -at(1, 1) - 2 * at(0, 1) - at(-1, 1) + at(1, -1) + 2 * at(0, -1) + at(-1, -1)
    sy = at(1, 1) - at(-1, 1) + 2 * at(1, 0) - 2 * at(-1, 0) + at(1, -1) - at(-1, -1)
    return sx, sy


def _sqrt_ieee(x: torch.Tensor) -> torch.Tensor:
    """Square root rounded correctly, as MATLAB's: torch's vectorised float64 ``sqrt`` on CPU can be one ulp off
    (AVX-512 here), and Qabf compares strengths for exact equality, so one ulp flips its tie rule on a few pixels
    (3.5e-5 relative on the 42 TNO images); numpy's ``sqrt`` is IEEE's."""
    return torch.from_numpy(np.sqrt(x.detach().cpu().numpy())).to(x.device)


def qabf(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Qabf on a, b, f in [0, 1]: the same formula as the fixed code, but the strength ratio where gX == gF
    exactly is gF itself, which on [0, 1] data is small (about 5e-4 instead of about 1)."""
    x = torch.cat([f, a, b], 1).double() / 255.0
    sx, sy = _sobel_matlab(x)
    g = _sqrt_ieee(sx * sx + sy * sy)
    ang = torch.where(sx == 0, torch.full_like(sx, math.pi / 2), torch.atan(sy / torch.where(sx == 0, 1.0, sx)))
    gf, gs = g[:, :1], g[:, 1:]
    safe = torch.where(gs > gf, gs, gf).clamp_min(1e-300)
    ratio = torch.where(gs > gf, gf / safe, torch.where(gs == gf, gf, gs / safe))
    aa = 1 - (ang[:, 1:] - ang[:, :1]).abs() / (math.pi / 2)
    q = _TG / (1 + torch.exp(_KG * (ratio - _DG))) * (_TA / (1 + torch.exp(_KA * (aa - _DA))))
    num = (q * gs).flatten(1).sum(1)
    den = gs.flatten(1).sum(1)
    return (num / den.clamp_min(1e-300)).where(den > 0, torch.zeros_like(den))
