"""``rgbt detect compare``: the fusion-for-detection protocol as one command.

For every input (infrared, visible, fused by each listed method, early fusion, two-stream), train the same
detector with the same seed and recipe and score it with COCO mAP. With a small labelled set (the 20 MSRS pairs
here) the images are split into k folds (interleaved by name, so day and night scenes fall in every fold): each
fold is scored by a detector trained on the others, and the table gives mean and standard deviation over folds.
A full dataset uses its own split instead (``--train-list``, ``--test-list``), repeated over ``--seeds``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytorch_lightning as pl
import torch

from detection.data import DetectionSet
from detection.model import FCOS, TwoStreamFCOS
from detection.module import DetectionDataModule, DetectionModule
from fusion.data import dataset_pairs
from fusion.errors import RgbtError


@dataclass
class Recipe:
    """Training recipe shared by every input (so only the input differs)."""

    steps: int = 300
    batch_size: int = 4
    scale: float = 0.5
    width: int = 16
    depth: int = 1
    lr: float = 2e-3
    seed: int = 0


@dataclass
class Row:
    name: str
    folds: list[dict] = field(default_factory=list)


def folds_of(names: list[str], k: int) -> list[list[str]]:
    """k interleaved folds of the sorted names."""
    if not 2 <= k <= len(names):
        raise RgbtError(f"--folds {k}: need between 2 and {len(names)} folds for {len(names)} images")
    names = sorted(names)
    return [names[i::k] for i in range(k)]


def build_detector(mode: str, channels: int, num_classes: int, r: Recipe) -> torch.nn.Module:
    if mode == "two_stream":
        return TwoStreamFCOS(3, num_classes, r.width, r.depth)
    return FCOS(channels, num_classes, r.width, r.depth)


def train_and_score(
    root: Path,
    mode: str,
    train: list[str],
    test: list[str],
    r: Recipe,
    fused: str | None = None,
    labels: str | None = None,
    view: str | None = None,
) -> dict:
    """Train one detector on ``train`` and return its COCO scores on ``test``."""
    from fusion.train.cli import quiet_lightning

    quiet_lightning()  # one Trainer per detector: no banner and tips for each
    pl.seed_everything(r.seed, verbose=False)
    dm = DetectionDataModule(
        str(root), mode, labels, view, fused, r.scale, train, test, test, r.batch_size, seed=r.seed
    )
    probe = DetectionSet(root, mode, labels, view, fused, train[:1])
    model = build_detector(mode, probe.channels, len(probe.classes), r)
    module = DetectionModule(model, lr=r.lr, classes=probe.classes, panels=0)
    trainer = pl.Trainer(
        max_steps=r.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        deterministic=False,
    )
    trainer.fit(module, dm)
    trainer.test(module, dm, verbose=False)
    return module.last_scores


def summarise(rows: list[Row], classes: list[str]) -> str:
    """Markdown table: mean +- std over runs (folds x seeds) of mAP@0.5, mAP@0.5:0.95 and per-class AP@0.5."""
    cols = ["mAP50", "mAP"] + [f"AP50/{c}" for c in classes]
    head = "| input | runs | mAP@0.5 | mAP@0.5:0.95 | " + " | ".join(f"AP@0.5 {c}" for c in classes) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(cols)]
    for row in rows:
        cells = []
        for c in cols:
            vals = [f[c] for f in row.folds if not math.isnan(f[c])]
            if not vals:
                cells.append("-")
            else:
                sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}")
        lines.append(f"| {row.name} | {len(row.folds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def export_fused(root: Path, method: str, out: Path, device: str = "cpu") -> Path:
    """Fuse the dataset with ``method`` into ``out/<method>`` (finished images are kept)."""
    from fusion.fuse import fuse_pairs
    from fusion.methods import build_method

    target = out / method
    fuse_pairs(build_method(method), dataset_pairs(root), target, method=method, device=device, progress=False)
    return target


def read_names(path: str | Path, known: list[str]) -> list[str]:
    """A split file: one image name (or file name) per line, as the MSRS / M3FD split lists."""
    path = Path(path)
    if not path.is_file():
        raise RgbtError(f"{path}: no such split file; list one image name per line")
    names = [Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()]
    missing = sorted(set(names) - set(known))
    if missing:
        raise RgbtError(f"{path}: {missing[0]} is not in the dataset; check the split against ir/ and vi/")
    return names


def compare(
    root: Path,
    inputs: list[str],
    methods: list[str],
    k: int,
    r: Recipe,
    out: Path,
    labels: str | None = None,
    view: str | None = None,
    log=print,
    seeds: int = 1,
    split: tuple[str, str] | None = None,
) -> tuple[list[Row], list[str]]:
    """Run the protocol; returns one row per input (methods become ``fused:<method>`` rows).

    Each row holds one score per (fold, seed): ``k`` folds of the whole set, or the dataset's own ``split``
    (train list file, test list file) when given, each trained with ``seeds`` seeds.
    """
    names = [p.name for p in dataset_pairs(root)]
    if split is not None:
        runs = [(read_names(split[0], names), read_names(split[1], names))]
    else:
        folds = folds_of(names, k)
        runs = [([n for j, f in enumerate(folds) if j != i for n in f], test) for i, test in enumerate(folds)]
    plan: list[tuple[str, str, str | None]] = []
    for name in inputs:
        if name == "fused":
            plan += [(f"fused:{m}", "fused", str(export_fused(root, m, out / "fused"))) for m in methods]
        else:
            plan.append((name, name, None))
    classes = DetectionSet(root, "vis", labels, view, names=names[:1]).classes
    rows = []
    for label, mode, fused in plan:
        row = Row(label)
        for i, (train, test) in enumerate(runs):
            for seed in range(r.seed, r.seed + seeds):
                s = train_and_score(root, mode, train, test, replace(r, seed=seed), fused, labels, view)
                row.folds.append(s)
                log(f"{label} split {i + 1}/{len(runs)} seed {seed}: mAP@0.5 {s['mAP50']:.3f}, mAP {s['mAP']:.3f}")
        rows.append(row)
    return rows, classes
