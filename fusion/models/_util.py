"""Small helpers shared by the fusion networks."""

from __future__ import annotations

import torch


def clamp01(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] in value but pass gradients straight through.

    A hard clamp would zero the gradient of every out-of-range pixel, so a freshly initialised network whose
    output starts out of range could never learn its way back; the straight-through form keeps the loss's pull.
    """
    return x + (x.clamp(0, 1) - x).detach()
