"""The calibration commands of ``rgbt``: calibrate (one camera or a stereo rig) and register (fit, apply, eval).

``add_calibrate(sub)`` and ``add_register(sub)`` add the sub-parsers; :mod:`fusion.cli` assembles them.
"""

from __future__ import annotations

import argparse

from fusion.errors import RgbtError


def cmd_calibrate(a: argparse.Namespace) -> None:
    from calibration.run import parse_board, run_calibration

    board = parse_board(a.board)
    image = a.board.split(":")[1] if a.board.startswith("coded:") else None
    res = run_calibration(board, a.cam1, a.out, a.cam2, a.thermal1, a.thermal2, a.overwrite, a.plot, image)
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
    from fusion.guard import check_image_memory, check_outputs

    if a.action == "fit":
        inputs = [a.ir, a.vis, a.via_ir, a.via_vis, a.points, a.init, a.rig]
        check_outputs({"--out": a.out}, inputs, a.overwrite)
        reg = R.fit(a)
        reg.save(a.out, overwrite=a.overwrite)
        for k, v in reg.info.items():
            print(f"{k}: {v}")
        print(
            f"wrote {a.out} ({reg.model}, {reg.source} {reg.source_size[0]}x{reg.source_size[1]} -> "
            f"{reg.target} {reg.target_size[0]}x{reg.target_size[1]})"
        )
    elif a.action == "apply":
        check_outputs({"--out": a.out}, [a.ir, a.vis, a.reg], folders=("--out",))
        size = None
        if a.resize:
            try:
                size = tuple(int(v) for v in a.resize.lower().split("x"))
                assert len(size) == 2 and min(size) > 0
            except (ValueError, AssertionError):
                raise RgbtError(f"--resize {a.resize}: write it as WIDTHxHEIGHT, e.g. 640x512") from None
            check_image_memory(size[0], size[1], 3 * 2, "--resize")  # the two aligned images, 3 bytes a pixel
        reg = Registration.load(a.reg)
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


def add_calibrate(sub) -> None:
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


def add_register(sub) -> None:
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
