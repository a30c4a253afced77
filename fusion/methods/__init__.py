"""Fusion methods by name.

Every method is an ``nn.Module`` with ``forward(vis, ir) -> fused`` on (B, 1, H, W) tensors in [0, 1].
:func:`build_method` makes one from the name the CLI and configs use.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fusion.errors import RgbtError
from fusion.methods.classical import (
    AverageFusion,
    GuidedFilterFusion,
    LaplacianPyramidFusion,
    MaxFusion,
    WeightedAverageFusion,
)

__all__ = [
    "AverageFusion",
    "GuidedFilterFusion",
    "LaplacianPyramidFusion",
    "MaxFusion",
    "WeightedAverageFusion",
    "available_methods",
    "build_method",
]

# name -> (factory, one-line description)
METHODS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "average": (AverageFusion, "pixel-wise mean"),
    "max": (MaxFusion, "pixel-wise maximum"),
    "weighted": (WeightedAverageFusion, "global average weighted by each source's contrast"),
    "laplacian": (LaplacianPyramidFusion, "Laplacian pyramid, max-abs details, mean base"),
    "gff": (GuidedFilterFusion, "guided-filtering fusion (Li, Kang and Hu, TIP 2013)"),
}


def available_methods() -> list[str]:
    """Names accepted by :func:`build_method`, in display order."""
    return list(METHODS)


def build_method(name: str, **kwargs) -> nn.Module:
    """Instantiate the fusion method ``name`` in eval mode.

    Raises:
        RgbtError: unknown name (the message lists the known ones).
    """
    if name not in METHODS:
        raise RgbtError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}")
    return METHODS[name][0](**kwargs).eval()
