"""The ``rgbt`` command line.

Every user error (see :mod:`fusion.errors`) prints one line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from fusion.errors import RgbtError
from fusion.perf import set_threads, tune_allocator


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise RgbtError(f"--device {name}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RgbtError(f"--device {name}: no CUDA GPU is visible; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise RgbtError(f"--device {name}: unsupported here; use cpu, cuda or cuda:N")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise RgbtError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible; use cuda:0")
    return name


MIN_TILE = 64  # smaller tiles are mostly context: a network run per few pixels would never finish


def _tile(tile: int | None) -> int | None:
    if tile is not None and tile != 0 and tile < MIN_TILE:
        raise RgbtError(f"--tile {tile}: use 0 (never tile) or at least {MIN_TILE} pixels")
    return tile


def check_csv_target(path: str, overwrite: bool) -> None:
    """Fail before the slow part if ``--csv`` cannot be written: a folder, an existing file without
    ``--overwrite``, or a folder we may not write in."""
    p = Path(path)
    if p.is_dir():
        raise RgbtError(f"--csv {path} is a folder; name a file, e.g. {Path(path) / 'scores.csv'}")
    if p.exists() and not overwrite:
        raise RgbtError(f"{path} exists; pass --overwrite to replace it or choose another --csv")
    from fusion.io import probe_writable

    probe_writable(p.parent, f"--csv {path}")


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
    device = _device(a.device)
    pairs = find_pairs(a.ir, a.vis)
    model = build_method(a.method, ckpt=a.ckpt, tile=_tile(a.tile), official=a.official, weights=a.weights)
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
        check_csv_target(a.csv, a.overwrite)
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
    timed_demo(cfg, a.out, a.data, _device(a.device), a.weights)


def cmd_calibrate(a: argparse.Namespace) -> None:
    from calibration.run import parse_board, run_calibration

    board = parse_board(a.board)
    res = run_calibration(board, a.cam1, a.out, a.cam2, a.thermal1, a.thermal2, a.overwrite, a.plot)
    for cam in ("camera1", "camera2"):
        if cam in res:
            c = res[cam]
            rej = f", rejected {len(c['rejected'])}" if c["rejected"] else ""
            fx, fy = c["K"][0][0], c["K"][1][1]
            print(f"{cam}: RMS {c['rms_px']:.3f} px over {c['views_used']} views{rej}; fx {fx:.1f} fy {fy:.1f}")
    if "stereo" in res:
        s = res["stereo"]
        print(f"stereo: RMS {s['rms_px']:.3f} px over {len(s['pairs_used'])} pairs; baseline {s['baseline_mm']:.1f} mm")
    print(f"wrote {a.out}")


def cmd_register(a: argparse.Namespace) -> None:
    import numpy as np

    from calibration import register as R
    from calibration.registration import Registration

    if a.action == "fit":
        if a.out and os.path.exists(a.out) and not a.overwrite:
            raise RgbtError(f"{a.out} exists; pass --overwrite to replace it or choose another --out")
        reg = R.fit(a)
        reg.save(a.out, overwrite=a.overwrite)
        for k, v in reg.info.items():
            print(f"{k}: {v}")
        print(
            f"wrote {a.out} ({reg.model}, {reg.source} {reg.source_size[0]}x{reg.source_size[1]} -> "
            f"{reg.target} {reg.target_size[0]}x{reg.target_size[1]})"
        )
    elif a.action == "apply":
        reg = Registration.load(a.reg)
        size = None
        if a.resize:
            try:
                size = tuple(int(v) for v in a.resize.lower().split("x"))
                assert len(size) == 2 and min(size) > 0
            except (ValueError, AssertionError):
                raise RgbtError(f"--resize {a.resize}: write it as WIDTHxHEIGHT, e.g. 640x512") from None
        n = R.apply(reg, a.ir, a.vis, a.out, not a.no_crop, a.overlay, a.overwrite, a.rgb_onto_ir, size)
        print(f"wrote {n} aligned pairs to {a.out}/ir and {a.out}/vi")
    else:
        if a.flow:
            rows = R.eval_flows(a.flow, a.ir, a.vis, a.model)
            print("| id | EPE none mean | median | EPE registered mean | median | confidence |")
            print("|---|---:|---:|---:|---:|---|")
            for r in rows:
                c = r["confidence"]
                verdict = f"{c['value']:.2f}" if c["ok"] else "fails: " + "; ".join(c["reasons"])
                print(
                    f"| {r['id']} | {r['epe_none_mean']:.2f} | {r['epe_none_median']:.2f} | {r['epe_mean']:.2f} | "
                    f"{r['epe_median']:.2f} | {verdict} |"
                )
            m = {
                k: float(np.mean([r[k] for r in rows]))
                for k in ("epe_none_mean", "epe_none_median", "epe_mean", "epe_median")
            }
            cells = " | ".join(f"{m[k]:.2f}" for k in ("epe_none_mean", "epe_none_median", "epe_mean", "epe_median"))
            print(f"| mean | {cells} | {sum(r['confidence']['ok'] for r in rows)} of {len(rows)} pass |")
        elif a.board and a.reg:
            from calibration.boards import Chessboard

            res = R.transfer_error(Registration.load(a.reg), Chessboard.parse(a.board), a.ir, a.vis)
            for k, v in res["per_view_mean_px"].items():
                print(f"view {k}: {v:.3f} px")
            print(
                f"board-corner transfer error: mean {res['mean_px']:.3f} px over {len(res['per_view_mean_px'])} views"
            )
        elif a.points and a.reg:
            reg = Registration.load(a.reg)
            src, dst = R.read_points(a.points, a.one_based)
            err = np.linalg.norm(reg.map_points(src) - dst, axis=1)
            none = np.linalg.norm(src - dst, axis=1)
            print("landmark errors (px): " + ", ".join(f"{e:.2f}" for e in err))
            print(f"mean {err.mean():.2f} px (unregistered {none.mean():.2f} px), max {err.max():.2f} px")
        else:
            raise RgbtError(
                "eval needs --flow with --ir (warped) and --vis, --reg with --points, or --reg with --board"
            )


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
    from fusion.models import load_model, save_weights

    if os.path.exists(a.out) and not a.overwrite:
        raise RgbtError(f"{a.out} exists; pass --overwrite to replace it")
    import hashlib

    from fusion.models import weight_files
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
    sha = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    meta = {
        "source": ", ".join(sha),
        "source_format": model.source,
        "source_sha256": next(iter(sha.values())) if len(sha) == 1 else sha,
        **({"method": a.method} if a.method else {}),
    } | meta
    print(f"{model.name}: wrote {save_weights(model, a.out, meta)} (from {model.source})")


TRAIN_COMMANDS = ("fit", "validate", "test")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``rgbt fuse: error: ...; see rgbt fuse --help``), exit 2, and a
    flag must be spelt out in full (no silent prefix matching: ``--over`` is not ``--overwrite``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="rgbt", description="RGB-thermal image fusion toolkit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

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
        choices=("standard", "vifb", "tang", "tang2022", "cddfuse", "ivifzoo"),
        help="whose metric definitions to use (default: standard; see docs/metrics.md)",
    )
    e.add_argument(
        "--norm16", help="scaling of 16-bit fused images or sources: fixed, fixed:LO:HI, minmax, percentile:LO:HI"
    )
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="fuse and score the bundled sample sets, write a comparison figure")
    d.add_argument("--data", help="data root (default: $RGBT_DATA, ./data, ../shared/data)")
    d.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    d.add_argument("--config", help="YAML demo settings (see experiments/demo.yaml)")
    d.add_argument("--limit", type=int, help="at most this many pairs per dataset")
    d.add_argument("--methods", help="comma-separated methods, or 'all' (default: those fast on a CPU)")
    d.add_argument("--device", default="auto", help="cpu, cuda ... (default: GPU if present)")
    d.add_argument("--weights", help="folder of the authors' weight files to search first (as rgbt fuse --weights)")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("calibrate", help="calibrate one camera or a stereo pair from board images")
    c.add_argument(
        "--board",
        required=True,
        help="chessboard:COLSxROWS:SQUARE_MM (inner corners, e.g. chessboard:9x6:25), circles:COLSxROWS:MM, "
        "acircles:COLSxROWS:MM, charuco:SQXxSQY:SQUARE_MM:MARKER_MM[:DICT_4X4_50], or coded:BOARD.png[:SQUARE_MM] "
        "(the MRT coded thermal board)",
    )
    c.add_argument("--cam1", required=True, help="quoted glob of the first camera's images, e.g. 'calib/left*.jpg'")
    c.add_argument("--cam2", help="quoted glob of the second camera's images (pairs by trailing number)")
    c.add_argument("--thermal1", action="store_true", help="camera 1 is thermal: try inversion and CLAHE")
    c.add_argument("--thermal2", action="store_true", help="camera 2 is thermal")
    c.add_argument("--out", required=True, help="YAML file to write")
    c.add_argument("--plot", help="PNG bar chart of per-view reprojection errors")
    c.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    c.set_defaults(func=cmd_calibrate)

    r = sub.add_parser("register", help="fit, apply or evaluate an IR -> RGB registration")
    r.add_argument("action", choices=("fit", "apply", "eval"))
    r.add_argument("--ir", help="fit: IR image; apply: folder of IR images; eval --flow: folder of warped IR images")
    r.add_argument("--vis", help="fit: RGB image; apply/eval: folder of RGB images")
    r.add_argument("--points", help="control points (CSV source_x,source_y,target_x,target_y, or JSON)")
    r.add_argument("--one-based", action="store_true", help="the points are MATLAB (1-based) pixel coordinates")
    r.add_argument("--via-ir", help="fit: the aligned IR crop of the same scene (bridge)")
    r.add_argument("--via-vis", help="fit: the aligned RGB image of the same scene (bridge)")
    r.add_argument("--model", default="affine", choices=("translation", "similarity", "affine", "homography"))
    r.add_argument("--method", default="ransac", choices=("ransac", "lmeds", "lsq"), help="point fitting")
    r.add_argument("--threshold", type=float, default=3.0, help="RANSAC inlier threshold, px")
    r.add_argument("--refine", action="store_true", help="refine a point or bridge fit by ECC on gradients")
    r.add_argument("--max-shift", type=float, default=60.0, help="reject refinements moving a corner further, px")
    r.add_argument("--reg", help="registration file (apply, eval)")
    r.add_argument(
        "--init", help="fit (automatic): start from this earlier registration of the rig instead of the size ratio"
    )
    r.add_argument("--rig", help="fit: stereo calibration YAML from rgbt calibrate (plane-induced homography)")
    r.add_argument("--distance", type=float, help="fit --rig: distance of the scene plane from the source camera, mm")
    r.add_argument(
        "--source-camera", default="camera1", choices=("camera1", "camera2"), help="fit --rig: the IR camera"
    )
    r.add_argument("--board", help="eval: board spec; with --ir/--vis globs gives board-corner transfer error")
    r.add_argument("--flow", help="eval: folder of <id>.npz ground-truth displacements")
    r.add_argument("--out", help="fit: registration file (.yaml or .json); apply: output folder")
    r.add_argument("--no-crop", action="store_true", help="apply: keep the whole RGB frame")
    r.add_argument("--overlay", action="store_true", help="apply: also write IR edges over RGB")
    r.add_argument("--rgb-onto-ir", action="store_true", help="apply: warp RGB onto the IR grid instead")
    r.add_argument("--resize", help="apply: resize the aligned pairs to WIDTHxHEIGHT")
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(func=cmd_register)

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
    for name in TRAIN_COMMANDS:  # parsed by LightningCLI, listed here for --help
        sub.add_parser(
            name, help=f"{name} a fusion network: rgbt {name} --config experiments/<model>.yaml", add_help=False
        )

    sub.add_parser(
        "detect", help="downstream detector: rgbt detect fit|test|predict|compare (see rgbt detect -h)", add_help=False
    )
    from fusion.experiment.cli import add_parser as add_experiment

    add_experiment(sub)
    m = sub.add_parser("methods", help="list the fusion methods, their papers and the weights found")
    m.add_argument("--weights", help="folder of the authors' weight files to search first (as rgbt fuse --weights)")
    m.set_defaults(func=cmd_methods)
    return p


def dispatch(
    argv: list[str], prog: str, parser: argparse.ArgumentParser, lightning: tuple[str, ...], datamodule_class=None
) -> int:
    """Run one command line: LightningCLI for the ``lightning`` sub-commands (with ``datamodule_class``),
    ``parser`` for the rest; errors become one line and the exit status."""
    if argv and argv[0] in lightning:  # LightningCLI owns these arguments
        from fusion.train.cli import main as train_main

        try:
            train_main(list(argv), datamodule_class=datamodule_class, prog=prog)
        except RgbtError as e:
            print(f"{prog} {argv[0]}: error: {e}", file=sys.stderr)
            return e.exit_code
        return 0
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except RgbtError as e:
        print(f"{prog} {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished images are complete, rerun to continue", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tune_allocator()  # fewer page faults for full-image tensor code (fusion/perf.py)
    set_threads()  # intra-op threads from RGBT_THREADS, OMP_NUM_THREADS or this process's CPU affinity
    if argv and argv[0] == "detect":  # downstream detection has its own sub-commands
        from detection.cli import main as detect_main

        return detect_main(list(argv[1:]))
    return dispatch(argv, "rgbt", build_parser(), TRAIN_COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
