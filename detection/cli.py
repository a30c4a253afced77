"""``rgbt detect fit|validate|test|predict --config experiments/detect_*.yaml`` (LightningCLI) and
``rgbt detect compare`` (the fusion-for-detection table)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusion.commandline import OneLineParser, dispatch
from fusion.errors import RgbtError
from fusion.guard import check_outputs

LIGHTNING = ("fit", "validate", "test", "predict")


def cmd_compare(a: argparse.Namespace) -> None:
    from detection.compare import Recipe, compare, summarise
    from fusion.data import KNOWN_DATASETS, resolve_data_root
    from fusion.io import atomic_write_bytes

    root = Path(a.root)
    if not root.is_dir():
        root = resolve_data_root(a.data) / KNOWN_DATASETS.get(a.root, a.root)
    out = Path(a.out)
    table = out / "compare.md"
    check_outputs({"--out": out}, [root, a.labels, a.train_list, a.test_list], folders=("--out",))
    if table.exists() and not a.overwrite:
        raise RgbtError(f"{table} exists; pass --overwrite to replace it or choose another --out")
    r = Recipe(
        steps=a.steps, batch_size=a.batch_size, scale=a.scale, width=a.width, depth=a.depth, lr=a.lr, seed=a.seed
    )
    inputs = [s.strip() for s in a.inputs.split(",") if s.strip()]
    methods = [s.strip() for s in a.methods.split(",") if s.strip()]
    unknown = [i for i in inputs if i not in ("ir", "vis", "fused", "early", "two_stream")]
    if unknown:
        raise RgbtError(f"unknown input '{unknown[0]}'; choose from ir, vis, fused, early, two_stream")
    if (a.train_list is None) != (a.test_list is None):
        raise RgbtError("--train-list and --test-list go together (one split); leave both out for k folds")
    split = (a.train_list, a.test_list) if a.train_list else None
    rows, classes = compare(
        root,
        inputs,
        methods,
        a.folds,
        r,
        out,
        a.labels,
        a.view,
        log=lambda s: print(s, file=sys.stderr),
        seeds=a.seeds,
        split=split,
    )
    how = "the given train/test split" if split else f"{a.folds}-fold cross-validation"
    text = (
        f"{summarise(rows, classes)}\n\n{root.name}: {how}, {a.seeds} seed(s), mean ± std over runs; "
        f"FCOS width {r.width} depth {r.depth}, {r.steps} steps, batch {r.batch_size}, scale {r.scale}, "
        f"AdamW {r.lr}, seed {r.seed}; labels: {a.view or 'each input view'}\n"
    )
    atomic_write_bytes(table, text.encode())
    print(text)


def add_parser(sub) -> None:
    """The ``rgbt detect`` line of ``rgbt --help``; :func:`main` parses its arguments."""
    sub.add_parser(
        "detect", help="downstream detector: rgbt detect fit|test|predict|compare (see rgbt detect -h)", add_help=False
    )


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="rgbt detect", description="downstream detection on fused and RGB-T input")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name in LIGHTNING:
        sub.add_parser(
            name, help=f"{name} a detector: rgbt detect {name} --config experiments/detect_msrs.yaml", add_help=False
        )
    c = sub.add_parser(
        "compare",
        help="train the same detector on each input and print one mAP table",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    c.add_argument("--root", default="msrs", help="labelled dataset (a name under the data root or a folder)")
    c.add_argument("--data", help="data root (default: $RGBT_DATA, ./data, ../shared/data)")
    c.add_argument("--inputs", default="ir,vis,fused,early,two_stream", help="comma-separated inputs")
    c.add_argument("--methods", default="average,densefuse", help="fusion methods for the 'fused' input")
    c.add_argument("--folds", type=int, default=4, help="k-fold cross-validation (without --train-list)")
    c.add_argument("--seeds", type=int, default=1, help="train every fold with this many seeds")
    c.add_argument("--train-list", help="a full dataset's train split: one image name per line")
    c.add_argument("--test-list", help="its test split")
    c.add_argument("--steps", type=int, default=300, help="training steps per detector")
    c.add_argument("--batch-size", type=int, default=4)
    c.add_argument("--scale", type=float, default=0.5, help="resize factor of the images (MSRS: 320x240)")
    c.add_argument("--width", type=int, default=16)
    c.add_argument("--depth", type=int, default=1)
    c.add_argument("--lr", type=float, default=2e-3)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--labels", help="labels folder or COCO JSON (default: <root>/labels)")
    c.add_argument("--view", help="one label set for every input (e.g. fusion); default: each input's own")
    c.add_argument("--out", default="runs/detect_compare", help="folder for fused images and compare.md")
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(func=cmd_compare)
    return p


def main(argv: list[str]) -> int:
    datamodule = None
    if argv and argv[0] == "predict" and not any(a == "--ckpt_path" or a.startswith("--ckpt_path=") for a in argv):
        print("rgbt detect predict: error: no --ckpt_path; pass the checkpoint that rgbt detect fit wrote "
              "(an untrained detector would predict random boxes)", file=sys.stderr)  # fmt: skip
        return 2
    if argv and argv[0] in LIGHTNING:
        from detection.module import DetectionDataModule as datamodule
    return dispatch(argv, "rgbt detect", build_parser(), LIGHTNING, datamodule)
