"""Bounded memory on large images: local methods and the colour path run in horizontal strips.

A 24-megapixel pair is 96 MB per float channel, and a method such as GFF keeps about twenty image-sized
temporaries alive, so whole-image processing grows to gigabytes. Here every step that is local runs on strips of
rows with a halo of context:

- :class:`Strips` wraps a fusion method whose output at a pixel depends only on inputs within ``halo`` rows. The
  result equals the whole-image result: each strip is computed from a window that reaches ``halo`` rows beyond it,
  and only the strip's own rows are kept. Strip tops fall on multiples of ``align`` so that pyramid methods keep
  their sampling grid.
- :func:`fuse_to_array` splits the visible image into Y and CbCr strip by strip, fuses Y, and merges and
  quantises strip by strip into the uint8/uint16 array that is written to disk. Every step is per pixel, so the
  output equals :func:`fusion.color.fuse_color` followed by :func:`fusion.io.to_uint` exactly.

Images of up to ``strip_pixels`` pixels plus halos run whole, as before.
"""

from __future__ import annotations

import numpy as np
import torch
from kornia.color import rgb_to_ycbcr
from torch import nn

from fusion.color import merge_luma
from fusion.errors import NonFiniteOutput
from fusion.io import to_uint

STRIP_PIXELS = 1_000_000  # pixels per strip, halo excluded: temporaries of a few hundred MB at most


def strip_bounds(height: int, rows: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``(top, bottom, window_top, window_bottom)`` of each strip of ``rows`` rows with ``halo`` rows of context."""
    return [
        (top, min(top + rows, height), max(top - halo, 0), min(top + rows + halo, height))
        for top in range(0, height, rows)
    ]


class Strips(nn.Module):
    """Run a local fusion method strip by strip (see the module docstring).

    Args:
        method: ``forward(vis, ir) -> fused`` on (B, 1, H, W) tensors; its output at a pixel must depend only on
            inputs within ``halo`` rows, and its parameters not on the image height once a window has more than
            ``halo`` rows. Its ``strip_context()`` gives ``(halo, align)``.
        strip_pixels: target pixels per strip, halo excluded.
    """

    def __init__(self, method: nn.Module, strip_pixels: int = STRIP_PIXELS) -> None:
        super().__init__()
        halo, align = method.strip_context()
        self.method, self.align, self.strip_pixels = method, align, strip_pixels
        self.halo = -(-halo // align) * align  # keep window tops on the grid too

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        height, width = vis.shape[-2:]
        rows = max(self.align, self.strip_pixels // width // self.align * self.align)
        if height <= rows + 2 * self.halo:
            return self.method(vis, ir)
        out = vis.new_empty(vis.shape[0], 1, height, width)
        for top, bottom, t0, b0 in strip_bounds(height, rows, self.halo):
            f = self.method(vis[..., t0:b0, :], ir[..., t0:b0, :])
            out[..., top:bottom, :] = f[..., top - t0 : bottom - t0, :]
        return out


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


@torch.no_grad()
def fuse_to_array(
    model: nn.Module, vis: torch.Tensor, ir: torch.Tensor, bits: int = 8, strip_pixels: int = STRIP_PIXELS
) -> np.ndarray:
    """Fuse one pair on the visible luminance and return the image to write, built strip by strip.

    Args:
        model: ``forward(vis_y, ir) -> fused_y`` on (1, 1, H, W) in [0, 1].
        vis: (1, 1 or 3, H, W) RGB, float in [0, 1] or uint8 levels (see ``read_image(keep_uint8=True)``).
        ir: (1, 1, H, W) float in [0, 1].
        bits: 8 or 16.

    Returns:
        (H, W) or (H, W, 3) uint8/uint16 in BGR order, ready for ``cv2.imencode``.

    Raises:
        NonFiniteOutput: the model's output has NaN or infinite values.
    """
    _, C, H, W = vis.shape
    rows = max(1, strip_pixels // W)
    bounds = [(t, min(t + rows, H)) for t in range(0, H, rows)]
    if C == 1:
        y = _float(vis)
    else:
        y = ir.new_empty(1, 1, H, W)
        for t, b in bounds:
            y[..., t:b, :] = rgb_to_ycbcr(_float(vis[..., t:b, :]))[:, :1]
    fused_y = model(y, ir)
    del y
    if not torch.isfinite(fused_y).all():
        raise NonFiniteOutput("the fused image has NaN or infinite values")
    out = np.empty((H, W, 3) if C == 3 else (H, W), np.uint8 if bits == 8 else np.uint16)
    for t, b in bounds:
        cbcr = rgb_to_ycbcr(_float(vis[..., t:b, :]))[:, 1:] if C == 3 else None
        a = to_uint(merge_luma(fused_y[..., t:b, :], cbcr), bits)
        out[t:b] = a[:, :, ::-1] if C == 3 else a  # RGB -> BGR for OpenCV
    return out
