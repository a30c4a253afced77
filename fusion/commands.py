"""The fusion commands of ``rgbt``: fuse, evaluate, demo, export, methods, and the training commands' help lines.

Each ``add_<command>(sub)`` adds one sub-parser with its handler; :mod:`fusion.cli` calls them in the order
``rgbt --help`` lists them. Handlers import what they need when they run, so that ``rgbt --help`` stays quick.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fusion.commandline import check_csv_target, parse_device, parse_tile
from fusion.errors import RgbtError
from fusion.metrics.conventions import CONVENTIONS

TRAIN_COMMANDS = ("fit", "validate", "test")  # parsed by LightningCLI (fusion/train/cli.py)


def cmd_fuse(a: argparse.Namespace) -> None:
    from fusion.data import find_pairs
    from fusion.fuse import check_out_apart, fuse_pairs
    from fusion.io import Norm16
    from fusion.methods import build_method

    if a.official and a.bits != 8:
        raise RgbtError("--official writes what the official script writes, 8-bit PNGs; drop --bits 16")
    if a.official and a.norm16:
        raise RgbtError("--official reads 8-bit images as the authors' script does; drop --norm16 (or --official)")
    if Path(a.ir).resolve() == Path(a.vis).resolve():
        raise RgbtError(f"--ir and --vis are the same folder ({a.ir}); give the infrared and the visible folders")
    check_out_apart(a.out, [a.ir, a.vis])
    device = parse_device(a.device)
    pairs = find_pairs(a.ir, a.vis)
    model = build_method(a.method, ckpt=a.ckpt, tile=parse_tile(a.tile), official=a.official, weights=a.weights)
    norm = Norm16.parse(a.norm16) if a.norm16 else None
    rep = fuse_pairs(
        model,
        pairs,
        a.out,
        method=a.method,
        overwrite=a.overwrite,
        device=device,
        norm16=norm,
        bits=a.bits,
        official=a.official,
    )
    skipped = f", skipped {len(rep.skipped)} already fused (--overwrite to redo)" if rep.skipped else ""
    print(f"{a.method}: wrote {len(rep.written)} images to {a.out} in {rep.seconds:.1f} s{skipped}")


def cmd_evaluate(a: argparse.Namespace) -> None:
    from fusion.data import find_pairs
    from fusion.evaluate import collect_fused, evaluate_pairs, markdown_table, write_csv
    from fusion.metrics import metric_names

    if a.metrics == "all":
        metrics = metric_names(a.convention, extra=True)
    else:
        metrics = metric_names(a.convention) if not a.metrics else [m.strip() for m in a.metrics.split(",")]
    if a.csv:  # fail before the slow part
        check_csv_target(a.csv, a.overwrite, [a.fused, a.ir, a.vis])
    pairs = find_pairs(a.ir, a.vis)
    fused = collect_fused(a.fused, [p.name for p in pairs])
    from fusion.io import Norm16

    norm = Norm16.parse(a.norm16) if a.norm16 else None
    rows = evaluate_pairs(fused, pairs, metrics=metrics, convention=a.convention, norm16=norm)
    print(markdown_table(rows))
    if a.csv:
        write_csv(rows, a.csv, overwrite=a.overwrite)
        print(f"wrote {len(rows)} values to {a.csv}")


def cmd_demo(a: argparse.Namespace) -> None:
    from fusion.demo import DemoConfig, timed_demo

    cfg = DemoConfig.from_yaml(a.config) if a.config else DemoConfig()
    if a.limit is not None:
        if a.limit < 1:
            raise RgbtError(f"--limit {a.limit}: give a positive number of pairs per dataset (or leave it out: all)")
        cfg.limit = a.limit
    if a.methods:
        from fusion.methods import available_methods

        cfg.methods = available_methods() if a.methods == "all" else [m.strip() for m in a.methods.split(",")]
        cfg.skip_missing = a.methods == "all"  # methods named one by one must run
    timed_demo(cfg, a.out, a.data, parse_device(a.device), a.weights)


def cmd_methods(a: argparse.Namespace) -> None:
    from fusion.methods import CLASSICAL
    from fusion.models.zoo import ZOO, find_weights

    print("| method | paper | parameters | weights found | the authors publish theirs at |")
    print("|---|---|---:|---|---|")
    for name, (_, desc) in CLASSICAL.items():
        print(f"| {name} | {desc} (classical) | - | - | - |")
    for name, m in ZOO.items():
        found = find_weights(name, a.weights)
        where = found.describe() if found else "none (see rgbt fuse --method " + name + ")"
        print(f"| {name} | {m.paper} | {m.params:,} | {where} | {m.source or '-'} |")


def cmd_export(a: argparse.Namespace) -> None:
    from fusion.guard import check_outputs
    from fusion.models import load_model, save_weights

    check_outputs({"--out": a.out}, [a.ckpt], a.overwrite)
    import hashlib

    from fusion.models import is_tf1, weight_files
    from fusion.models.zoo import ZOO

    config = {}
    if a.method:
        from fusion.methods import LEARNED

        if a.method not in LEARNED:
            raise RgbtError(f"--method {a.method}: not a learned method; choose one of {', '.join(LEARNED)}")
        config = ZOO[a.method].config
    src = Path(a.ckpt)
    files = weight_files(src, ZOO[a.method].files if a.method else ()) if src.is_dir() else [src]
    model = load_model(src, expect=ZOO[a.method].family if a.method else None, files=tuple(f.name for f in files)
                       if src.is_dir() else (), **config)  # fmt: skip
    meta = dict(kv.split("=", 1) for kv in a.meta or [])
    if any(is_tf1(f) for f in files):  # a TensorFlow 1 checkpoint is its index and its data shards
        from fusion.models.tf1 import checkpoint_files

        files = [p for f in files for index, shards in [checkpoint_files(f)] for p in (index, *shards)]
    sha = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    meta = {
        "source": ", ".join(sha),
        "source_format": model.source,
        "source_sha256": next(iter(sha.values())) if len(sha) == 1 else sha,
        **({"method": a.method} if a.method else {}),
    } | meta
    print(f"{model.name}: wrote {save_weights(model, a.out, meta)} (from {model.source})")


def add_fuse(sub) -> None:
    f = sub.add_parser("fuse", help="fuse a folder of IR/visible pairs into PNGs")
    f.add_argument("--method", required=True, help="fusion method (see `rgbt methods`)")
    f.add_argument("--ir", required=True, help="folder of infrared images")
    f.add_argument("--vis", required=True, help="folder of visible images (same file names)")
    f.add_argument("--out", required=True, help="output folder (created)")
    f.add_argument("--overwrite", action="store_true", help="redo images already in --out")
    f.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: GPU if present)")
    f.add_argument("--norm16", help="scaling of 16-bit inputs: fixed, fixed:LO:HI, minmax, percentile:LO:HI")
    f.add_argument("--bits", type=int, choices=(8, 16), default=8, help="PNG bit depth of the output")
    f.add_argument(
        "--ckpt",
        help="learned methods: weight file, rgbt fit checkpoint, or the authors' file(s) (a file or their folder); "
        "default: the authors' weights where found, else ours (rgbt methods lists them)",
    )
    f.add_argument(
        "--tile",
        type=int,
        help="learned methods: fuse images larger than this in tiles of this side (0: never). Default: images up to "
        "1024 px a side whole, larger ones in tiles sized to keep memory under 1.5 GB",
    )
    f.add_argument(
        "--official",
        action="store_true",
        help="learned methods but ddcgan: reproduce the authors' test script (its reading, scaling, padding, 8-bit "
        "conversion and colour; no tiling), e.g. with the authors' weights (docs/zoo.md)",
    )
    f.add_argument(
        "--weights",
        help="folder of the authors' weight files laid out as official_weights/<method>/ (searched before "
        "$RGBT_WEIGHTS and <data root>/official_weights)",
    )
    f.set_defaults(func=cmd_fuse)


def add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="score fused images against their sources")
    e.add_argument(
        "--fused", required=True, help="folder of fused images, of one folder per method, or of <image>_<METHOD> files"
    )
    e.add_argument("--ir", required=True, help="folder of infrared images")
    e.add_argument("--vis", required=True, help="folder of visible images")
    e.add_argument("--csv", help="write per-image values (long format) to this CSV")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --csv")
    e.add_argument(
        "--metrics",
        help="comma-separated names (default: the convention's set; 'all' adds the slow FMI_pixel, FMI_dct)",
    )
    e.add_argument(
        "--convention",
        default="standard",
        choices=tuple(CONVENTIONS),
        help="whose metric definitions to use (default: standard; see docs/metrics.md)",
    )
    e.add_argument(
        "--norm16", help="scaling of 16-bit fused images or sources: fixed, fixed:LO:HI, minmax, percentile:LO:HI"
    )
    e.set_defaults(func=cmd_evaluate)


def add_demo(sub) -> None:
    d = sub.add_parser("demo", help="fuse and score the bundled sample sets, write a comparison figure")
    d.add_argument("--data", help="data root (default: $RGBT_DATA, ./data, ../shared/data)")
    d.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    d.add_argument("--config", help="YAML demo settings (see experiments/demo.yaml)")
    d.add_argument("--limit", type=int, help="at most this many pairs per dataset")
    d.add_argument("--methods", help="comma-separated methods, or 'all' (default: those fast on a CPU)")
    d.add_argument("--device", default="auto", help="cpu, cuda ... (default: GPU if present)")
    d.add_argument("--weights", help="folder of the authors' weight files to search first (as rgbt fuse --weights)")
    d.set_defaults(func=cmd_demo)


def add_export(sub) -> None:
    x = sub.add_parser(
        "export", help="write a checkpoint's network (rgbt fit or an official file) as a weight file for rgbt fuse"
    )
    x.add_argument(
        "--ckpt", required=True, help="checkpoint written by rgbt fit, or the authors' file(s) (a file or their folder)"
    )
    x.add_argument("--method", help="the zoo method the weights are for (its settings, e.g. ifcnn_mean's rule)")
    x.add_argument("--out", required=True, help="weight file to write, e.g. weights/swinfusion.pt")
    x.add_argument("--meta", nargs="*", help="KEY=VALUE notes stored in the file (data, steps, command)")
    x.add_argument("--overwrite", action="store_true")
    x.set_defaults(func=cmd_export)


def add_training(sub) -> None:
    for name in TRAIN_COMMANDS:  # parsed by LightningCLI, listed here for --help
        sub.add_parser(
            name, help=f"{name} a fusion network: rgbt {name} --config experiments/<model>.yaml", add_help=False
        )


def add_methods(sub) -> None:
    m = sub.add_parser("methods", help="list the fusion methods, their papers and the weights found")
    m.add_argument("--weights", help="folder of the authors' weight files to search first (as rgbt fuse --weights)")
    m.set_defaults(func=cmd_methods)
