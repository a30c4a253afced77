"""Learned fusion networks as methods: released weights by default, any checkpoint with ``ckpt``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from fusion.models import Tiled, default_weights, load_model


def learned(name: str) -> Callable[..., nn.Module]:
    """Factory for method ``name``: ``factory(ckpt=None, tile=1024, overlap=32, official=False, **model_overrides)``.

    ``ckpt`` is a weight file, a Lightning checkpoint or an official checkpoint (default ``weights/<name>.pt``);
    images larger than ``tile`` are fused in tiles with ``overlap`` pixels of context (``tile=0``: never).
    ``official`` builds the network as the official test script runs it; it is never tiled, since the official
    scripts fuse whole images (and CDDFuse's min-max normalisation is per image).
    """

    def factory(
        ckpt: str | Path | None = None, tile: int = 1024, overlap: int = 32, official: bool = False, **overrides
    ) -> nn.Module:
        model = load_model(ckpt or default_weights(name), expect=name, official=official, **overrides)
        return Tiled(model, tile, overlap) if tile and not official else model

    factory.__name__ = f"load_{name}"
    return factory
