"""Paired infrared-visible datasets.

A dataset is a folder with ``ir/`` and ``vi/`` sub-folders whose files pair up by file stem
(``ir/X.png`` with ``vi/X.jpg``), as in ``../shared/data``. The data root is found through ``--data``,
then ``$RGBT_DATA``, then ``./data``, then ``../shared/data`` (see :func:`resolve_data_root`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from fusion.errors import RgbtError, short
from fusion.io import IMAGE_EXTENSIONS, Norm16, read_image

IR_DIRS = ("ir", "infrared", "thermal")
VIS_DIRS = ("vi", "vis", "visible")

# The sample sets shipped in ../shared/data, by the names the CLI and configs use.
KNOWN_DATASETS = {
    "tno": "tno",
    "roadscene": "roadscene/test",
    "roadscene/train": "roadscene/train",
    "roadscene/test": "roadscene/test",
    "msrs": "msrs",
    "llvip": "llvip",
    "vifb": "vifb",
    "m3fd": "m3fd_sample",
}


@dataclass(frozen=True)
class Pair:
    """One registered infrared-visible pair."""

    name: str
    vis: Path
    ir: Path


def _has_datasets(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_dir() for p in folder.iterdir())


def resolve_data_root(data: str | Path | None = None) -> Path:
    """Find the data root: ``data`` argument, ``$RGBT_DATA``, ``./data``, then ``../shared/data``.

    ``./data`` counts only when it holds at least one dataset folder (in this repository it holds only
    a README until a user puts data there).

    Raises:
        RgbtError: an explicit root that does not exist, or no root found at all.
    """
    for explicit, origin in ((data, "--data"), (os.environ.get("RGBT_DATA"), "$RGBT_DATA")):
        if explicit:
            p = Path(explicit).expanduser()
            if not p.is_dir():
                raise RgbtError(f"{origin} points to {short(p)}, which is not a folder; fix the path")
            return p
    candidates = [Path("data"), Path("..") / "shared" / "data"]
    # Also look beside the repository itself, so commands work from any working directory.
    repo = Path(__file__).resolve().parents[1]
    candidates += [repo / "data", repo.parent / "shared" / "data"]
    for c in candidates:
        if _has_datasets(c):
            return c
    raise RgbtError(
        "no data found: pass --data DIR or set RGBT_DATA (data/README.md says where to download each dataset)"
    )


def dataset_dir(name: str, data: str | Path | None = None) -> Path:
    """The folder of a dataset given by known name (``tno``, ``roadscene/test``...), relative path or path."""
    p = Path(name).expanduser()
    if p.is_dir() and (p.is_absolute() or name.startswith(".")):
        return p
    root = resolve_data_root(data)
    d = root / KNOWN_DATASETS.get(name, name)
    if not d.is_dir():
        known = ", ".join(sorted(KNOWN_DATASETS))
        raise RgbtError(f"dataset '{name}' not found under {short(root)}; known names: {known}, or give a path")
    return d


def _pick(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for n in names:
        if (folder / n).is_dir():
            return folder / n
    raise RgbtError(
        f"{short(folder)}: no {what} folder ({' or '.join(n + '/' for n in names)}); lay it out as ir/ + vi/"
    )


def _images(folder: Path) -> dict[str, Path]:
    if not folder.exists():
        raise RgbtError(f"{short(folder)}: no such folder; check the path")
    if not folder.is_dir():
        raise RgbtError(f"{short(folder)} is a file, not a folder of images; pass the folder")
    out: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."):
            if f.stem in out:
                raise RgbtError(f"{short(f)} and {out[f.stem].name} share the stem '{f.stem}'; keep one of them")
            out[f.stem] = f
    if not out:
        raise RgbtError(f"{short(folder)}: no images ({', '.join(IMAGE_EXTENSIONS)}); check the folder")
    return out


def find_pairs(ir_dir: str | Path, vis_dir: str | Path) -> list[Pair]:
    """Pair the images of two folders by file stem.

    Raises:
        RgbtError: a missing or empty folder, or any image without a partner (the error names it).
    """
    ir, vis = _images(Path(ir_dir)), _images(Path(vis_dir))
    only_ir, only_vis = sorted(set(ir) - set(vis)), sorted(set(vis) - set(ir))
    if only_ir or only_vis:
        lonely = [ir[s] for s in only_ir] + [vis[s] for s in only_vis]
        more = f" and {len(lonely) - 1} more" if len(lonely) > 1 else ""
        raise RgbtError(f"{short(lonely[0])}{more} have no partner with the same file name; rename or remove them")
    return [Pair(s, vis[s], ir[s]) for s in sorted(ir)]


def dataset_pairs(folder: str | Path) -> list[Pair]:
    """Pairs of a dataset folder laid out as ``ir/`` + ``vi/``."""
    folder = Path(folder)
    return find_pairs(_pick(folder, IR_DIRS, "infrared"), _pick(folder, VIS_DIRS, "visible"))


def load_pair(
    pair: Pair,
    *,
    vis_grey: bool = False,
    ir_grey: bool = True,
    norm16: Norm16 | None = None,
    infos: list | None = None,
    keep_uint8: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a pair: visible (1, C, H, W), infrared (1, 1, H, W), both float in [0, 1].

    ``ir_grey=False`` keeps a colour-stored infrared image's channels when they differ (for scoring
    under the vifb convention); fusion always uses one infrared channel. When ``infos`` is a list, the two
    images' :class:`~fusion.io.ImageInfo` (visible, infrared) are appended to it. ``keep_uint8`` returns 8-bit
    files' levels as uint8 (see :func:`~fusion.io.read_image`).

    Raises:
        RgbtError: unreadable files or different sizes.
    """
    vis, vinfo = read_image(pair.vis, grey=vis_grey, norm16=norm16, keep_uint8=keep_uint8)
    ir, iinfo = read_image(pair.ir, grey=ir_grey, norm16=norm16, keep_uint8=keep_uint8)
    if infos is not None:
        infos += [vinfo, iinfo]
    if vis.shape[-2:] != ir.shape[-2:]:
        raise RgbtError(
            f"{short(pair.ir)} is {ir.shape[-1]}x{ir.shape[-2]} but {short(pair.vis)} is "
            f"{vis.shape[-1]}x{vis.shape[-2]}; register the pair first (rgbt register) or resize one"
        )
    return vis, ir


class PairDataset(Dataset):
    """Whole image pairs: ``{"vis": (C, H, W), "ir": (1, H, W), "name": str}``.

    Args:
        pairs: pairs from :func:`dataset_pairs` / :func:`find_pairs`, or a dataset folder.
        vis_grey: return the visible luminance (1 channel) instead of its colour.
        norm16: scaling for 16-bit files.
    """

    def __init__(self, pairs: list[Pair] | str | Path, vis_grey: bool = False, norm16: Norm16 | None = None):
        self.pairs = dataset_pairs(pairs) if isinstance(pairs, (str, Path)) else list(pairs)
        self.vis_grey, self.norm16 = vis_grey, norm16

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        p = self.pairs[i]
        vis, ir = load_pair(p, vis_grey=self.vis_grey, norm16=self.norm16)
        return {"vis": vis[0], "ir": ir[0], "name": p.name}


class PatchDataset(Dataset):
    """Random aligned patches for training: ``{"vis": (1, P, P) luminance, "ir": (1, P, P), "name"}``.

    Images are decoded once and kept in memory (the training sets are small); each item is a random crop
    with a random flip and 90-degree rotation applied identically to both modalities. Images smaller than
    the patch are reflect-padded.

    Args:
        pairs: pairs or a dataset folder.
        patch_size: side of the square patch.
        patches_per_image: items per image per epoch.
        seed: base seed; item ``i`` of epoch ``e`` is the same crop for the same (seed, e, i).
    """

    def __init__(
        self,
        pairs: list[Pair] | str | Path,
        patch_size: int = 128,
        patches_per_image: int = 8,
        seed: int = 0,
        norm16: Norm16 | None = None,
    ):
        pairs = dataset_pairs(pairs) if isinstance(pairs, (str, Path)) else list(pairs)
        self.images = [torch.cat(load_pair(p, vis_grey=True, norm16=norm16), dim=1)[0] for p in pairs]
        self.names = [p.name for p in pairs]
        self.patch, self.per_image, self.seed, self.epoch = patch_size, patches_per_image, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images) * self.per_image

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
        k = i // self.per_image
        x = self.images[k]  # (2, H, W): visible Y, infrared
        p = self.patch
        ph, pw = max(0, p - x.shape[1]), max(0, p - x.shape[2])
        if ph or pw:
            x = torch.nn.functional.pad(x[None], (0, pw, 0, ph), mode="reflect")[0]
        top = int(torch.randint(0, x.shape[1] - p + 1, (1,), generator=g))
        left = int(torch.randint(0, x.shape[2] - p + 1, (1,), generator=g))
        x = x[:, top : top + p, left : left + p]
        if torch.rand(1, generator=g) < 0.5:
            x = x.flip(-1)
        x = torch.rot90(x, int(torch.randint(0, 4, (1,), generator=g)), dims=(1, 2))
        return {"vis": x[:1].contiguous(), "ir": x[1:].contiguous(), "name": self.names[k]}
