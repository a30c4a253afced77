"""Learned fusion networks as methods: the weights found for the method by default, any checkpoint with ``ckpt``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from fusion.errors import RgbtError, short
from fusion.models import Tiled, load_model
from fusion.models.zoo import ZOO, require_weights

WHOLE = 1024  # with the automatic tile, images up to this side run whole, as the papers evaluate them
# Automatic tile for larger images: the tile whose window (tile + 2 x 32 px of context) peaks at about 600 MB on the
# CPU, so that a 24-megapixel pair fuses under 1.5 GB (scripts/bench_memory.py).
AUTO_TILE = {
    "densefuse": 384, "ddcgan": 256, "cddfuse": 192, "swinfusion": 128, "seafusion": 256, "ifcnn": 384,
    "tardal": 256, "didfuse": 256, "ydtr": 192, "datfuse": 384, "lrrnet": 192, "reconet": 512, "u2fusion": 256,
    "densefuse_tf": 384, "sdnet": 384, "stdfusionnet": 128, "cufd": 320, "piafusion": 384,
    # these normalise or weigh with statistics of the whole window: tiles as large as the budget allows
    "pmgi": 768, "csf": 512, "fusiongan": 384, "ganmcc": 384,
}  # fmt: skip
# Peak bytes per pixel of one whole-image forward pass on the CPU, the larger of our mode and the official one: the
# growth of the process's peak from 384x384 to 768x768 (python scripts/bench_models.py --peak METHOD cpu MODE
# --sizes WxH, in a fresh process each), rounded up. rgbt fuse and rgbt experiment refuse a run whose largest
# window would not fit in the memory available (check_forward_memory) before any work.
BYTES_PER_PIXEL = {
    "densefuse": 1700, "ddcgan": 4400, "cddfuse": 5900, "swinfusion": 6600, "seafusion": 2200, "ifcnn": 1600,
    "tardal": 1600, "didfuse": 5000, "ydtr": 4200, "datfuse": 1100, "lrrnet": 6200, "reconet": 1700,
    "u2fusion": 3600, "densefuse_tf": 1700, "sdnet": 1000, "stdfusionnet": 1800, "pmgi": 900, "csf": 1900,
    "cufd": 4300, "fusiongan": 2200, "ganmcc": 2300, "piafusion": 3000,
}  # fmt: skip
IMAGE_BYTES_PER_PIXEL = 18  # the image-sized buffers around the network (docs/performance.md: 430 MB at 24 MP)


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
        return model if official else with_tiles(model, tile, overlap, AUTO_TILE[entry.family])

    factory.__name__ = f"load_{name}"
    return factory


def user_network(
    class_path: str,
    ckpt: str | Path | None = None,
    tile: int | None = None,
    overlap: int = 32,
    official: bool = False,
    weights: str | Path | None = None,
) -> nn.Module:
    """A network of the user's own (``class_path``: ``module.Class``) with the weights of ``ckpt``, tiled as the
    zoo's networks are (whole up to 1024 px a side, tiles of 512 beyond; ``tile`` as for :func:`learned`)."""
    if official:
        raise RgbtError(f"{class_path}: official mode exists for the published networks only; drop it")
    if not ckpt:
        raise RgbtError(f"{class_path} needs its checkpoint (ckpt:), from rgbt fit or rgbt export")
    model = load_model(ckpt, class_path=class_path)
    model.source = f"{model.source} ({short(Path(ckpt))})"
    return with_tiles(model, tile, overlap, 512)


def with_tiles(model: nn.Module, tile: int | None, overlap: int, auto: int) -> nn.Module:
    """``tile=None``: whole up to :data:`WHOLE` px a side, tiles of ``auto`` beyond; 0: never tiled; N: tiles of N."""
    if tile == 0:
        return model
    return Tiled(model, auto, overlap, whole=WHOLE) if tile is None else Tiled(model, tile, overlap)


def forward_bytes(model: nn.Module, height: int, width: int) -> int | None:
    """Estimated peak memory of fusing one (height, width) pair with ``model`` as :func:`learned` built it: the
    network's largest window (the whole image, or one tile with its context) times its family's
    :data:`BYTES_PER_PIXEL`, plus the image-sized buffers. None for a model without a known family (the classical
    methods work in strips, :mod:`fusion.strips`)."""
    net = model.model if isinstance(model, Tiled) else model
    per_pixel = BYTES_PER_PIXEL.get(getattr(net, "name", None))
    if per_pixel is None:
        return None
    h, w = height, width
    if isinstance(model, Tiled) and not (model.whole >= h and model.whole >= w):
        h, w = min(h, model.tile + 2 * model.overlap), min(w, model.tile + 2 * model.overlap)
    return per_pixel * h * w + IMAGE_BYTES_PER_PIXEL * height * width


def check_forward_memory(model: nn.Module, sizes: list[tuple[int, int]], method: str, official: bool = False) -> None:
    """Refuse, before any work, a run whose largest pair would not fit in the memory available now (``--tile 0`` or
    a large ``--tile`` on big images, ``--official`` on images the authors' script cannot hold).

    Args:
        sizes: (height, width) of every pair.
        official: the model runs the authors' test script (``--official``), on whole images.

    Raises:
        RgbtError: one line with the size, the estimate and the fix.
    """
    from fusion.train.memory import available_bytes

    avail = available_bytes()
    needs = [(forward_bytes(model, h, w) or 0, h, w) for h, w in set(sizes)]
    if not avail or not needs:
        return
    need, h, w = max(needs)
    if need <= avail:
        return
    if not isinstance(model, Tiled):
        fix = (
            "--official fuses whole images, as the authors' script does: drop --official (an experiment's "
            "official: true) to fuse in tiles"
            if official
            else "leave --tile out (automatic tiles) or give --tile 512"
        )
    elif model.whole >= h and model.whole >= w:  # automatic tiles, but an image this size runs whole
        fix = f"give --tile {AUTO_TILE.get(model.model.name, 256)} to fuse it in tiles"
    else:
        fix = f"give a smaller --tile (the automatic one is {AUTO_TILE.get(model.model.name, 256)}) or leave it out"
    raise RgbtError(
        f"{method} on a {w}x{h} pair would need about {need / 2**30:.1f} GB at once, {avail / 2**30:.1f} GB are "
        f"available; {fix}"
    )
