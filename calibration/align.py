"""Automatic refinement, warping and evaluation of a :class:`~calibration.registration.Registration`.

Refinement maximises OpenCV's ECC criterion between gradient-magnitude images (IR and visible intensities
are not comparable, their edges are), coarse to fine, and is rejected when it moves any image corner
further than a bound or does not improve the score.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from calibration.registration import Registration

_MOTION = {
    "translation": cv2.MOTION_TRANSLATION,
    "similarity": cv2.MOTION_AFFINE,  # ECC has no scaled rotation: fit an affine, project it (_to_similarity)
    "affine": cv2.MOTION_AFFINE,
    "homography": cv2.MOTION_HOMOGRAPHY,
}


def gradient_magnitude(img: np.ndarray, blur: float = 1.0) -> np.ndarray:
    """float32 Sobel magnitude of a (blurred) grey version of ``img``, scaled to unit maximum."""
    g = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    g = cv2.GaussianBlur(g.astype(np.float32), (0, 0), blur)
    m = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    return m / max(float(m.max()), 1e-6)


def warp(reg: Registration, source: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The source image resampled on the target grid."""
    return cv2.warpPerspective(source, reg.H, reg.target_size, flags=interpolation, borderMode=cv2.BORDER_CONSTANT)


def score(reg: Registration, source: np.ndarray, target: np.ndarray, gradients: bool = False) -> float:
    """Normalised cross-correlation of gradient magnitudes over the overlap (the quantity ECC maximises).
    ``gradients``: the images given are already gradient magnitudes."""
    gs, gt = (source, target) if gradients else (gradient_magnitude(source), gradient_magnitude(target))
    w = warp(reg, gs)
    return masked_ncc(w, gt, warp(reg, np.ones_like(gs)) > 0.999)


def masked_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Normalised cross-correlation of two same-sized maps over the pixels where ``mask`` is true."""
    x, y = a[mask] - a[mask].mean(), b[mask] - b[mask].mean()
    return float((x * y).sum() / max(math.sqrt(float((x * x).sum() * (y * y).sum())), 1e-12))


def corner_shift(a: Registration, b: Registration) -> float:
    """Largest displacement, in target pixels, of the source image's corners between two registrations."""
    w, h = a.source_size
    c = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    return float(np.linalg.norm(a.map_points(c) - b.map_points(c), axis=1).max())


def _to_similarity(W: np.ndarray, w: float, h: float) -> np.ndarray:
    """The rotation + uniform scale + shift closest (least squares over a grid of the image) to the 2x3 or 3x3
    affine ``W``, as a 2x3 float32 matrix."""
    from calibration.registration import _lsq_affine

    xs, ys = np.meshgrid(np.linspace(0, w - 1, 5), np.linspace(0, h - 1, 5))
    src = np.column_stack([xs.ravel(), ys.ravel()])
    dst = src @ W[:2, :2].T + W[:2, 2]
    return _lsq_affine(src, dst, similarity=True)[:2].astype(np.float32)


def refine_ecc(
    reg: Registration,
    source: np.ndarray,
    target: np.ndarray,
    model: str | None = None,
    max_shift: float = 40.0,
    levels: int = 3,
    finest: int = 0,
    gradients: tuple[np.ndarray, np.ndarray] | None = None,
) -> Registration:
    """Refine ``reg`` by ECC on gradient magnitude, coarse to fine over ``levels`` pyramid levels (down to level
    ``finest``: 0 is full resolution). ``gradients``: the two images' gradient magnitudes, already computed.

    Returns the refined registration (with ``info["refinement"]`` saying what happened), or ``reg`` itself
    with the reason when the refinement fails, moves a corner more than ``max_shift`` target pixels, or
    does not raise :func:`score`.
    """
    model = model or reg.model
    gs, gt = gradients or (gradient_magnitude(source), gradient_magnitude(target))
    W = np.linalg.inv(reg.H)  # ECC's warp maps template (target) coordinates to input (source) coordinates
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    try:
        for lv in reversed(range(finest, levels)):
            s = 2.0**lv
            S = np.diag([1 / s, 1 / s, 1.0])
            t = cv2.resize(gt, None, fx=1 / s, fy=1 / s, interpolation=cv2.INTER_AREA)
            i = cv2.resize(gs, None, fx=1 / s, fy=1 / s, interpolation=cv2.INTER_AREA)
            Ws = (S @ W @ np.linalg.inv(S)).astype(np.float32)
            Ws = Ws if model == "homography" else Ws[:2].copy()
            _, Ws = cv2.findTransformECC(t, i, Ws, _MOTION[model], crit, None, 5)
            if model == "similarity":  # keep the model's name true: rotation, uniform scale and shift only
                Ws = _to_similarity(Ws, t.shape[1], t.shape[0])
            Ws = Ws if Ws.shape == (3, 3) else np.vstack([Ws, [0, 0, 1]])
            W = np.linalg.inv(S) @ Ws.astype(np.float64) @ S
    except cv2.error as e:
        out = Registration(reg.H, reg.model, reg.source_size, reg.target_size, reg.source, reg.target, dict(reg.info))
        out.info["refinement"] = f"rejected: ECC did not converge ({str(e).splitlines()[-1][:80]})"
        return out
    new = Registration(
        np.linalg.inv(W), model, reg.source_size, reg.target_size, reg.source, reg.target, dict(reg.info)
    )
    before, after = score(reg, gs, gt, gradients=True), score(new, gs, gt, gradients=True)
    moved = corner_shift(reg, new)
    verdict = "accepted"
    if moved > max_shift:
        verdict = f"rejected: moved a corner {moved:.1f} px > {max_shift} px"
    elif after <= before:
        verdict = f"rejected: score did not improve ({before:.4f} -> {after:.4f})"
    result = new if verdict == "accepted" else reg
    result = Registration(
        result.H, result.model, reg.source_size, reg.target_size, reg.source, reg.target, dict(reg.info)
    )
    result.info["refinement"] = f"ECC {model} on gradient magnitude, {levels} levels: {verdict}"
    result.info["score_before_after"] = [round(before, 5), round(after, 5)]
    result.info["corner_shift_px"] = round(moved, 3)
    return result


def common_crop(reg: Registration) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive ends: the largest centred-shrinking axis-aligned box of the target grid
    that the warped source covers entirely."""
    mask = warp(reg, np.full(reg.source_size[::-1], 255, np.uint8), cv2.INTER_NEAREST) > 0
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return 0, 0, 0, 0
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    while x1 > x0 and y1 > y0 and not mask[y0:y1, x0:x1].all():
        # Drop the edge with the most uncovered pixels.
        edges = {
            "top": (~mask[y0, x0:x1]).sum(),
            "bottom": (~mask[y1 - 1, x0:x1]).sum(),
            "left": (~mask[y0:y1, x0]).sum(),
            "right": (~mask[y0:y1, x1 - 1]).sum(),
        }
        worst = max(edges, key=edges.get)
        x0, x1, y0, y1 = (
            x0 + (worst == "left"),
            x1 - (worst == "right"),
            y0 + (worst == "top"),
            y1 - (worst == "bottom"),
        )
    return int(x0), int(y0), int(x1), int(y1)


def overlay(warped_ir: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The visible image (BGR) with the warped IR's Canny edges drawn in red, to judge alignment by eye."""
    vis = visible if visible.ndim == 3 else cv2.cvtColor(visible, cv2.COLOR_GRAY2BGR)
    g = warped_ir if warped_ir.ndim == 2 else cv2.cvtColor(warped_ir, cv2.COLOR_BGR2GRAY)
    g8 = cv2.normalize(g, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    edges = cv2.Canny(cv2.GaussianBlur(g8, (0, 0), 1.5), 40, 100) > 0
    out = vis.copy()
    out[edges] = (0, 0, 255)
    return out


def endpoint_error(reg: Registration, disp: np.ndarray) -> np.ndarray:
    """Per-pixel EPE of ``reg`` (source = warped image) against a ground-truth displacement field.

    ``disp`` (H, W, 2) gives, for each source pixel p, the true target position p + disp[p] (SuperFusion's
    ``ir_warp[y, x] = ir[y + dy, x + dx]``). Returns (H, W) errors in pixels.
    """
    h, w = disp.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    p = np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float64)
    truth = p + disp.reshape(-1, 2).astype(np.float64)
    return np.linalg.norm(reg.map_points(p) - truth, axis=1).reshape(h, w)
