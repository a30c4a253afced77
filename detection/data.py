"""Detection datasets over registered RGB-T pairs: YOLO or COCO labels, five input modes, paired augmentation.

Layout: a dataset folder with ``ir/`` and ``vi/`` (as every fusion set here) plus labels, either YOLO text
files (``labels/<view>/<name>.txt``, lines ``cls cx cy w h`` normalised, classes in ``labels/classes.txt``; MSRS
ships separate sets for the ``ir``, ``vi`` and ``fusion`` views) or one COCO JSON whose ``file_name`` stems
match the image names. Fused images for ``mode="fused"`` come from a folder written by ``rgbt fuse``.

Modes (channels): ``vis`` (3), ``ir`` (1), ``fused`` (the fused file's channels), ``early`` (4: RGB + T, for
``FCOS(in_channels=4)``) and ``two_stream`` (the same 4 channels, for ``TwoStreamFCOS``). The modalities are
stacked into one tensor before augmentation, so flips and crops keep them and the boxes in step.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from detection.coco import Target
from fusion.data import Pair, _images, dataset_pairs
from fusion.errors import RgbtError, short
from fusion.io import read_image

MODES = {"vis": "vi", "ir": "ir", "fused": "fusion", "early": "fusion", "two_stream": "fusion"}


def read_classes(path: str | Path) -> list[str]:
    """``classes.txt``: one class per line, optionally prefixed by its index (``0 person``)."""
    path = Path(path)
    if not path.is_file():
        raise RgbtError(f"{short(path)}: no class list; write one class name per line")
    names = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            names.append(parts[-1] if parts[0].isdigit() and len(parts) > 1 else " ".join(parts))
    return names


def read_yolo(path: str | Path, size: tuple[int, int], num_classes: int) -> Target:
    """One YOLO label file -> :class:`Target` in pixels (xyxy); a missing file means no objects."""
    path = Path(path)
    h, w = size
    boxes, labels = [], []
    if path.is_file():
        for k, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                c, cx, cy, bw, bh = line.split()[:5]
                c, cx, cy, bw, bh = int(c), float(cx), float(cy), float(bw), float(bh)
            except ValueError:
                raise RgbtError(f"{short(path)} line {k}: expected 'class cx cy w h', got '{line.strip()}'") from None
            if not 0 <= c < num_classes:
                raise RgbtError(f"{short(path)} line {k}: class {c} outside 0..{num_classes - 1}; fix classes.txt")
            boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
            labels.append(c)
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    b[:, 0::2], b[:, 1::2] = b[:, 0::2].clamp(0, w), b[:, 1::2].clamp(0, h)
    return Target(b, torch.tensor(labels, dtype=torch.long), (h, w))


def read_coco_json(path: str | Path) -> tuple[dict[str, Target], list[str]]:
    """COCO JSON -> ({image stem: Target}, class names in category-id order)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
        cats = sorted(d["categories"], key=lambda c: c["id"])
        index = {c["id"]: k for k, c in enumerate(cats)}
        out = {}
        for im in d["images"]:
            out[im["id"]] = (Path(im["file_name"]).stem, (int(im["height"]), int(im["width"])), [], [])
        for a in d["annotations"]:
            x, y, bw, bh = a["bbox"]
            out[a["image_id"]][2].append([x, y, x + bw, y + bh])
            out[a["image_id"]][3].append(index[a["category_id"]])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RgbtError(f"{short(path)}: not a readable COCO detection file ({e}); check the JSON") from None
    targets = {
        stem: Target(torch.tensor(b, dtype=torch.float32).reshape(-1, 4), torch.tensor(lab, dtype=torch.long), hw)
        for stem, hw, b, lab in out.values()
    }
    return targets, [c["name"] for c in cats]


def augment(x: torch.Tensor, t: Target, g: torch.Generator, scale=(0.75, 1.25)) -> tuple[torch.Tensor, Target]:
    """Random horizontal flip and scale-then-crop/pad to the same size, for (C, H, W) and its boxes."""
    c, h, w = x.shape
    boxes = t.boxes.clone()
    if torch.rand(1, generator=g) < 0.5:
        x = x.flip(-1)
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    s = float(torch.empty(1).uniform_(*scale, generator=g))
    nh, nw = max(8, round(h * s)), max(8, round(w * s))
    x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    boxes *= torch.tensor([nw / w, nh / h, nw / w, nh / h])
    # crop (s > 1) or pad (s < 1) back to (h, w) at a random offset
    oy = int(torch.randint(0, abs(nh - h) + 1, (1,), generator=g))
    ox = int(torch.randint(0, abs(nw - w) + 1, (1,), generator=g))
    canvas = x.new_full((c, h, w), 0.0) if (nh < h or nw < w) else None
    if canvas is not None:
        canvas[:, oy : oy + min(nh, h), ox : ox + min(nw, w)] = x[:, : min(nh, h), : min(nw, w)]
        x, shift = canvas, torch.tensor([ox, oy, ox, oy], dtype=boxes.dtype)
    else:
        x, shift = x[:, oy : oy + h, ox : ox + w], -torch.tensor([ox, oy, ox, oy], dtype=boxes.dtype)
    area0 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    boxes = boxes + shift
    boxes[:, 0::2], boxes[:, 1::2] = boxes[:, 0::2].clamp(0, w), boxes[:, 1::2].clamp(0, h)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = area > 0.4 * area0.clamp_min(1e-6)  # drop boxes mostly cut off
    return x, Target(boxes[keep], t.labels[keep], (h, w))


class DetectionSet(Dataset):
    """Registered pairs with boxes, as (image (C, H, W), Target) for one input mode.

    Args:
        root: dataset folder with ``ir/`` and ``vi/``.
        mode: ``vis``, ``ir``, ``fused``, ``early`` or ``two_stream``.
        labels: folder with ``classes.txt`` and one folder of YOLO files per view (``vi``, ``ir``, ``fusion``),
            or a folder of YOLO files, or a COCO JSON file (default ``root/labels``).
        view: which label set to use (default: ``vi`` for vis, ``ir`` for ir, ``fusion`` for the others).
        fused: folder of fused images (required for mode ``fused``).
        names: restrict to these image names (folds).
        scale: resize factor applied to every image and box (e.g. 0.5 trains MSRS at 320x240).
        augment: random flips and scale-crops (training).
        seed: seed of the augmentation stream.
    """

    def __init__(
        self,
        root: str | Path,
        mode: str = "vis",
        labels: str | Path | None = None,
        view: str | None = None,
        fused: str | Path | None = None,
        names: list[str] | None = None,
        scale: float = 1.0,
        augment: bool = False,
        seed: int = 0,
    ):
        if mode not in MODES:
            raise RgbtError(f"unknown detection input mode '{mode}'; choose one of: {', '.join(MODES)}")
        if mode == "fused" and fused is None:
            raise RgbtError("mode 'fused' needs --fused: a folder of fused images (rgbt fuse --out ...)")
        root = Path(root)
        pairs = dataset_pairs(root)
        if names is not None:
            known = {p.name for p in pairs}
            missing = sorted(set(names) - known)
            if missing:
                raise RgbtError(f"{short(root)}: no pair named {missing[0]}; check the fold list")
            pairs = [p for p in pairs if p.name in set(names)]
        self.pairs: list[Pair] = pairs
        self.mode, self.scale, self.augment = mode, scale, augment
        self.fused = _images(Path(fused)) if fused is not None else None
        if self.fused is not None:
            lonely = [p.name for p in pairs if p.name not in self.fused]
            if lonely:
                raise RgbtError(f"{short(fused)}: no fused image for {lonely[0]}; fuse the whole set first")
        labels = Path(labels) if labels is not None else root / "labels"
        view = view or MODES[mode]
        if labels.suffix.lower() == ".json":
            self._coco, self.classes = read_coco_json(labels)
            self._yolo = None
        else:
            folder = labels / view if (labels / view).is_dir() else labels
            self.classes = read_classes(
                labels / "classes.txt" if (labels / "classes.txt").is_file() else folder / "classes.txt"
            )
            self._coco, self._yolo = None, folder
        self.gen = torch.Generator().manual_seed(seed)

    @property
    def channels(self) -> int:
        return {"vis": 3, "ir": 1, "early": 4, "two_stream": 4}.get(self.mode) or self[0][0].shape[0]

    def __len__(self) -> int:
        return len(self.pairs)

    def target(self, i: int, size: tuple[int, int]) -> Target:
        p = self.pairs[i]
        if self._coco is not None:
            if p.name not in self._coco:
                raise RgbtError(f"no COCO annotation entry for {p.name}; add the image to the JSON")
            return self._coco[p.name]
        return read_yolo(self._yolo / f"{p.name}.txt", size, len(self.classes))

    def image(self, i: int) -> torch.Tensor:
        p = self.pairs[i]
        if self.mode == "fused":
            x = read_image(self.fused[p.name])[0]
        elif self.mode == "ir":
            x = read_image(p.ir, grey=True)[0]
        else:
            vis = read_image(p.vis)[0]
            vis = vis.expand(-1, 3, -1, -1) if vis.shape[1] == 1 else vis
            x = vis if self.mode == "vis" else torch.cat([vis, read_image(p.ir, grey=True)[0]], 1)
        return x[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        x = self.image(i)
        h, w = x.shape[-2:]
        t = self.target(i, (h, w))
        if t.size != (h, w):
            raise RgbtError(f"{short(self.pairs[i].vis)}: labels are for {t.size[1]}x{t.size[0]}, image is {w}x{h}")
        if self.scale != 1.0:
            nh, nw = round(h * self.scale), round(w * self.scale)
            x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
            t = Target(t.boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h]), t.labels, (nh, nw), t.name)
        if self.augment:
            x, t = augment(x, t, self.gen)
        t.name = self.pairs[i].name
        return x, t


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Stack images of one size (pad the bottom-right with zeros to the largest) and list the targets."""
    h = max(x.shape[-2] for x, _ in batch)
    w = max(x.shape[-1] for x, _ in batch)
    xs = [F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2])) for x, _ in batch]
    return torch.stack(xs), [t for _, t in batch]
