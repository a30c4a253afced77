"""Colour handling: fuse on the visible luminance, give the colour back through its chrominance.

Fusion models see one channel per modality. A colour visible image is split into YCbCr (full-range
BT.601, as JPEG uses, via kornia); the model fuses Y with the thermal image, and the fused Y is recombined
with the visible Cb and Cr. A grey visible image stays grey.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from kornia.color import rgb_to_ycbcr, ycbcr_to_rgb
from torch import nn

FuseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def split_luma(vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a visible image into luminance and chrominance.

    Args:
        vis: (B, 1, H, W) or (B, 3, H, W) RGB in [0, 1].

    Returns:
        ``(y, cbcr)``: y is (B, 1, H, W) in [0, 1]; cbcr is (B, 2, H, W) centred on 0.5, or None when
        ``vis`` is grey.
    """
    if vis.shape[1] == 1:
        return vis, None
    if vis.shape[1] != 3:
        raise ValueError(f"visible image must have 1 or 3 channels, got {vis.shape[1]}")
    ycc = rgb_to_ycbcr(vis)
    return ycc[:, :1], ycc[:, 1:]


def merge_luma(y: torch.Tensor, cbcr: torch.Tensor | None) -> torch.Tensor:
    """Inverse of :func:`split_luma`: (B, 1, H, W) luminance + chrominance -> RGB in [0, 1] (or grey)."""
    if cbcr is None:
        return y.clamp(0, 1)
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=1)).clamp(0, 1)


def fuse_color(fuse: FuseFn, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Fuse on Y and reattach the visible colour.

    Args:
        fuse: any ``fuse(vis_y, ir) -> fused_y`` on (B, 1, H, W) tensors in [0, 1], e.g. a fusion model.
        vis: (B, 1 or 3, H, W) visible image in [0, 1].
        ir: (B, 1, H, W) thermal image in [0, 1].

    Returns:
        (B, C, H, W) fused image in [0, 1] with C the visible image's channel count.
    """
    y, cbcr = split_luma(vis)
    return merge_luma(fuse(y, ir), cbcr)


class ColorFusion(nn.Module):
    """Wrap a single-channel fusion model so it takes and returns colour visible images."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return fuse_color(self.model, vis, ir)
