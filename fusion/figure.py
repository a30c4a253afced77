"""Side-by-side comparison figures: IR | visible | each method, one row per sample."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from fusion.io import atomic_write_bytes, to_uint

HEADER = 26  # pixels of label strip above each tile
GAP = 4


def _tile(img: torch.Tensor, height: int, label: str, width: int) -> np.ndarray:
    """(1, C, H, W) float image -> (HEADER + height, width, 3) uint8 RGB tile with a label strip; the image keeps
    its aspect ratio, centred on white, so that every row's columns line up whatever the image sizes."""
    a = to_uint(img)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    s = min(height / a.shape[0], width / a.shape[1])
    h, w = max(1, round(a.shape[0] * s)), max(1, round(a.shape[1] * s))
    cell = np.full((height, width, 3), 255, np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    cell[top : top + h, left : left + w] = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)
    a, w = cell, width
    strip = np.full((HEADER, w, 3), 255, np.uint8)
    scale = 0.5
    (tw, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    while tw > w - 4 and scale > 0.3:  # shrink long labels to fit narrow tiles
        scale -= 0.05
        (tw, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(strip, label, (2, HEADER - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, a], axis=0)


def comparison_figure(rows: list[list[tuple[str, torch.Tensor]]], height: int = 180) -> np.ndarray:
    """Compose rows of labelled images into one RGB uint8 array.

    Args:
        rows: each row a list of ``(label, image)`` with image (1, C, H, W) in [0, 1].
        height: height in pixels of every image tile.

    Returns:
        (H, W, 3) uint8 RGB figure on a white background.
    """
    # one cell width for every tile: the widest image at this height
    width = max(max(1, round(img.shape[-1] * height / img.shape[-2])) for row in rows for _, img in row)
    rendered = []
    for row in rows:
        tiles = [_tile(img, height, label, width) for label, img in row]
        gap = np.full((HEADER + height, GAP, 3), 255, np.uint8)
        parts = [p for t in tiles for p in (t, gap)][:-1]
        rendered.append(np.concatenate(parts, axis=1))
    width = max(r.shape[1] for r in rendered)
    out = []
    for r in rendered:
        pad = np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)
        out += [np.concatenate([r, pad], axis=1), np.full((GAP, width, 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


def save_figure(fig: np.ndarray, path: str | Path, bits: int = 8) -> None:
    """Write an RGB uint8 figure as PNG, atomically.

    Args:
        fig: (H, W, 3) uint8 RGB.
        path: the PNG to write.
        bits: levels kept per channel (6 keeps 64, the middle of each step): a photograph's last bits are noise that
            PNG cannot compress, so a figure meant for a repository keeps 6 at a third of the size, white stays white.
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be 1-8, got {bits}")
    if bits < 8:
        drop = 8 - bits
        fig = np.where(fig == 255, 255, (fig >> drop << drop) + (1 << (drop - 1))).astype(np.uint8)
    ok, enc = cv2.imencode(".png", np.ascontiguousarray(fig[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    atomic_write_bytes(path, enc.tobytes())
