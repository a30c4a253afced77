"""The ``rgbt`` command line.

Every user error (see :mod:`fusion.errors`) prints one line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from fusion.errors import RgbtError


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RgbtError(f"--device {name}: no CUDA GPU is visible; use --device cpu")
    return name


def cmd_fuse(a: argparse.Namespace) -> None:
    from fusion.data import find_pairs
    from fusion.fuse import fuse_pairs
    from fusion.io import Norm16
    from fusion.methods import build_method

    model = build_method(a.method)
    pairs = find_pairs(a.ir, a.vis)
    norm = Norm16.parse(a.norm16) if a.norm16 else None
    rep = fuse_pairs(
        model,
        pairs,
        a.out,
        method=a.method,
        overwrite=a.overwrite,
        device=_device(a.device),
        norm16=norm,
        bits=a.bits,
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
    if a.csv and os.path.exists(a.csv) and not a.overwrite:  # fail before the slow part
        raise RgbtError(f"{a.csv} exists; pass --overwrite to replace it or choose another --csv")
    pairs = find_pairs(a.ir, a.vis)
    fused = collect_fused(a.fused, [p.name for p in pairs])
    rows = evaluate_pairs(fused, pairs, metrics=metrics, convention=a.convention)
    print(markdown_table(rows))
    if a.csv:
        write_csv(rows, a.csv, overwrite=a.overwrite)
        print(f"wrote {len(rows)} values to {a.csv}")


def cmd_demo(a: argparse.Namespace) -> None:
    from fusion.demo import DemoConfig, timed_demo

    cfg = DemoConfig.from_yaml(a.config) if a.config else DemoConfig()
    if a.limit:
        cfg.limit = a.limit
    timed_demo(cfg, a.out, a.data)


def cmd_calibrate(a: argparse.Namespace) -> None:
    from calibration.boards import Chessboard
    from calibration.run import run_calibration

    board = Chessboard.parse(a.board)
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


def cmd_methods(a: argparse.Namespace) -> None:
    from fusion.methods import METHODS

    for name, (_, desc) in METHODS.items():
        print(f"{name:12s} {desc}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rgbt", description="RGB-thermal image fusion toolkit")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fuse", help="fuse a folder of IR/visible pairs into PNGs")
    f.add_argument("--method", required=True, help="fusion method (see `rgbt methods`)")
    f.add_argument("--ir", required=True, help="folder of infrared images")
    f.add_argument("--vis", required=True, help="folder of visible images (same file names)")
    f.add_argument("--out", required=True, help="output folder (created)")
    f.add_argument("--overwrite", action="store_true", help="redo images already in --out")
    f.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: GPU if present)")
    f.add_argument("--norm16", help="scaling of 16-bit inputs: fixed, fixed:LO:HI, minmax, percentile:LO:HI")
    f.add_argument("--bits", type=int, choices=(8, 16), default=8, help="PNG bit depth of the output")
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
        choices=("standard", "vifb", "tang", "cddfuse"),
        help="whose metric definitions to use (default: standard; see docs/metrics.md)",
    )
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="fuse and score the bundled sample sets, write a comparison figure")
    d.add_argument("--data", help="data root (default: $RGBT_DATA, ./data, ../shared/data)")
    d.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    d.add_argument("--config", help="YAML demo settings (see experiments/demo.yaml)")
    d.add_argument("--limit", type=int, help="at most this many pairs per dataset")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("calibrate", help="calibrate one camera or a stereo pair from board images")
    c.add_argument(
        "--board", required=True, help="chessboard:COLSxROWS:SQUARE_MM (inner corners), e.g. chessboard:9x6:25"
    )
    c.add_argument("--cam1", required=True, help="quoted glob of the first camera's images, e.g. 'calib/left*.jpg'")
    c.add_argument("--cam2", help="quoted glob of the second camera's images (pairs by trailing number)")
    c.add_argument("--thermal1", action="store_true", help="camera 1 is thermal: try inversion and CLAHE")
    c.add_argument("--thermal2", action="store_true", help="camera 2 is thermal")
    c.add_argument("--out", required=True, help="YAML file to write")
    c.add_argument("--plot", help="PNG bar chart of per-view reprojection errors")
    c.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    c.set_defaults(func=cmd_calibrate)

    m = sub.add_parser("methods", help="list the fusion methods")
    m.set_defaults(func=cmd_methods)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RgbtError as e:
        print(f"rgbt {args.command}: error: {e}", file=sys.stderr)
        return RgbtError.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished images are complete, rerun to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
