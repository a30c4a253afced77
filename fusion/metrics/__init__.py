"""Fusion quality metrics behind one interface.

``compute_metrics(fused, vis, ir, metrics, convention)`` scores a batch and returns ``{name: (B,)}``.
Names are the ones papers print (EN, SD, SSIM, PSNR, MSE...). Every result says which ``convention`` it
was computed under: ``standard`` is one clean, documented definition per metric.
"""

from __future__ import annotations

import torch

from fusion.errors import RgbtError
from fusion.io import rgb_to_grey
from fusion.metrics.basic import STANDARD

CONVENTIONS = {"standard": STANDARD}


def metric_names(convention: str = "standard") -> list[str]:
    """Metric names available under ``convention``, in table order."""
    return list(_table(convention))


def higher_is_better(name: str, convention: str = "standard") -> bool:
    """Whether a larger value of metric ``name`` means a better fusion."""
    return _table(convention)[name][1]


def _table(convention: str) -> dict:
    if convention not in CONVENTIONS:
        raise RgbtError(f"unknown metric convention '{convention}'; choose one of: {', '.join(CONVENTIONS)}")
    return CONVENTIONS[convention]


def prepare(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> grey (B, 1, H, W) float64 on the 0-255 scale (BT.601 luminance)."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, 1 or 3, H, W) images, got shape {tuple(x.shape)}")
    x = x.double()
    return (rgb_to_grey(x) if x.shape[1] == 3 else x) * 255.0


def compute_metrics(
    fused: torch.Tensor,
    vis: torch.Tensor,
    ir: torch.Tensor,
    metrics: list[str] | None = None,
    convention: str = "standard",
) -> dict[str, torch.Tensor]:
    """Score fused images against their sources.

    Args:
        fused: (B, 1 or 3, H, W) in [0, 1].
        vis: (B, 1 or 3, H, W) in [0, 1].
        ir: (B, 1, H, W) in [0, 1].
        metrics: names to compute (default: all of the convention).
        convention: which definition of each metric to use.

    Returns:
        ``{name: tensor of shape (B,)}`` in float64.

    Raises:
        ValueError: mismatched shapes, empty or non-finite input.
        RgbtError: unknown convention or metric name.
    """
    table = _table(convention)
    names = list(table) if metrics is None else list(metrics)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise RgbtError(
            f"unknown metric(s) {', '.join(unknown)} for convention '{convention}'; known: {', '.join(table)}"
        )
    f, a, b = prepare(fused), prepare(vis), prepare(ir)
    if not (f.shape == a.shape == b.shape):
        raise ValueError(
            f"fused, visible and infrared differ in shape: {tuple(f.shape)}, {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if f.numel() == 0:
        raise ValueError("empty images")
    if not (torch.isfinite(f).all() and torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("images contain NaN or infinite values")
    return {n: table[n][0](f, a, b) for n in names}
