"""Tiled inference: fuse images too large for memory tile by tile, with context around each tile.

Each output tile of side ``tile`` is computed from an input window that extends ``overlap`` pixels beyond it on
every side (clipped at the image border), and only the tile's own pixels are kept. For a convolutional network
whose receptive-field radius is at most ``overlap`` (DenseFuse: 8 pixels) the result equals the untiled output
exactly; for transformers it equals it away from the seams, where windows see less context.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


def tile_windows(size: tuple[int, int], tile: int, overlap: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The tiles of an image of ``size`` (H, W): ``((top, bottom, left, right), (t0, b0, l0, r0))`` for each, the
    tile and its window with ``overlap`` pixels of context (clipped at the border)."""
    H, W = size
    out = []
    for top in range(0, H, tile):
        for left in range(0, W, tile):
            bottom, right = min(top + tile, H), min(left + tile, W)
            window = (max(top - overlap, 0), min(bottom + overlap, H), max(left - overlap, 0), min(right + overlap, W))
            out.append(((top, bottom, left, right), window))
    return out


def tiled_forward(model: nn.Module, vis: torch.Tensor, ir: torch.Tensor, tile: int = 512, overlap: int = 32):
    """Run ``model(vis, ir)`` over (B, 1, H, W) inputs in tiles; returns (B, 1, H, W).

    A network whose output depends on statistics of the whole image (TarDAL's batch norms on ``tardal.pt``) gathers
    them over the tiles first (its ``image_statistics``); one with image-wide steps before and after its network
    (LRRNet's normalisation and stretch) has them run on the whole image around the tiles of ``forward_raw``
    (its ``prepare`` and ``finish``).

    Args:
        tile: side of the output tiles (the last row and column may be smaller).
        overlap: context in pixels added around each tile and cropped away after the model.
    """
    if tile <= 0 or overlap < 0:
        raise ValueError(f"tile must be positive and overlap non-negative, got tile={tile}, overlap={overlap}")
    H, W = vis.shape[-2:]
    if tile >= H and tile >= W:
        return model(vis, ir)
    stats = getattr(model, "image_statistics", None)
    net, finish = model, None
    if hasattr(model, "prepare"):
        vis, ir = model.prepare(vis, ir)
        net, finish = model.forward_raw, model.finish
    out = vis.new_empty(vis.shape[0], 1, H, W)
    with stats(vis, ir, tile, overlap) if stats else contextlib.nullcontext():
        for (top, bottom, left, right), (t0, b0, l0, r0) in tile_windows((H, W), tile, overlap):
            f = net(vis[..., t0:b0, l0:r0], ir[..., t0:b0, l0:r0])
            out[..., top:bottom, left:right] = f[..., top - t0 : bottom - t0, left - l0 : right - l0]
    return finish(out) if finish else out


MIN_SIDE = 16


class Tiled(nn.Module):
    """Wrap a fusion model so that inputs larger than ``tile`` go through :func:`tiled_forward`.

    ``whole``: images with both sides at most this run whole whatever ``tile`` is (so that images of the usual
    benchmark sizes give the untiled result while large ones are tiled small enough to bound memory).
    Inputs with a side under 16 pixels are edge-padded first (reflection padding, which the networks use,
    needs more pixels than it pads) and the output is cropped back.
    """

    def __init__(self, model: nn.Module, tile: int = 512, overlap: int = 32, whole: int = 0):
        super().__init__()
        self.model, self.tile, self.overlap, self.whole = model, tile, overlap, whole

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        H, W = vis.shape[-2:]
        ph, pw = max(MIN_SIDE - H, 0), max(MIN_SIDE - W, 0)
        if ph or pw:
            vis, ir = (F.pad(x, (0, pw, 0, ph), mode="replicate") for x in (vis, ir))
        if self.whole >= H and self.whole >= W:
            return self.model(vis, ir)[..., :H, :W]
        return tiled_forward(self.model, vis, ir, self.tile, self.overlap)[..., :H, :W]
