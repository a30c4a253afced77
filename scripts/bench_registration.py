"""Automatic IR-to-RGB registration under known random affines, against doing nothing and plain OpenCV ECC.

    python scripts/bench_registration.py [--pairs 8] [--seed 0] [--data ../shared/data] [--only-levels] [--verbose]
                                         [--narrow 0.75] [--square]

The IR image of each pair (roadscene/test, msrs, llvip; ``--pairs`` per set, chosen with the seed) is warped by
a seeded random affine about its centre, at three levels, plus the untouched pair:

- level 1: rotation ±6°, scale 0.9-1.1, shear ±0.03, shift ±25 px;
- level 2: rotation ±15°, scale 0.75-1.33 (shear and shift as level 1);
- level 3: level 1, then the IR at half resolution.

Public pairs are not perfectly aligned themselves, so a method's error on a warped case is measured against its
own fit of the untouched pair composed with the known warp (consistency, the main figure), and also against the
known warp alone (the untouched fit is the reference even where the method refused it; the table counts those
cases). The error is the mean displacement of the IR image's four corners, in visible pixels. For ``ours``, a fit
whose confidence check fails is a reported failure (exit code 3 on the command line): it counts as a failure but
not as a silent one.
``--narrow F`` adds a case of a thermal lens with a narrower field of view: the central share F of the IR image,
resampled to its full size (no random draw, so the other levels are unchanged); it covers F^2 of the visible frame.
``--square`` adds cameras of different aspect ratios: the untouched IR image beside the middle square of the visible
one (a 1280x1024 thermal image beside a 1024x1024 RGB one; no random draw either); the reference is the untouched
fit composed with the cut, and the error is measured at the corners of the cut, as the IR image reaches beyond it.
"aligned" reports how far the fit moves an untouched pair's corners, and a second table the scale and rotation
that the trusted fits of untouched pairs find per set: fits of one rig that agree on them show the set's own
residual misalignment.

Then the ground-truth sets: SuperFusion's end-point error (RoadScene and MSRS ``flow/``) and the mean error of
MURF's hand-marked landmarks.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from calibration.autoreg import auto_register, prior
from calibration.boards import imread
from calibration.register import eval_flows, read_points
from calibration.registration import Registration
from fusion.data import dataset_pairs, resolve_data_root

LEVELS = {
    "level 1": dict(rot=6.0, scale=(0.9, 1.1), shear=0.03, shift=25.0, half=False),
    "level 2": dict(rot=15.0, scale=(0.75, 1.33), shear=0.03, shift=25.0, half=False),
    "level 3": dict(rot=6.0, scale=(0.9, 1.1), shear=0.03, shift=25.0, half=True),
}
VERBOSE = False
LAST: dict = {}  # the confidence record of the last fit by "ours" (for --verbose)
TARGET = {"level 1": (2.0, 0.9), "level 2": (4.0, 0.8), "level 3": (2.0, 0.9), "aligned": (3.0, 1.0)}
TARGET["narrow"] = TARGET["square"] = TARGET["level 1"]  # not in the issue: held to level 1's bar


def random_affine(rng: np.random.Generator, lv: dict, w: int, h: int) -> np.ndarray:
    """3x3 affine about the image centre: shift . rotation . shear . scale."""
    th = math.radians(rng.uniform(-lv["rot"], lv["rot"]))
    s = math.exp(rng.uniform(math.log(lv["scale"][0]), math.log(lv["scale"][1])))
    sh = rng.uniform(-lv["shear"], lv["shear"])
    t = rng.uniform(-lv["shift"], lv["shift"], 2)
    c, sn = math.cos(th), math.sin(th)
    L = np.array([[c, -sn], [sn, c]]) @ np.array([[1, sh], [0, 1]]) * s
    ctr = np.array([(w - 1) / 2, (h - 1) / 2])
    A = np.eye(3)
    A[:2, :2], A[:2, 2] = L, ctr + t - L @ ctr
    return A


def half(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image at half resolution and the 3x3 map of its pixel centres onto the full-resolution ones."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    sx, sy = w / (w // 2), h / (h // 2)
    return small, np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1]])


def corner_error(
    H: np.ndarray, H_ref: np.ndarray, size: tuple[int, int], within: tuple[int, int] | None = None
) -> float:
    """Mean displacement, in visible pixels, between two maps of the IR frame (``size``) at its corners; with
    ``within`` (the visible frame's size), at the corners of the visible frame instead, pulled back through
    ``H_ref``: where an IR image reaches beyond the visible frame, the error where the images are compared."""
    w, h = within or size
    c = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    ref = Registration(H_ref, "homography", size, (1, 1))
    if within:
        c = ref.inverse().map_points(c)
    a = Registration(H, "homography", size, (1, 1)).map_points(c)
    return float(np.linalg.norm(a - ref.map_points(c), axis=1).mean())


def grey(img: np.ndarray) -> np.ndarray:
    return (img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)).astype(np.float32)


def fit(method: str, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, bool]:
    """(H, reported failure) of one method."""
    (sh, sw), (th, tw) = ir.shape[:2], vis.shape[:2]
    P = prior((sw, sh), (tw, th))
    if method == "none":
        return P, False
    if method == "ecc":  # plain OpenCV ECC: intensities, one level, affine, from the size prior
        W = np.linalg.inv(P)[:2].astype(np.float32)
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
        try:
            _, W = cv2.findTransformECC(grey(vis), grey(ir), W, cv2.MOTION_AFFINE, crit, None, 5)
        except cv2.error:
            return P, False  # OpenCV raises; a user would keep the start
        return np.linalg.inv(np.vstack([W, [0, 0, 1]]).astype(np.float64)), False
    reg = auto_register(ir, vis, "affine")
    c = reg.info["confidence"]
    LAST.clear()
    LAST.update(c)
    return reg.H, not c["ok"]


def narrower(w: int, h: int, f: float) -> np.ndarray:
    """3x3 map of IR pixels onto those of its central share ``f``, resampled to the full w x h (pixel centres)."""
    return np.array([[1 / f, 0, -(1 - f) * w / 2 / f], [0, 1 / f, -(1 - f) * h / 2 / f], [0, 0, 1.0]])


def run_levels(root: Path, n: int, seed: int, sets: list[str], narrow: float = 0.0, square: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    res: dict = {}
    for ds in sets:
        pairs = dataset_pairs(root / ds)
        pick = sorted(rng.choice(len(pairs), min(n, len(pairs)), replace=False))
        for i in pick:
            ir, vis = imread(pairs[i].ir), imread(pairs[i].vis)
            h, w = ir.shape[:2]
            own = {m: fit(m, ir, vis) for m in ("ours", "none", "ecc")}
            P = prior((w, h), vis.shape[1::-1])
            for m, (H0, failed) in own.items():
                moved = corner_error(H0, P, (w, h))
                res.setdefault(("aligned", m), []).append((moved, moved, failed, ds))
                if m == "ours" and not failed:  # the fit's scale and rotation relative to the pair's own alignment
                    R = H0 @ np.linalg.inv(P)  # in the visible frame
                    L = R[:2, :2]
                    turn = math.degrees(math.atan2(L[1, 0] - L[0, 1], L[0, 0] + L[1, 1]))
                    rig = (math.sqrt(abs(np.linalg.det(L))), turn, moved, R, vis.shape[1::-1])
                    res.setdefault(("rig", ds), []).append(rig)
            cases = [(name, lv, random_affine(rng, lv, w, h)) for name, lv in LEVELS.items()]  # one draw per level
            if narrow:
                cases.append(("narrow", {"half": False, "crop": True}, narrower(w, h, narrow)))
            if square:
                cases.append(("square", {"half": False, "square": True}, np.eye(3)))
            for name, lv, A in cases:
                # what the warp brings in from outside the image repeats the border: no artificial edge (a real
                # camera would see more of the scene there)
                border = cv2.BORDER_CONSTANT if lv.get("crop") else cv2.BORDER_REPLICATE
                warped = cv2.warpAffine(ir, A[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
                D, T, target = np.eye(3), np.eye(3), vis
                if lv["half"]:
                    warped, D = half(warped)
                if lv.get("square"):  # the visible image cut to its middle square: T maps the frame onto the cut
                    side = min(vis.shape[:2])
                    x0, y0 = (vis.shape[1] - side) // 2, (vis.shape[0] - side) // 2
                    target, T[:2, 2] = vis[y0 : y0 + side, x0 : x0 + side], (-x0, -y0)
                size = warped.shape[1::-1]
                inside = target.shape[1::-1] if lv.get("square") else None  # the IR reaches beyond the cut
                for m in ("ours", "none", "ecc"):
                    t = time.perf_counter()
                    H, failed = fit(m, warped, target)
                    truth = corner_error(H, T @ P @ np.linalg.inv(A) @ D, size, inside)
                    # the reference is the method's own fit of the untouched pair, trusted or not (the known warp alone
                    # would count the pair's own misalignment as an error); the table says how many were refused
                    H0, refused = own[m]
                    cons = corner_error(H, T @ H0 @ np.linalg.inv(A) @ D, size, inside)
                    res.setdefault((name, m), []).append((cons, truth, failed, ds, time.perf_counter() - t, refused))
                    if VERBOSE and m == "ours":
                        c = LAST
                        print(
                            f"  {ds} {pairs[i].name} {name}: consistency {cons:.1f} px, truth {truth:.1f} px, "
                            f"blocks {c['blocks_agreeing']}/{c['blocks_with_structure']}, residual "
                            f"{c['block_residual_px']:.1f} px, extent {c['block_extent']:.2f}, sigma "
                            f"{c.get('corner_sigma_px', -1):.2f}, ncc {c['structure_ncc']:.3f}, rival "
                            f"{c['rival_solution_px']:.0f} px, {'ok' if c['ok'] else 'REPORTED ' + str(c['reasons'])}",
                            file=sys.stderr,
                        )
            if VERBOSE:
                c = own["ours"]
                print(f"  {ds} {pairs[i].name} aligned: reported {c[1]}", file=sys.stderr)
    return res


def table(res: dict) -> str:
    lines = [
        "| case | method | n | median px | p90 px | failed | reported failures | silent failures | "
        "vs known warp: median px | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in ("level 1", "level 2", "level 3", "narrow", "square", "aligned"):
        tol, share = TARGET[name]
        for m in ("ours", "none", "ecc"):
            rows = res.get((name, m), [])
            if not rows:
                continue
            cons = np.array([r[0] for r in rows])
            truth = np.array([r[1] for r in rows])
            reported = sum(r[2] for r in rows)
            silent = sum((not r[2]) and r[0] > tol for r in rows)
            good = np.array([(not r[2]) and r[0] <= tol for r in rows])  # a reported failure is no success
            bad = 1 - good.mean()
            goal = f"<= {tol:g} px in {share:.0%}" + ((" ✓" if good.mean() >= share else " ✗") if m == "ours" else "")
            lines.append(
                f"| {name} | {m} | {len(rows)} | {np.median(cons):.2f} | {np.percentile(cons, 90):.2f} | "
                f"{bad:.0%} | {reported} | {silent} | {np.median(truth):.2f} | {goal} |"
            )
    refused = sum(r[5] for k, v in res.items() if k[1] == "ours" and k[0] != "aligned" for r in v)
    if refused:
        lines.append(
            f"\n{refused} warped cases of 'ours' are of pairs whose untouched fit was refused: their consistency is "
            "measured against that untrusted fit."
        )
    return "\n".join(lines)


def rig_table(res: dict) -> str:
    """Per set, the scale and rotation that the fits of the untouched pairs find. Pairs of one rig that agree on a
    scale or rotation away from 1 and 0 show the set's own residual misalignment, not noise of the fit. The last
    column is how far each fit's corners (in the visible frame) sit from those of the set's median fit (the
    element-wise median of the fits): the fits' scatter about the rig's common misalignment, which is what
    "aligned" would measure if the pairs were aligned (hand-cropped pairs, as RoadScene's, share no common one)."""
    out = [
        "| set | pairs fitted | scale: median (min-max) | rotation deg: median (min-max) | corners moved: median px "
        "| about the set's median fit: median (max) px |",
        "|---|---:|---|---|---:|---|",
    ]
    for (kind, ds), rows in res.items():
        if kind != "rig":
            continue
        s, r, moved = (np.array([row[i] for row in rows]) for i in range(3))
        mid = np.median(np.stack([row[3] for row in rows]), axis=0)
        about = np.array([corner_error(row[3], mid, row[4]) for row in rows])
        out.append(
            f"| {ds} | {len(rows)} | {np.median(s):.4f} ({s.min():.4f}-{s.max():.4f}) | {np.median(r):+.2f} "
            f"({r.min():+.2f} to {r.max():+.2f}) | {np.median(moved):.2f} | {np.median(about):.2f} "
            f"({about.max():.2f}) |"
        )
    return "\n".join(out)


def ground_truth_sets(root: Path) -> str:
    sf = root / "registration" / "superfusion"
    out = ["| set | none | ours |", "|---|---:|---:|"]
    for name, vis in (("RoadScene", sf / "RoadScene" / "vi"), ("MSRS", root / "msrs" / "vi")):
        rows = eval_flows(str(sf / name / "flow"), str(sf / name / "ir_warp"), str(vis), "affine")
        none = np.mean([r["epe_none_mean"] for r in rows])
        ours = np.mean([r["epe_mean"] for r in rows])
        out.append(f"| SuperFusion {name} EPE (mean px) | {none:.2f} | {ours:.2f} |")
    lm = root / "registration" / "murf_rgbir" / "landmarks"
    src, dst = read_points(lm / "1.json", one_based=True)
    ir, rgb = imread(lm / "1_fix_ir.png"), imread(lm / "1_move_rgb.png")
    reg = auto_register(ir, rgb, "affine")
    err = np.linalg.norm(reg.map_points(src) - dst, axis=1).mean()
    out.append(f"| MURF landmarks (mean px) | {np.linalg.norm(src - dst, axis=1).mean():.2f} | {err:.2f} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=8, help="pairs per dataset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data")
    p.add_argument("--only-levels", action="store_true", help="skip the ground-truth sets")
    p.add_argument("--verbose", action="store_true", help="one line per case on stderr")
    p.add_argument("--sets", default="roadscene/test,msrs,llvip")
    p.add_argument("--narrow", type=float, default=0.0, help="add a narrower field of view: this central share")
    p.add_argument("--square", action="store_true", help="add the visible image cut to its middle square")
    a = p.parse_args()
    global VERBOSE
    VERBOSE = a.verbose
    if not 0 <= a.narrow < 1:
        p.error(f"--narrow {a.narrow}: give the central share of the IR image the narrower lens sees, in (0, 1)")
    root = resolve_data_root(a.data)
    t = time.perf_counter()
    res = run_levels(root, a.pairs, a.seed, a.sets.split(","), a.narrow, a.square)
    print(table(res))
    print()
    print(rig_table(res))
    ours = [r[4] for k, v in res.items() if k[1] == "ours" and k[0] != "aligned" for r in v]
    print(f"\nours: {np.mean(ours):.2f} s per fit on average; levels took {time.perf_counter() - t:.0f} s")
    if not a.only_levels:
        print()
        print(ground_truth_sets(root))


if __name__ == "__main__":
    main()
