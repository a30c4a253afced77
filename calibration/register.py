"""``rgbt register fit|apply|eval``: fit an IR -> RGB registration, apply it to a dataset, measure its error."""

from __future__ import annotations

import glob
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np

from calibration.align import common_crop, endpoint_error, overlay, refine_ecc, warp
from calibration.autoreg import auto_register
from calibration.boards import imread
from calibration.registration import Registration, fit_points
from fusion.csvfile import CsvRow, Finite, read_rows
from fusion.data import Pair, find_pairs
from fusion.errors import RegistrationFailed, RgbtError, short
from fusion.fuse import prepare_out_dir
from fusion.io import atomic_write_bytes, image_size


class PointRow(CsvRow):
    """One control point of a CSV points file: where it is in the source (IR) and in the target (RGB) image."""

    source_x: Finite
    source_y: Finite
    target_x: Finite
    target_y: Finite


def read_points(path: str | Path, one_based: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Control points as (source, target) (N, 2) arrays, 0-based.

    CSV with columns ``source_x,source_y,target_x,target_y``; JSON ``{"source": [[x, y], ...], "target":
    [...]}``, or MURF's landmark files (``LMfix_xy`` = IR = source, ``LMmove_xy`` = RGB = target).
    ``one_based``: the file holds MATLAB (1-based) coordinates.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            rows = read_rows(path, PointRow, "one point per row: source_x,source_y,target_x,target_y")
            src = np.array([[r.source_x, r.source_y] for r in rows]).reshape(-1, 2)
            dst = np.array([[r.target_x, r.target_y] for r in rows]).reshape(-1, 2)
        else:
            d = json.loads(path.read_text())
            src, dst = (
                (np.array(d["source"]), np.array(d["target"]))
                if "source" in d
                else (
                    np.array(d["LMfix_xy"]),
                    np.array(d["LMmove_xy"]),
                )
            )
    except FileNotFoundError:
        raise RgbtError(f"{short(path)}: no such points file") from None
    except (KeyError, ValueError, json.JSONDecodeError) as e:
        raise RgbtError(
            f"{short(path)}: expected columns source_x,source_y,target_x,target_y (CSV) or source/target lists (JSON) "
            f"({type(e).__name__})"
        ) from None
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape:
        raise RgbtError(f"{short(path)}: source and target point lists must be N x 2 of the same length")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise RgbtError(f"{short(path)}: a coordinate is NaN or infinite; fix or remove that point")
    return (src - 1, dst - 1) if one_based else (src, dst)


def read_flow(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A ground-truth displacement file: ``<id>.npz`` holding ``disp`` (H, W, 2) floats of the RGB image's size,
    finite; read without unpickling."""
    try:
        with np.load(path, allow_pickle=False) as z:
            disp = np.asarray(z["disp"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise RgbtError(f"{short(path)}: not a displacement file with a 'disp' array ({type(e).__name__})") from None
    if disp.shape != (*shape, 2) or not np.issubdtype(disp.dtype, np.floating) or not np.isfinite(disp).all():
        raise RgbtError(
            f"{short(path)}: 'disp' must be finite floats of shape {shape[0]}x{shape[1]}x2 (the RGB image's size), "
            f"got {disp.dtype} {'x'.join(map(str, disp.shape))}"
        )
    return disp.astype(np.float64)


def _locate(crop: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, float]:
    """Affine A (3x3) with frame(A x) ~ crop(x): coarse search over anisotropic scales by template matching,
    then ECC on intensities (same modality). Returns (A, ECC correlation)."""
    best = (-1.0, 1.0, 1.0, (0, 0))
    for sx in np.arange(0.6, 1.61, 0.05):
        for sy in np.arange(0.6, 2.01, 0.05):
            c = cv2.resize(crop, (round(crop.shape[1] * sx), round(crop.shape[0] * sy)), interpolation=cv2.INTER_AREA)
            if c.shape[0] > frame.shape[0] or c.shape[1] > frame.shape[1]:
                continue
            _, peak, _, loc = cv2.minMaxLoc(cv2.matchTemplate(frame, c, cv2.TM_CCOEFF_NORMED))
            best = max(best, (peak, sx, sy, loc))
    _, sx, sy, (ox, oy) = best
    W = np.array([[sx, 0, ox], [0, sy, oy]], np.float32)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    try:
        cc, W = cv2.findTransformECC(crop, frame, W, cv2.MOTION_AFFINE, crit, None, 3)
    except cv2.error:
        cc = 0.0
    return np.vstack([W.astype(np.float64), [0, 0, 1]]), float(cc)


def bridge(ir_full: np.ndarray, vis_hr: np.ndarray, ir_crop: np.ndarray, vis_crop: np.ndarray) -> Registration:
    """Full IR frame -> high-resolution visible, recovered through one aligned pair of the same scene.

    Datasets such as RoadScene make aligned pairs by warping part of the thermal frame onto a resized visible
    image. The aligned IR is located in the full frame (an affine, by scale search and ECC on intensities),
    the visible scale comes from the sizes (checked by correlation), and the two are composed.
    """
    gray = lambda x: (x if x.ndim == 2 else cv2.cvtColor(x, cv2.COLOR_BGR2GRAY)).astype(np.float32)  # noqa: E731
    A, ir_corr = _locate(gray(ir_crop), gray(ir_full))  # crop coords -> full-frame coords
    sx, sy = vis_hr.shape[1] / vis_crop.shape[1], vis_hr.shape[0] / vis_crop.shape[0]
    small = cv2.resize(gray(vis_hr), (vis_crop.shape[1], vis_crop.shape[0]), interpolation=cv2.INTER_AREA)
    vis_corr = float(np.corrcoef(small.ravel(), gray(vis_crop).ravel())[0, 1])
    if ir_corr < 0.95 or vis_corr < 0.9:
        raise RgbtError(
            f"the aligned pair does not come from these frames (IR match {ir_corr:.2f}, visible match {vis_corr:.2f}); "
            "pass the aligned images of the same scene"
        )
    # crop pixel centres -> high-res visible pixel centres: (x + 0.5) * s - 0.5
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    reg = Registration(S @ np.linalg.inv(A), "affine", ir_full.shape[1::-1], vis_hr.shape[1::-1])
    reg.info = {
        "fitted_from": "aligned bridge pair",
        "ir_crop_in_frame": np.round(A, 5).tolist(),
        "ir_match": round(ir_corr, 5),
        "visible_scale": [round(sx, 5), round(sy, 5)],
        "visible_match": round(vis_corr, 5),
    }
    return reg


def fit(args) -> Registration:
    """Registration from ``--points``, ``--via-ir/--via-vis`` (bridge) or the images alone (automatic)."""
    if args.rig:
        from calibration.registration import from_rig
        from fusion.safeyaml import load_yaml

        if not Path(args.rig).exists():
            raise RgbtError(f"{short(args.rig)}: no such calibration file (write one with rgbt calibrate)")
        rig = load_yaml(args.rig, "calibration file")
        if not isinstance(rig, dict) or "stereo" not in rig:
            raise RgbtError(f"{short(args.rig)}: not a stereo calibration (no 'stereo' entry); use rgbt calibrate "
                            "with --cam1 and --cam2")  # fmt: skip
        if args.distance is None:
            raise RgbtError("--rig needs --distance (mm from the source camera to the scene plane)")
        checks = tuple(f * args.distance for f in (0.5, 2.0)) + (1e9,)
        return from_rig(rig, args.distance, args.source_camera, checks)
    ir = imread(args.ir) if args.ir else None
    vis = imread(args.vis) if args.vis else None
    if args.points:
        if ir is None or vis is None:
            raise RgbtError("--points needs --ir and --vis too, for the image sizes")
        src, dst = read_points(args.points, args.one_based)
        reg = fit_points(src, dst, args.model, ir.shape[1::-1], vis.shape[1::-1], args.method, args.threshold)
    elif args.via_ir or args.via_vis:
        if not (args.via_ir and args.via_vis and ir is not None and vis is not None):
            raise RgbtError("a bridge fit needs --ir, --vis, --via-ir and --via-vis")
        reg = bridge(ir, vis, imread(args.via_ir), imread(args.via_vis))
    else:
        if ir is None or vis is None:
            raise RgbtError("give --ir and --vis (automatic), plus --points or --via-ir/--via-vis to start from those")
        if args.refine:
            raise RgbtError(
                "--refine applies to a point, bridge or rig fit; the automatic fit already ends with its own "
                "refinement (block matching, then the correlation maximised)"
            )
        # different sizes are the normal case on real rigs: the size ratio is the starting scale (calibration.autoreg),
        # or an earlier registration of the same rig
        init = None
        if getattr(args, "init", None):
            init = Registration.load(args.init)
            if init.source_size != ir.shape[1::-1] or init.target_size != vis.shape[1::-1]:
                raise RgbtError(
                    f"--init {short(args.init)} maps {init.source_size[0]}x{init.source_size[1]} onto "
                    f"{init.target_size[0]}x{init.target_size[1]}, not these images' sizes; fit without --init"
                )
        reg = auto_register(ir, vis, args.model, init)
        conf = reg.info["confidence"]
        if not conf["ok"]:
            raise RegistrationFailed(
                f"automatic registration of {short(args.ir)} onto {short(args.vis)} is not trustworthy "
                f"({'; '.join(conf['reasons'])}); nothing written. Give control points (--points) or an aligned "
                "bridge pair (--via-ir/--via-vis)"
            )
        return reg
    if args.refine:
        reg = refine_ecc(reg, ir, vis, model=args.model, max_shift=args.max_shift)
    return reg


def apply(
    reg: Registration,
    ir_dir: str,
    vis_dir: str,
    out: str,
    crop: bool,
    draw_overlay: bool,
    overwrite: bool,
    rgb_onto_ir: bool = False,
    resize: tuple[int, int] | None = None,
) -> int:
    """Warp every IR image onto its RGB partner's grid (or, with ``rgb_onto_ir``, RGB onto IR), crop to the
    common field of view, optionally resize to ``resize`` (width, height), and write ``ir/`` + ``vi/``."""
    if Path(ir_dir).is_file() and Path(vis_dir).is_file():  # a single pair
        pairs = [Pair(Path(vis_dir).stem, Path(vis_dir), Path(ir_dir))]
    else:
        pairs = find_pairs(ir_dir, vis_dir)
    for p in pairs:  # check every pair before writing anything
        (hi, wi), (hv, wv) = image_size(p.ir), image_size(p.vis)
        if (wi, hi) != reg.source_size or (wv, hv) != reg.target_size:
            raise RgbtError(
                f"{short(p.ir)} is {wi}x{hi} and {short(p.vis)} {wv}x{hv}, but the registration maps "
                f"{reg.source_size[0]}x{reg.source_size[1]} onto {reg.target_size[0]}x{reg.target_size[1]}; "
                "fit one registration per rig (or per frame for per-frame crops)"
            )
    moving = reg.inverse() if rgb_onto_ir else reg  # maps the warped modality onto the fixed one's grid
    box = common_crop(moving) if crop else (0, 0, *moving.target_size)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise RgbtError("the registered IR image does not overlap the RGB frame; check the registration")
    out = prepare_out_dir(out)
    dirs = ["ir", "vi"] + (["overlay"] if draw_overlay else [])
    for d in dirs:
        (out / d).mkdir(exist_ok=True)
    written = 0
    for p in pairs:
        ir, vis = imread(p.ir), imread(p.vis)
        target = {"ir": out / "ir" / f"{p.name}.png", "vi": out / "vi" / f"{p.name}.png"}
        if all(t.exists() for t in target.values()) and not overwrite:
            continue
        if rgb_onto_ir:
            w, v = ir[y0:y1, x0:x1], warp(moving, vis)[y0:y1, x0:x1]
        else:
            w, v = warp(moving, ir)[y0:y1, x0:x1], vis[y0:y1, x0:x1]
        if resize:
            w, v = (cv2.resize(x, resize, interpolation=cv2.INTER_AREA) for x in (w, v))
        for key, img in (("ir", w), ("vi", v)):
            ok, enc = cv2.imencode(".png", img)
            atomic_write_bytes(target[key], enc.tobytes())
        if draw_overlay:
            ok, enc = cv2.imencode(".png", overlay(w, v))
            atomic_write_bytes(out / "overlay" / f"{p.name}.png", enc.tobytes())
        written += 1
    return written


def transfer_error(reg: Registration, board, ir_pattern: str, vis_pattern: str) -> dict:
    """Board corners seen by both cameras: distance between the registered IR corners and the RGB corners
    (pairs by trailing number, as ``rgbt calibrate``). Views not used to fit ``reg`` make it a held-out test."""
    from calibration.intrinsics import align_order
    from calibration.run import detect_all

    c_ir, _, size_ir = detect_all(ir_pattern, board, thermal=True)
    c_vis, _, size_vis = detect_all(vis_pattern, board, thermal=False)
    if size_ir != reg.source_size or size_vis != reg.target_size:
        raise RgbtError(
            f"image sizes {size_ir} -> {size_vis} do not match the registration {reg.source_size} -> {reg.target_size}"
        )
    per_view = {}
    for k in sorted(set(c_ir) & set(c_vis)):
        a = reg.map_points(c_ir[k].reshape(-1, 2))
        b = align_order(c_ir[k], c_vis[k]).reshape(-1, 2)
        per_view[k] = float(np.linalg.norm(a - b, axis=1).mean())
    if not per_view:
        raise RgbtError("the board was not found in any IR/RGB pair with the same number")
    return {"per_view_mean_px": per_view, "mean_px": float(np.mean(list(per_view.values())))}


def eval_flows(flow_dir: str, warped_dir: str, vis_dir: str, model: str) -> list[dict]:
    """Automatic registration of each warped IR image to its visible partner, scored against the ground-truth
    displacement fields (``<id>.npz``, key ``disp``): EPE of doing nothing and after registration."""
    files = sorted(glob.glob(str(Path(flow_dir) / "*.npz")))
    if not files:
        raise RgbtError(f"{short(flow_dir)}: no <id>.npz displacement files")
    rows = []
    for f in files:
        k = Path(f).stem
        src = glob.glob(str(Path(warped_dir) / f"{k}.*"))
        dst = glob.glob(str(Path(vis_dir) / f"{k}.*"))
        if not src or not dst:
            raise RgbtError(f"{short(f)}: no image '{k}' in {short(warped_dir)} or {short(vis_dir)}")
        ir, vis = imread(src[0]), imread(dst[0])
        disp = read_flow(f, vis.shape[:2])
        identity = Registration(np.eye(3), model, ir.shape[1::-1], vis.shape[1::-1])
        reg = auto_register(ir, vis, model)
        e0, e1 = endpoint_error(identity, disp), endpoint_error(reg, disp)
        rows.append(
            {
                "id": k,
                "epe_none_mean": float(e0.mean()),
                "epe_none_median": float(np.median(e0)),
                "epe_mean": float(e1.mean()),
                "epe_median": float(np.median(e1)),
                "refinement": reg.info["refinement"],
                "confidence": reg.info["confidence"],
            }
        )
    return rows
