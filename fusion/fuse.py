"""Fuse a folder of pairs with one method and write PNGs (``rgbt fuse``)."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from fusion.color import fuse_color, merge_luma, split_luma
from fusion.data import Pair, load_pair
from fusion.errors import RgbtError, short
from fusion.io import Norm16, atomic_write_bytes, image_size, write_png

MANIFEST = "rgbt_fuse.json"


@dataclass
class FuseReport:
    """What a fuse run did."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def prepare_out_dir(out: str | Path) -> Path:
    """Create ``out`` (and parents) or fail with one line if it is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RgbtError(f"{short(out)} is a file; choose a folder for --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RgbtError(f"{short(out)}: a parent of this path is a file; choose another --out") from None
    return out


def check_sizes(pairs: list[Pair]) -> None:
    """Fail before any output is written if a pair's images differ in size or cannot be decoded."""
    for p in pairs:
        hi, wi = image_size(p.ir)
        hv, wv = image_size(p.vis)
        if (hi, wi) != (hv, wv):
            raise RgbtError(
                f"{short(p.ir)} is {wi}x{hi} but {short(p.vis)} is {wv}x{hv}; "
                "register the pair first (rgbt register) or resize one"
            )


@torch.no_grad()
def fuse_pair(model: nn.Module, vis: torch.Tensor, ir: torch.Tensor, official: bool = False) -> torch.Tensor:
    """Fuse one (1, C, H, W) visible and (1, 1, H, W) infrared image; colour in, colour out.

    ``official``: ``model`` was built with ``official=True``; its raw output goes through the official test
    script's conversion to 8 bits (:func:`fusion.models.official.official_uint8`), and the result holds exactly
    those grey levels (the visible luminance is first rounded to 8 bits, as the official grey readers give it).
    """
    if not official:
        return fuse_color(model, vis, ir)
    from fusion.models.official import official_uint8

    y, cbcr = split_luma(vis)
    y = torch.round(y * 255) / 255
    q = official_uint8(model.name, model.forward_raw(y, ir))
    return merge_luma(torch.from_numpy(q.astype("float32") / 255)[None, None].to(vis.device), cbcr)


def fuse_pairs(
    model: nn.Module,
    pairs: list[Pair],
    out: str | Path,
    *,
    method: str,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
    norm16: Norm16 | None = None,
    bits: int = 8,
    progress: bool = True,
    official: bool = False,
) -> FuseReport:
    """Fuse every pair into ``out/<name>.png``.

    Finished files are skipped unless ``overwrite``; each PNG is written atomically. A manifest
    (``rgbt_fuse.json``) records the method, the device and how each input was scaled.

    Raises:
        RgbtError: output folder is a file, a pair with different sizes, or an unreadable image.
    """
    out = prepare_out_dir(out)
    check_sizes(pairs)
    model = model.to(device).eval()
    report, t0 = FuseReport(), time.perf_counter()
    records = {}
    for p in tqdm(pairs, desc=f"fuse {method}", unit="pair", disable=None if progress else True, leave=False):
        target = out / f"{p.name}.png"
        if target.exists() and not overwrite:
            report.skipped.append(target)
            continue
        infos: list = []
        vis, ir = load_pair(p, norm16=norm16, infos=infos)
        fused = fuse_pair(model, vis.to(device), ir.to(device), official)
        if not torch.isfinite(fused).all():
            raise RgbtError(f"{method} produced NaN on {short(p.ir)}; check the input images and the checkpoint")
        write_png(target, fused.cpu(), bits=bits)
        report.written.append(target)
        records[p.name] = {
            "ir": str(p.ir),
            "vis": str(p.vis),
            "channels": int(fused.shape[1]),
            # how each input was scaled to [0, 1], with the values used (e.g. a 16-bit percentile range)
            "vis_scaling": infos[0].normalization,
            "ir_scaling": infos[1].normalization,
        }
    report.seconds = time.perf_counter() - t0
    old = out / MANIFEST
    if old.is_file():  # keep the records of images fused by earlier runs into this folder
        with contextlib.suppress(json.JSONDecodeError, AttributeError):  # unreadable: start afresh
            records = {**json.loads(old.read_text()).get("images", {}), **records}
    manifest = {
        "method": method,
        "official": official,
        "weights": getattr(getattr(model, "model", model), "source", None),
        "device": str(device),
        "bits": bits,
        "ir_norm16": None if norm16 is None else norm16.__dict__,
        "images": records,
    }
    atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1).encode())
    return report
