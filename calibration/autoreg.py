"""Automatic IR-to-RGB registration: a global search, ECC refinement, and a confidence that can say no.

Infrared and visible intensities are not comparable, their edges are, so everything here works on
gradient-magnitude maps (:func:`calibration.align.gradient_magnitude`):

1. **Scale prior.** The source is first mapped onto the target frame by the ratio of the image sizes (a thermal
   640x512 image onto a 1280x1024 RGB grid starts at scale 2), or by an earlier registration (``init``).
2. **Global search** at a working resolution of about 192 px: for each rotation (default ±20°, 2.5° steps) and
   scale (0.70-1.43 around the prior, 13 log steps), phase correlation of the gradient maps gives the translation
   and the normalised cross-correlation (NCC) of the overlap scores the candidate.
3. **Refinement** of the best distinct candidates by ECC on gradient magnitude, coarse to fine: a similarity
   first, then the requested model. The candidate with the highest full-resolution NCC wins.
4. **Confidence** (recorded in ``info["confidence"]``): the NCC reached, its gain over the start, whether another
   candidate reached nearly the same score somewhere else (ambiguity), and whether the solution of the coarse
   levels agrees with the final one (stability). :func:`assess` turns them into a verdict; the command line
   exits with code 3 and writes nothing when it fails.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from calibration.align import corner_shift, gradient_magnitude, refine_ecc
from calibration.registration import Registration

SEARCH_SIDE = 192
ROTATIONS = tuple(np.arange(-20.0, 20.01, 2.5))
SCALES = tuple(np.exp(np.arange(-6, 7) * 0.06))  # 0.70-1.43, 1 included
TOP = 4  # distinct candidates refined by ECC
MIN_SCORE = 0.08  # below this gradient NCC, an alignment is not recognisable (see scripts/bench_registration.py)
MAX_UNSTABLE = 0.02  # coarse and fine solutions may differ by this share of the target's diagonal at the corners
EXTRA_TERMS_GAIN = 0.005  # frame-NCC an affine or homography must add to its similarity to be kept
MARGIN = 0.03  # frame-NCC by which another start must beat the start's own refinement
AMBIGUITY = 0.97  # another solution within 3 % of the best score, more than 4 px away, is a tie
MIN_COVERAGE = 0.06  # share of an image with edges of at least 10 % of its strongest: night images fall below


def edges(img: np.ndarray) -> np.ndarray:
    """Gradient magnitude, without the edges of padding: where a warp or a crop left exact zeros along the image
    border (SuperFusion's warped sets, rectified images), the step into the padding is no edge of the scene."""
    g = gradient_magnitude(img)
    grey = img if img.ndim == 2 else img.max(axis=2)
    zero = (grey == 0).astype(np.uint8)
    if zero.any():
        n, labels = cv2.connectedComponents(zero, connectivity=4)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        pad = np.isin(labels, border[border > 0])
        if pad.any():
            g[cv2.dilate(pad.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0] = 0
    return g


def coverage(g: np.ndarray) -> float:
    """Share of a gradient-magnitude map (unit maximum) with edges of at least 10 % of the strongest. A night image
    whose structure is a few lamps scores a few per cent; daylight scenes 10-30 %."""
    return float((g > 0.1).mean())


def prior(source_size: tuple[int, int], target_size: tuple[int, int]) -> np.ndarray:
    """The 3x3 map of the source frame onto the target frame (the same field of view): per-axis size ratios."""
    (sw, sh), (tw, th) = source_size, target_size
    return np.diag([tw / sw, th / sh, 1.0])


def _about_centre(theta_deg: float, scale: float, cx: float, cy: float) -> np.ndarray:
    """3x3 rotation by ``theta_deg`` and uniform ``scale`` about (cx, cy)."""
    M = cv2.getRotationMatrix2D((cx, cy), -theta_deg, scale)  # OpenCV's angle is counter-clockwise on screen
    return np.vstack([M, [0, 0, 1]])


def frame_ncc(warped: np.ndarray, target: np.ndarray) -> float:
    """NCC of a warped source gradient map (zero where the source does not reach) and the target's, over the whole
    target frame: target edges the source does not cover count against a fit, so that a warp cannot score by
    shrinking the overlap to a few well-matching edges."""
    x, y = warped - warped.mean(), target - target.mean()
    return float((x * y).sum() / max(math.sqrt((x * x).sum() * (y * y).sum()), 1e-12))


def search(source: np.ndarray, target: np.ndarray, start: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Candidates ``(ncc, H)``, best first, from rotations x scales about the target centre after ``start``
    (a source -> target 3x3), each with its phase-correlation translation."""
    th, tw = target.shape[:2]
    k = SEARCH_SIDE / max(tw, th)
    K = np.diag([k, k, 1.0])
    size = (max(8, round(tw * k)), max(8, round(th * k)))
    gt = cv2.resize(edges(target), size, interpolation=cv2.INTER_AREA)
    # The source's gradients at about the working scale first (area averaging), then the small residual warps.
    s0 = k * math.sqrt(abs(np.linalg.det(start[:2, :2])))
    pre = cv2.resize(edges(source), None, fx=s0, fy=s0, interpolation=cv2.INTER_AREA)
    Pre = np.diag([pre.shape[1] / source.shape[1], pre.shape[0] / source.shape[0], 1.0])
    base = K @ start @ np.linalg.inv(Pre)  # pre-scaled source -> working target grid
    win = cv2.createHanningWindow(size, cv2.CV_32F)
    cx, cy = (size[0] - 1) / 2, (size[1] - 1) / 2
    out = []
    for theta in ROTATIONS:
        for s in SCALES:
            M = _about_centre(theta, s, cx, cy) @ base
            w = cv2.warpPerspective(pre, M, size, flags=cv2.INTER_LINEAR)
            (dx, dy), _ = cv2.phaseCorrelate(w, gt, win)
            M = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]) @ M
            w = cv2.warpPerspective(pre, M, size, flags=cv2.INTER_LINEAR)
            H = np.linalg.inv(K) @ M @ Pre  # source -> target at full resolution
            out.append((frame_ncc(w, gt), H))
    out.sort(key=lambda c: -c[0])
    return out


def _distinct(cands: list[tuple[float, np.ndarray]], size: tuple[int, int], n: int, px: float) -> list:
    keep: list[tuple[float, np.ndarray]] = []
    for c in cands:
        reg = Registration(c[1], "homography", size, (1, 1))
        if all(corner_shift(reg, Registration(k[1], "homography", size, (1, 1))) > px for k in keep):
            keep.append(c)
        if len(keep) == n:
            break
    return keep


def auto_register(
    source: np.ndarray,
    target: np.ndarray,
    model: str = "affine",
    init: Registration | None = None,
    levels: int | None = None,
) -> Registration:
    """Register ``source`` (IR) onto ``target`` (RGB) without control points; see the module docstring.

    Args:
        source, target: images (grey or BGR, any dtype); their sizes may differ.
        model: translation, similarity, affine or homography.
        init: an earlier registration of this rig to start from (default: the size prior).
        levels: pyramid levels of the ECC refinement (default: halving while the short side stays >= 100 px, at
            most 3; the search already starts it close).

    Returns:
        The registration, with ``info["confidence"]`` (see :func:`assess`) and ``info["refinement"]``.
    """
    sh, sw = source.shape[:2]
    th, tw = target.shape[:2]
    levels = levels or max(1, min(3, int(math.log2(max(min(th, tw), 100) / 100)) + 1))
    # the finest level used: full resolution up to a short side of 960 px (noise, not edges, decides beyond)
    f0 = 0
    while min(th, tw) / 2 ** (f0 + 1) >= 480 and f0 + 1 < levels:
        f0 += 1
    start = init.H if init is not None else prior((sw, sh), (tw, th))
    k = math.sqrt(abs(np.linalg.det(start[:2, :2])))
    if abs(math.log(k)) > math.log(1.25):  # another resolution: resample the source to the target's scale first
        small = cv2.resize(source, (max(8, round(sw * k)), max(8, round(sh * k))), interpolation=cv2.INTER_CUBIC)
        U = np.array([[small.shape[1] / sw, 0, 0], [0, small.shape[0] / sh, 0], [0, 0, 1.0]])
        U[:2, 2] = (np.diag(U)[:2] - 1) / 2  # pixel centres: x' = (x + 0.5) f - 0.5
        init2 = Registration(start @ np.linalg.inv(U), model, small.shape[1::-1], (tw, th))
        reg = auto_register(small, target, model, init2, levels)
        out = Registration(reg.H @ U, model, (sw, sh), (tw, th), info=reg.info)
        out.info["resampled_source"] = f"{sw}x{sh} -> {small.shape[1]}x{small.shape[0]} (the target's scale)"
        return out
    start_reg = Registration(start, model, (sw, sh), (tw, th))
    gs, gt = g = edges(source), edges(target)

    def full_ncc(reg: Registration) -> float:
        return frame_ncc(cv2.warpPerspective(gs, reg.H, (tw, th), flags=cv2.INTER_LINEAR), gt)

    start_score = full_ncc(start_reg)
    # the start itself competes too: an aligned pair must be able to stay where it is
    cands = _distinct([(start_score, start), *search(source, target, start)], (sw, sh), TOP, px=0.04 * max(tw, th))
    diag = math.hypot(tw, th)
    results = []
    for i, (ncc0, H) in enumerate(cands):
        reg = Registration(H, model, (sw, sh), (tw, th))
        if i == 0 and model != "translation":  # the start has no search translation: ECC finds one first
            reg = refine_ecc(
                reg, source, target, model="translation", max_shift=0.1 * diag, levels=levels, finest=f0, gradients=g
            )
            reg = Registration(reg.H, model, (sw, sh), (tw, th), info=reg.info)
        if model in ("affine", "homography"):  # rotation, scale and shift settle first, then the model's extra terms
            sim = refine_ecc(
                reg, source, target, model="similarity", max_shift=0.1 * diag, levels=levels, finest=f0, gradients=g
            )
            reg = Registration(sim.H, model, (sw, sh), (tw, th), info=sim.info)
        # the model coarse to fine, stopping one level short, then the finest level: how far the finest level moves
        # the solution tells whether the levels agree
        coarse = refine_ecc(
            reg, source, target, model=model, max_shift=0.1 * diag, levels=levels, finest=f0 + 1, gradients=g
        )
        fine = refine_ecc(
            coarse, source, target, model=model, max_shift=0.1 * diag, levels=f0 + 1, finest=f0, gradients=g
        )
        s_fine = full_ncc(fine)
        if model in ("affine", "homography") and s_fine < full_ncc(reg) + EXTRA_TERMS_GAIN:
            # shear and anisotropic scale are weakly constrained across modalities: keep them only when they pay
            fine, coarse, s_fine = reg, reg, full_ncc(reg)
        results.append((s_fine, fine, corner_shift(coarse, fine), ncc0))
    # The start's own refinement (first in ``cands``) keeps its place unless another start clearly beats it: a
    # pair that is already aligned stays where it is, and a tie between far-apart solutions goes to the prior.
    results = results[:1] + sorted(results[1:], key=lambda r: -r[0])
    if len(results) > 1 and results[1][0] > results[0][0] + MARGIN:
        results = [results[1], results[0], *results[2:]]
    best, reg, unstable, _ = results[0]
    rivals = [corner_shift(reg, r[1]) for r in results[1:] if r[0] >= AMBIGUITY * best]
    reg = Registration(reg.H, model, (sw, sh), (tw, th), info=dict(reg.info))
    reg.info["refinement"] = (
        f"global search ({len(ROTATIONS)} rotations x {len(SCALES)} scales, phase correlation), ECC {model} on "
        f"gradient magnitude from the {len(cands)} best starts"
    )
    reg.info["confidence"] = assess(
        best, start_score, unstable, max(rivals, default=0.0), diag, min(coverage(gs), coverage(gt))
    )
    return reg


def assess(
    ncc: float, start_ncc: float, unstable_px: float, rival_px: float, diag: float, structure: float = 1.0
) -> dict:
    """The confidence record of a fit: the figures and a verdict.

    ``ok`` is false when either image has too little structure (:func:`coverage` below :data:`MIN_COVERAGE`: the
    gradient NCC of night images peaks away from the true alignment), when the gradient NCC reached is below
    :data:`MIN_SCORE` (no recognisable alignment), when
    another solution more than 4 px away scores within 3 % of it (ambiguous), or when the coarse levels' solution
    and the final one differ at the corners by more than :data:`MAX_UNSTABLE` of the target's diagonal ``diag``
    (unstable).
    """
    reasons = []
    if structure < MIN_COVERAGE:
        reasons.append(
            f"only {structure:.0%} of an image has edges (a night or dark image?): register a daylight pair of the "
            "same rig and apply it"
        )
    if ncc < MIN_SCORE:
        reasons.append(f"gradient NCC {ncc:.3f} < {MIN_SCORE}")
    if rival_px > 4.0:
        reasons.append(f"another solution {rival_px:.0f} px away scores within {100 * (1 - AMBIGUITY):.0f} %")
    if unstable_px > MAX_UNSTABLE * diag:
        reasons.append(f"coarse and fine levels disagree by {unstable_px:.1f} px")
    value = max(0.0, min(1.0, (ncc - MIN_SCORE) / 0.2)) * (0.0 if reasons else 1.0)
    return {
        "ok": not reasons,
        "value": round(value, 3),
        "gradient_ncc": round(ncc, 4),
        "gain_over_start": round(ncc - start_ncc, 4),
        "coarse_fine_disagreement_px": round(unstable_px, 2),
        "rival_solution_px": round(rival_px, 2),
        "structure_coverage": round(structure, 4),
        "reasons": reasons,
    }
