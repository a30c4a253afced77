"""Learned fusion networks as methods: the weights found for the method by default, any checkpoint with ``ckpt``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from fusion.errors import short
from fusion.models import Tiled, load_model
from fusion.models.zoo import ZOO, require_weights

WHOLE = 1024  # with the automatic tile, images up to this side run whole, as the papers evaluate them
# Automatic tile for larger images: the tile whose window (tile + 2 x 32 px of context) peaks at about 600 MB on the
# CPU, so that a 24-megapixel pair fuses under 1.5 GB (scripts/bench_memory.py).
AUTO_TILE = {
    "densefuse": 384, "ddcgan": 256, "cddfuse": 192, "swinfusion": 128, "seafusion": 256, "ifcnn": 384,
    "tardal": 256, "didfuse": 256, "ydtr": 192, "datfuse": 384, "lrrnet": 192, "reconet": 512,
}  # fmt: skip


def learned(name: str) -> Callable[..., nn.Module]:
    """Factory for method ``name``:
    ``factory(ckpt=None, tile=None, overlap=32, official=False, weights=None, **model_overrides)``.

    ``ckpt`` is a weight file, a Lightning checkpoint, or the authors' file(s) (a file, or a folder holding them);
    without it the weights are found as :func:`fusion.models.zoo.find_weights` says (``weights``: a folder laid out
    as ``official_weights/``, searched first). ``tile=None`` (automatic): images up to 1024 pixels a side run whole;
    larger ones are fused in tiles of ``AUTO_TILE[family]`` with ``overlap`` pixels of context, which bounds memory.
    ``tile=N``: images larger than N in tiles of N; ``tile=0``: never tiled. Convolutional networks give the untiled
    result either way (their receptive field is within the overlap); the transformers differ near the seams.
    ``official`` builds the network as the authors' test script runs it; it is never tiled, since the scripts fuse
    whole images.
    """
    entry = ZOO[name]

    def factory(
        ckpt: str | Path | None = None,
        tile: int | None = None,
        overlap: int = 32,
        official: bool = False,
        weights: str | Path | None = None,
        **overrides,
    ) -> nn.Module:
        if ckpt:
            path, files = Path(ckpt), entry.files
        else:
            found = require_weights(name, weights)
            path = found.files[0] if len(found.files) == 1 else found.files[0].parent
            files = entry.files if len(found.files) > 1 else ()
        model = load_model(path, expect=entry.family, official=official, files=files, **{**entry.config, **overrides})
        model.source = f"{model.source} ({short(path)})"
        if official or tile == 0:
            return model
        if tile is None:
            return Tiled(model, AUTO_TILE[entry.family], overlap, whole=WHOLE)
        return Tiled(model, tile, overlap)

    factory.__name__ = f"load_{name}"
    return factory
