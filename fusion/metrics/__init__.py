"""Fusion quality metrics behind one interface.

``compute_metrics(fused, vis, ir, metrics, convention)`` scores a batch and returns ``{name: (B,)}``.
Names are the ones papers print (EN, SD, SF, AG, EI, MI, CE, SCD, CC, VIF, Qabf, Nabf, SSIM, MEF_SSIM,
Qcb, Qcv, PSNR, MSE, RMSE; FMI_pixel and FMI_dct on request).
``convention`` picks whose definition is used: ``standard`` (clean, documented), or ``vifb``, ``tang`` and
``cddfuse``, which reproduce those published evaluation codes including their quirks
(:mod:`fusion.metrics.conventions`).
"""

from __future__ import annotations

import torch

from fusion.errors import RgbtError
from fusion.metrics.conventions import CONVENTIONS, Convention


def _convention(name: str) -> Convention:
    if name not in CONVENTIONS:
        raise RgbtError(f"unknown metric convention '{name}'; choose one of: {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


def metric_names(convention: str = "standard", extra: bool = False) -> list[str]:
    """Metric names computed by default under ``convention`` (with ``extra``: also the slow, opt-in ones)."""
    conv = _convention(convention)
    return list(conv.all_metrics if extra else conv.metrics)


def higher_is_better(name: str, convention: str = "standard") -> bool:
    """Whether a larger value of metric ``name`` means a better fusion."""
    return _convention(convention).all_metrics[name][1]


def _levels(x: torch.Tensor, rounded: bool) -> torch.Tensor:
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, 1 or 3, H, W) images, got shape {tuple(x.shape)}")
    x = x.double() * 255.0
    return x.round() if rounded else x


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
        ir: (B, 1 or 3, H, W) in [0, 1] (VIFB's infrared JPEGs have three channels).
        metrics: names to compute (default: all of the convention).
        convention: ``standard``, ``vifb``, ``tang``, ``tang2022``, ``cddfuse`` or ``ivifzoo``
            (:mod:`fusion.metrics.conventions`).

    Returns:
        ``{name: tensor of shape (B,)}`` in float64.

    Raises:
        ValueError: mismatched shapes, empty or non-finite input.
        RgbtError: unknown convention or metric name.
    """
    conv = _convention(convention)
    table = conv.all_metrics
    names = list(conv.metrics) if metrics is None else list(metrics)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise RgbtError(
            f"unknown metric(s) {', '.join(unknown)} for convention '{convention}'; known: {', '.join(table)}"
        )
    if not (fused.shape[-2:] == vis.shape[-2:] == ir.shape[-2:]) or not (fused.shape[0] == vis.shape[0] == ir.shape[0]):
        raise ValueError(
            f"fused, visible and infrared differ in shape: {tuple(fused.shape)}, {tuple(vis.shape)}, {tuple(ir.shape)}"
        )
    if fused.numel() == 0 or vis.numel() == 0 or ir.numel() == 0:
        raise ValueError("empty images")
    if not (torch.isfinite(fused).all() and torch.isfinite(vis).all() and torch.isfinite(ir).all()):
        raise ValueError("images contain NaN or infinite values")
    f, a, b = (_levels(x, conv.rounded) for x in (fused, vis, ir))
    out = {}
    if conv.per_channel and f.shape[1] == 3:
        # VIFB scores a colour fused image channel by channel against the sources' channels and averages;
        # SF alone sees the image as one (H, 3W) mosaic.
        bsz, _, h, w = f.shape
        f3, a3, b3 = (x.expand(-1, 3, -1, -1).reshape(bsz * 3, 1, h, w) for x in (f, a, b))
        for n in names:
            if n == "SF":
                out[n] = table[n][0](torch.cat(f.unbind(1), dim=-1).unsqueeze(1), a, b)
            else:
                out[n] = table[n][0](f3, a3, b3).view(bsz, 3).mean(1)
        return out
    f, a, b = (conv.grey(x) if x.shape[1] == 3 else x for x in (f, a, b))
    for group, fn in conv.shared.items():
        if sum(n in names for n in group) > 1:
            out.update(zip(group, fn(f, a, b), strict=True))
    return {n: out[n] if n in out else table[n][0](f, a, b) for n in names}
