"""Fuse a folder of pairs with one method and write PNGs (``rgbt fuse``)."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fusion.data import Pair
from fusion.errors import NonFiniteOutput, RgbtError, short
from fusion.io import Norm16, atomic_write_bytes, inspect_image, probe_writable, read_image, write_png_array
from fusion.models import Tiled
from fusion.strips import Strips, fuse_to_array

MANIFEST = "rgbt_fuse.json"
LOCK = ".rgbt_fuse.lock"


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
    except OSError as e:  # read-only file system, /proc, no permission
        raise RgbtError(f"{short(out)}: cannot create this folder ({e.strerror}); choose a writable --out") from None
    probe_writable(out, f"--out {short(out)}")  # permission bits do not tell root about read-only mounts
    return out


def check_sizes(pairs: list[Pair], norm16: Norm16 | None = None) -> list[tuple[int, int]]:
    """Preflight: fail before any output is written if an image cannot be decoded, is 16-bit without ``norm16``,
    has an unsupported layout, or its pair differs in size (everything that could stop the run half-way).

    Returns:
        The (height, width) of each pair.
    """
    sizes = []
    for p in pairs:
        info_i = inspect_image(p.ir, norm16=norm16)
        info_v = inspect_image(p.vis, norm16=norm16)
        if (info_i.height, info_i.width) != (info_v.height, info_v.width):
            raise RgbtError(
                f"{short(p.ir)} is {info_i.width}x{info_i.height} but {short(p.vis)} is {info_v.width}x"
                f"{info_v.height}; register the pair first (rgbt register) or resize one"
            )
        sizes.append((info_i.height, info_i.width))
    return sizes


def check_out_apart(out: str | Path, inputs: list[str | Path]) -> None:
    """Refuse an output folder that is, contains or lies inside an input (the inputs would be overwritten or
    taken for results): :func:`fusion.guard.check_outputs` for one ``--out`` folder."""
    from fusion.guard import check_outputs

    check_outputs({"--out": out}, inputs, folders=("--out",))


@contextlib.contextmanager
def claim_folder(out: Path):
    """Hold an exclusive lock on ``out`` for one run, and clear temporary files a killed run left behind.

    A second ``rgbt fuse`` into the same folder fails at once instead of fusing the same images twice.
    """
    import fcntl

    lock = open(out / LOCK, "a")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise RgbtError(f"another rgbt run is writing into {short(out)}; wait for it or choose another --out") from None
    try:
        for tmp in out.glob(".*.tmp"):  # atomic_write_bytes' temporary names: only a killed run leaves them
            tmp.unlink(missing_ok=True)
        yield
    finally:
        lock.close()


def _tiling(model: nn.Module) -> dict | None:
    """How large images are split for ``model``, for the manifest (None: always whole)."""
    if isinstance(model, Tiled):
        return {"tile": model.tile, "overlap": model.overlap, "whole_up_to": model.whole or None}
    if isinstance(model, Strips):
        return {"strip_pixels": model.strip_pixels, "halo_rows": model.halo}
    return None


@torch.no_grad()
def fuse_official(model: nn.Module, pair: Pair) -> np.ndarray:
    """The authors' test script on one pair, for a network built with ``official=True``: what it saves, as a
    (H, W) or (H, W, 3) uint8 array in BGR order (its family's ``official``: reading, scaling, network, rounding or
    truncation and colour as the script does them). Other models fuse through :func:`fusion.strips.fuse_to_array`.

    Raises:
        RgbtError: the model has no official mode.
    """
    from fusion.models.zoo import FAMILIES

    fam = FAMILIES.get(getattr(model, "name", None))
    if fam is None or fam.official is None:
        raise RgbtError(f"{getattr(model, 'name', model)} has no official mode")
    out = fam.official(model.cpu(), Path(pair.ir), Path(pair.vis)).image
    return np.ascontiguousarray(out[:, :, ::-1]) if out.ndim == 3 else out


def fuse_image(
    model: nn.Module,
    pair: Pair,
    target: Path,
    *,
    method: str,
    device: str | torch.device = "cpu",
    norm16: Norm16 | None = None,
    bits: int = 8,
    official: bool = False,
) -> dict:
    """Fuse one pair into the PNG ``target`` (written atomically) and return its manifest record: the inputs and
    how each was scaled to [0, 1]. ``rgbt fuse`` and ``rgbt experiment`` fuse every image through this."""
    if official:  # the script reads the files itself
        vinfo, iinfo = inspect_image(pair.vis), inspect_image(pair.ir)
        try:
            write_png_array(target, fuse_official(model, pair))
        except NonFiniteOutput:
            raise RgbtError(
                f"{method} --official produced NaN or infinite values on {short(pair.ir)}; check the checkpoint"
            ) from None
    else:
        # the visible image stays uint8 (a quarter of the memory); fuse_to_array converts it strip by strip
        vis, vinfo = read_image(pair.vis, norm16=norm16, keep_uint8=True)
        ir, iinfo = read_image(pair.ir, grey=True, norm16=norm16)
        try:
            write_png_array(target, fuse_to_array(model, vis.to(device), ir.to(device), bits))
        except NonFiniteOutput:
            raise RgbtError(f"{method} produced NaN on {short(pair.ir)}; check the inputs and the checkpoint") from None
    return {
        "ir": str(pair.ir),
        "vis": str(pair.vis),
        "channels": vinfo.channels,
        # how each input was scaled to [0, 1], with the values used (e.g. a 16-bit percentile range)
        "vis_scaling": vinfo.normalization,
        "ir_scaling": iinfo.normalization,
    }


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

    Every input is checked before the first write (:func:`check_sizes`). Finished files are skipped unless
    ``overwrite``; each PNG is written atomically, and the manifest (``rgbt_fuse.json``: the method, the weights,
    the device and how each input was scaled) is rewritten after each one. The folder is locked for the run.

    Raises:
        RgbtError: output folder is a file, a pair with different sizes, an unreadable or 16-bit image (without
            ``norm16``), or another run writing into ``out``.
    """
    from fusion.methods.learned import check_forward_memory

    check_forward_memory(model, check_sizes(pairs, norm16), method, official)
    out = prepare_out_dir(out)
    model = model.to(device).eval()
    report, t0 = FuseReport(), time.perf_counter()
    with claim_folder(out):
        records: dict = {}
        old = out / MANIFEST
        if old.is_file():  # keep the records of images fused by earlier runs into this folder
            with contextlib.suppress(json.JSONDecodeError, AttributeError, UnicodeDecodeError):  # unreadable: afresh
                records = dict(json.loads(old.read_text()).get("images", {}))
        manifest = {
            "method": method,
            "official": official,
            "weights": getattr(getattr(model, "model", model), "source", None),
            "device": str(device),
            "tiling": _tiling(model),
            "bits": bits,
            "ir_norm16": None if norm16 is None else norm16.__dict__,
            "images": records,
        }
        bar = tqdm(pairs, desc=f"fuse {method}", unit="pair", disable=None if progress else True, leave=False)
        for p in bar:
            target = out / f"{p.name}.png"
            if target.exists() and not overwrite:
                report.skipped.append(target)
                continue
            records[p.name] = fuse_image(
                model, p, target, method=method, device=device, norm16=norm16, bits=bits, official=official
            )
            report.written.append(target)
            # after every image, so that the manifest lists every PNG on disk even after an interrupt
            atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1).encode())
        if not report.written and not old.is_file():
            atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1).encode())
    report.seconds = time.perf_counter() - t0
    return report
