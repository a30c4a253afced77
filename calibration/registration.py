"""IR-to-RGB registration: a 2-D transform with explicit direction, sizes and conventions.

``Registration.H`` maps *source* pixel coordinates to *target* pixel coordinates (homogeneous column
vectors, 0-based pixel centres, x right, y down): ``[u, v, 1]^T ~ H [x, y, 1]^T``. The default direction is
IR (source) onto RGB (target). MATLAB's ``affine2d``/``projective2d`` use row vectors and 1-based pixels:
``[u v 1] = [x y 1] * T`` with ``T = (S H S^-1)^T`` and ``S`` the +1 shift; :meth:`to_matlab` and
:meth:`from_matlab` convert. OpenCV's ``warpAffine``/``warpPerspective`` use H directly (2x3 or 3x3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fusion.errors import RgbtError, short
from fusion.io import atomic_write_bytes
from fusion.safeyaml import load_yaml

MODELS = ("translation", "similarity", "affine", "homography")
_SHIFT = np.array([[1.0, 0, 1], [0, 1, 1], [0, 0, 1]])  # 0-based -> 1-based pixel coordinates


@dataclass
class Registration:
    """A source -> target pixel mapping (see the module docstring for conventions)."""

    H: np.ndarray
    model: str
    source_size: tuple[int, int]  # (width, height)
    target_size: tuple[int, int]
    source: str = "ir"
    target: str = "rgb"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise RgbtError(f"unknown registration model '{self.model}'; choose one of {', '.join(MODELS)}")
        self.H = np.asarray(self.H, dtype=np.float64).reshape(3, 3)
        self.H = self.H / self.H[2, 2]
        self.source_size = tuple(int(v) for v in self.source_size)
        self.target_size = tuple(int(v) for v in self.target_size)

    def map_points(self, pts: np.ndarray) -> np.ndarray:
        """(N, 2) source pixel coordinates -> (N, 2) target coordinates."""
        p = np.hstack([np.asarray(pts, np.float64).reshape(-1, 2), np.ones((len(pts), 1))]) @ self.H.T
        return p[:, :2] / p[:, 2:3]

    def inverse(self) -> Registration:
        return Registration(
            np.linalg.inv(self.H), self.model, self.target_size, self.source_size, self.target, self.source
        )

    def to_matlab(self) -> dict:
        """MATLAB ``affine2d``/``projective2d``: ``{"class", "T"}`` (row vectors, 1-based pixels)."""
        cls = "projective2d" if self.model == "homography" else "affine2d"
        return {"class": cls, "T": (_SHIFT @ self.H @ np.linalg.inv(_SHIFT)).T.tolist()}

    @classmethod
    def from_matlab(cls, T, source_size, target_size, model: str = "affine", **kw) -> Registration:
        H = np.linalg.inv(_SHIFT) @ np.asarray(T, np.float64).T @ _SHIFT
        return cls(H, model, source_size, target_size, **kw)

    def to_opencv(self) -> np.ndarray:
        """2x3 matrix for ``cv2.warpAffine`` (or 3x3 for ``cv2.warpPerspective`` with a homography)."""
        return self.H.copy() if self.model == "homography" else self.H[:2].copy()

    @classmethod
    def from_opencv(cls, M, source_size, target_size, model: str = "affine", **kw) -> Registration:
        M = np.asarray(M, np.float64)
        H = M if M.shape == (3, 3) else np.vstack([M, [0, 0, 1]])
        return cls(H, model, source_size, target_size, **kw)

    def to_dict(self) -> dict:
        return {
            "direction": f"{self.source} -> {self.target}",
            "model": self.model,
            "convention": "target = H @ source, homogeneous column vectors, 0-based pixel centres",
            "source_size": list(self.source_size),
            "target_size": list(self.target_size),
            "H": self.H.tolist(),
            "matlab": self.to_matlab(),
            "info": self.info,
        }

    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """Write YAML (or JSON for a ``.json`` path), atomically; refuse to replace a file without ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise RgbtError(f"{short(path)} exists; pass --overwrite to replace it")
        d = self.to_dict()
        text = json.dumps(d, indent=1) if path.suffix == ".json" else yaml.safe_dump(d, sort_keys=False)
        atomic_write_bytes(path, text.encode())

    @classmethod
    def load(cls, path: str | Path) -> Registration:
        path = Path(path)
        if path.is_dir():
            raise RgbtError(f"--reg {short(path)} is a folder; pass the .yaml or .json file rgbt register fit wrote")
        if path.is_file() and path.stat().st_size > 1 << 20:  # a registration is a few hundred bytes
            raise RgbtError(f"{short(path)}: {path.stat().st_size:,} bytes is not a registration file; check --reg")
        try:
            d = json.loads(path.read_text()) if path.suffix == ".json" else load_yaml(path, "registration file")
        except FileNotFoundError:
            raise RgbtError(f"{short(path)}: no such registration file") from None
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise RgbtError(f"{short(path)}: not a registration file written by rgbt ({type(e).__name__})") from None
        except RgbtError as e:
            if "not valid YAML" not in str(e):
                raise
            inner = str(e).split("not valid YAML (", 1)[1].rsplit("); fix the file", 1)[0]
            raise RgbtError(f"{short(path)}: not a registration file written by rgbt (invalid YAML: {inner})") from None
        f = validate_file(d, path)
        H = np.asarray(f.H, dtype=np.float64)
        if abs(H[2, 2]) < 1e-12 or abs(np.linalg.det(H)) < 1e-12:
            raise RgbtError(f"{short(path)}: its matrix H is not a finite, invertible 3x3; fit the registration again")
        src, tgt = (s.strip() for s in f.direction.split("->"))
        reg = cls(H, f.model, f.source_size, f.target_size, src, tgt, f.info)
        check_frame(reg, path)
        return reg


def check_frame(reg: Registration, where: str | Path) -> None:
    """Refuse a matrix that does not map the source frame onto a proper quadrilateral: a corner sent to or across
    the horizon (w <= 0, e.g. a bottom row of [1, 1, 1e-12]), to infinity, or corners closer than a pixel (the
    frame collapsed: every pixel would sample one spot and the warp would be a constant image)."""
    H = reg.H
    w, h = reg.source_size
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], np.float64)
    p = corners @ H.T
    ok = np.isfinite(p).all() and (p[:, 2] > 1e-9 * np.abs(p[:, :2]).max(initial=1.0)).all()
    if ok:
        q = p[:, :2] / p[:, 2:3]
        gaps = [np.linalg.norm(q[i] - q[j]) for i in range(4) for j in range(i + 1, 4)]
        ok = np.isfinite(q).all() and np.abs(q).max() < 1e7 and min(gaps) >= 1.0
    if not ok:
        raise RgbtError(
            f"{short(where)}: its matrix H does not map the {w}x{h} source frame to a proper quadrilateral (corners at "
            "infinity, behind the horizon or collapsed); fit the registration again"
        )


class _RegistrationFile(BaseModel):
    """What ``rgbt register fit`` writes (:meth:`Registration.to_dict`); ``convention`` and ``matlab`` are
    informative and recomputed from ``H``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    direction: Annotated[str, Field(pattern=r"^\s*\w+\s*->\s*\w+\s*$")]
    model: Literal["translation", "similarity", "affine", "homography"]
    convention: str | None = None
    source_size: Annotated[list[Annotated[int, Field(ge=1, le=65535)]], Field(min_length=2, max_length=2)]
    target_size: Annotated[list[Annotated[int, Field(ge=1, le=65535)]], Field(min_length=2, max_length=2)]
    H: Annotated[
        list[Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=3, max_length=3)]],
        Field(min_length=3, max_length=3),
    ]
    matlab: dict | None = None
    info: dict = Field(default_factory=dict)


def validate_file(d: object, path: str | Path) -> _RegistrationFile:
    """A registration file's content checked against its schema, or one line naming the key and the fix."""
    if not isinstance(d, dict):
        raise RgbtError(f"{short(path)}: not a registration file written by rgbt (not a mapping)")
    try:
        return _RegistrationFile.model_validate(d)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        key = ".".join(str(x) for x in err["loc"]) or "the file"
        if err["type"] == "extra_forbidden":
            raise RgbtError(f"{short(path)}: unknown key '{key}' in a registration file; remove it") from None
        if err["type"] == "missing":
            raise RgbtError(
                f"{short(path)}: no '{key}'; not a registration file written by rgbt register fit"
            ) from None
        if err["loc"][0] == "H":
            raise RgbtError(
                f"{short(path)}: its matrix H is not a finite, invertible 3x3 ({key}: {err['msg']}); fit the "
                "registration again"
            ) from None
        raise RgbtError(f"{short(path)}: {key}: {err['msg']}; fit the registration again or fix the file") from None


def _lsq_affine(src: np.ndarray, dst: np.ndarray, similarity: bool) -> np.ndarray:
    """Least-squares affine (6 dof) or similarity (4 dof: [a -b; b a] + t) from point pairs."""
    n = len(src)
    x, y = src[:, 0], src[:, 1]
    if similarity:
        A = np.zeros((2 * n, 4))
        A[0::2] = np.column_stack([x, -y, np.ones(n), np.zeros(n)])
        A[1::2] = np.column_stack([y, x, np.zeros(n), np.ones(n)])
        a, b, tx, ty = np.linalg.lstsq(A, dst.reshape(-1), rcond=None)[0]
        return np.array([[a, -b, tx], [b, a, ty], [0, 0, 1]])
    A = np.column_stack([src, np.ones(n)])
    M = np.linalg.lstsq(A, dst, rcond=None)[0].T  # (2, 3)
    return np.vstack([M, [0, 0, 1]])


def _collinear(src: np.ndarray, model: str) -> bool:
    """Whether the points span less than the model needs: a line (affine, homography) or one point."""
    centred = src - src.mean(0)
    sv = np.linalg.svd(centred, compute_uv=False) if len(src) > 1 else np.zeros(2)
    scale = max(float(np.abs(src).max()), 1.0)
    if model in ("affine", "homography"):
        return sv[-1] <= 1e-6 * scale * np.sqrt(len(src))
    if model == "similarity":
        return sv[0] <= 1e-6 * scale
    return False


def fit_points(
    src: np.ndarray,
    dst: np.ndarray,
    model: str,
    source_size: tuple[int, int],
    target_size: tuple[int, int],
    method: str = "ransac",
    threshold: float = 3.0,
) -> Registration:
    """Fit a registration to control points (0-based pixels), robustly; residuals go into ``info``."""
    src, dst = np.asarray(src, np.float64).reshape(-1, 2), np.asarray(dst, np.float64).reshape(-1, 2)
    need = {"translation": 1, "similarity": 2, "affine": 3, "homography": 4}[model]
    if len(src) != len(dst) or len(src) < need:
        raise RgbtError(f"a {model} needs at least {need} point pairs; got {len(src)} and {len(dst)}")
    flag = {"ransac": cv2.RANSAC, "lmeds": cv2.LMEDS, "lsq": 0}.get(method)
    if flag is None:
        raise RgbtError(f"unknown fitting method '{method}'; use ransac, lmeds or lsq")
    if model == "translation":
        t = np.median(dst - src, axis=0)
        H = np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1]])
    elif model == "homography":
        H, _ = cv2.findHomography(src, dst, flag, threshold)
    elif method == "lsq":
        H = _lsq_affine(src, dst, similarity=model == "similarity")
    else:
        fit = cv2.estimateAffinePartial2D if model == "similarity" else cv2.estimateAffine2D
        M, _ = fit(src, dst, method=flag, ransacReprojThreshold=threshold)
        H = None if M is None else np.vstack([M, [0, 0, 1]])
    if H is None or not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-9 or _collinear(src, model):
        raise RgbtError(
            f"could not fit a {model} to these points: they are degenerate (collinear or repeated) or too few are "
            "inliers; give points spread over the image"
        )
    reg = Registration(H, model, source_size, target_size)
    res = np.linalg.norm(reg.map_points(src) - dst, axis=1)
    reg.info = {
        "fitted_from": f"{len(src)} control points, {method}",
        "residuals_px": res.round(4).tolist(),
        "rms_residual_px": float(np.sqrt(np.mean(res**2))),
        "inliers": int((res <= threshold).sum()),
    }
    return reg


def from_rig(
    rig: dict, distance_mm: float, source: str = "camera1", check_distances: tuple[float, ...] = ()
) -> Registration:
    """Plane-induced homography between the two cameras of a calibrated rig (``rgbt calibrate`` output).

    Points on the fronto-parallel plane at ``distance_mm`` in front of the source camera map exactly:
    ``H = K_t (R + T n^T / d) K_s^-1`` (n = optical axis). Points at other depths suffer parallax; for each
    of ``check_distances`` the largest and mean disagreement over the source image is reported in ``info``.
    Lens distortion is not modelled: undistort first for wide-angle lenses.
    """
    if "stereo" not in rig:
        raise RgbtError("the calibration file has no stereo section; calibrate both cameras together (--cam2)")
    if distance_mm <= 0:
        raise RgbtError(f"--distance must be positive (mm), got {distance_mm}")
    cams = {c: (np.array(rig[c]["K"]), tuple(rig[c]["image_size"])) for c in ("camera1", "camera2")}
    R, T = np.array(rig["stereo"]["R"]), np.array(rig["stereo"]["T_mm"]).reshape(3, 1)  # x2 = R x1 + T
    if source == "camera2":  # invert the rig: x1 = R^T x2 - R^T T
        R, T = R.T, -R.T @ T
    target = "camera2" if source == "camera1" else "camera1"
    (Ks, size_s), (Kt, size_t) = cams[source], cams[target]
    n = np.array([[0.0, 0.0, 1.0]])

    def plane_h(d: float) -> np.ndarray:
        return Kt @ (R + T @ n / d) @ np.linalg.inv(Ks)

    reg = Registration(plane_h(distance_mm), "homography", size_s, size_t, source, target)
    w, h = size_s
    grid = np.stack(np.meshgrid(np.linspace(0, w - 1, 17), np.linspace(0, h - 1, 13)), -1).reshape(-1, 2)
    parallax = {}
    for d in check_distances:
        other = Registration(plane_h(d), "homography", size_s, size_t)
        gap = np.linalg.norm(reg.map_points(grid) - other.map_points(grid), axis=1)
        parallax[f"{d:g} mm"] = {"max_px": round(float(gap.max()), 3), "mean_px": round(float(gap.mean()), 3)}
    reg.info = {
        "fitted_from": f"calibrated rig, scene plane at {distance_mm:g} mm",
        "parallax_at_other_depths": parallax,
    }
    return reg
