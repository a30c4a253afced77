"""Learned fusion networks as methods: released weights by default, any checkpoint with ``ckpt``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from fusion.models import Tiled, default_weights, load_model

WHOLE = 1024  # with the automatic tile, images up to this side run whole, as the papers evaluate them
# Automatic tile for larger images: the tile whose window (tile + 2 x 32 px of context) peaks at about 600 MB on the
# CPU, so that a 24-megapixel pair fuses under 1.5 GB (scripts/bench_memory.py).
AUTO_TILE = {"densefuse": 512, "ddcgan": 256, "cddfuse": 192, "swinfusion": 128}


def learned(name: str) -> Callable[..., nn.Module]:
    """Factory for method ``name``: ``factory(ckpt=None, tile=None, overlap=32, official=False, **model_overrides)``.

    ``ckpt`` is a weight file, a Lightning checkpoint or an official checkpoint (default ``weights/<name>.pt``).
    ``tile=None`` (automatic): images up to 1024 pixels a side run whole; larger ones are fused in tiles of
    ``AUTO_TILE[name]`` with ``overlap`` pixels of context, which bounds memory. ``tile=N``: images larger than N
    in tiles of N; ``tile=0``: never tiled. Convolutional networks (DenseFuse, DDcGAN) give the untiled result
    either way (their receptive field is within the overlap); the transformers differ slightly near the seams.
    ``official`` builds the network as the official test script runs it; it is never tiled, since the official
    scripts fuse whole images (and CDDFuse's min-max normalisation is per image).
    """

    def factory(
        ckpt: str | Path | None = None,
        tile: int | None = None,
        overlap: int = 32,
        official: bool = False,
        **overrides,
    ) -> nn.Module:
        model = load_model(ckpt or default_weights(name), expect=name, official=official, **overrides)
        if official or tile == 0:
            return model
        if tile is None:
            return Tiled(model, AUTO_TILE[name], overlap, whole=WHOLE)
        return Tiled(model, tile, overlap)

    factory.__name__ = f"load_{name}"
    return factory
