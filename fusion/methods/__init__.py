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
from fusion.methods.learned import learned
from fusion.models.zoo import ZOO
from fusion.strips import Strips

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
CLASSICAL: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "average": (AverageFusion, "pixel-wise mean"),
    "max": (MaxFusion, "pixel-wise maximum"),
    "weighted": (WeightedAverageFusion, "global average weighted by each source's contrast"),
    "laplacian": (LaplacianPyramidFusion, "Laplacian pyramid, max-abs details, mean base"),
    "gff": (GuidedFilterFusion, "guided-filtering fusion (Li, Kang and Hu, TIP 2013)"),
}
METHODS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    **CLASSICAL,
    **{name: (learned(name), m.paper) for name, m in ZOO.items()},  # the learned networks: fusion.models.zoo
}
LEARNED = tuple(ZOO)


def available_methods() -> list[str]:
    """Names accepted by :func:`build_method`, in display order."""
    return list(METHODS)


def build_method(name: str, **kwargs) -> nn.Module:
    """Instantiate the fusion method ``name`` in eval mode.

    Learned methods take ``ckpt`` (weight file, checkpoint or the authors' files; default: the weights
    :func:`fusion.models.zoo.find_weights` finds), ``weights`` (a folder of the authors' files to search first),
    ``tile`` and ``overlap`` (see :func:`fusion.models.tiled_forward`) and ``official`` (run as the authors' test
    script, see :mod:`fusion.models.official`); classical ones take none of these.

    ``class_path`` (``module.Class``) fuses with a network of the user's own from its ``ckpt`` (an ``rgbt fit``
    checkpoint or ``rgbt export`` file), under any ``name`` (:func:`fusion.methods.learned.user_network`).

    Raises:
        RgbtError: unknown name (the message lists the known ones).
    """
    if kwargs.get("class_path"):
        from fusion.methods.learned import user_network

        return user_network(**kwargs).eval()
    kwargs.pop("class_path", None)
    if name not in METHODS:
        raise RgbtError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}")
    for opt in ("ckpt", "official"):
        if name not in LEARNED and kwargs.get(opt):
            raise RgbtError(f"--{opt} applies to learned methods ({', '.join(LEARNED)}), not {name}")
    if name not in LEARNED:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("ckpt", "tile", "overlap", "official", "weights")}
    method = METHODS[name][0](**kwargs)
    # local classical methods run in strips on large images (bounded memory, same result): fusion.strips
    return (Strips(method) if hasattr(method, "strip_context") else method).eval()
