"""``rgbt calibrate``: detect a board in one camera's images (or a stereo pair's), calibrate, write YAML."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import cv2
import numpy as np
import yaml

from calibration.boards import (
    Charuco,
    Chessboard,
    CircleGrid,
    detect_charuco,
    detect_chessboard,
    detect_circles,
    imread,
    parse_board_spec,
    to_gray8,
)
from calibration.coded import CodedBoard, detect_coded
from calibration.intrinsics import CameraCalibration, calibrate_camera, calibrate_stereo
from fusion.errors import RgbtError, short
from fusion.io import atomic_write_bytes

MIN_CODED_CORNERS = 20  # partial coded-board views with fewer verified corners are left out


def parse_board(text: str) -> Chessboard | CodedBoard:
    """``chessboard:COLSxROWS:SQUARE_MM`` or ``coded:BOARD_IMAGE.png[:SQUARE_MM]`` (the MRT coded board; its
    marker is read from the printable image)."""
    if text.startswith("coded:"):
        parts = text.split(":")
        path = Path(parts[1])
        if not path.is_file():
            raise RgbtError(f"coded board image {short(path)} not found; pass the printable board PNG")
        try:
            square = float(parts[2]) if len(parts) > 2 else 50.5
            if not 0 < square < 10_000 or len(parts) > 3:  # NaN and inf fail too
                raise ValueError
        except ValueError:
            raise RgbtError(f"board '{text}': write coded:BOARD.png or coded:BOARD.png:SQUARE_MM (e.g. 50.5)") from None
        return CodedBoard.from_image(path, square=square)
    if text.startswith("chessboard:") and len(text.split(":")) == 2:  # a size in mm is needed for the baseline
        raise RgbtError(f"board '{text}': give the square size in millimetres, e.g. {text}:25")
    return parse_board_spec(text)


def view_key(path: str) -> str:
    """Pairing key of an image: the trailing number of its stem (``left07`` and ``right07`` pair), else the
    stem (timestamped names such as ``temp_19-01-21_10-55-49`` keep their whole stem)."""
    stem = Path(path).stem
    m = re.fullmatch(r"[A-Za-z_]*?(\d+)", stem)
    return m.group(1) if m else stem


def detect_all(pattern: str, board: Chessboard, thermal: bool) -> tuple[dict, dict, tuple[int, int]]:
    """Detect the board in every image matching ``pattern``: (corners by key, how/why by key, image size)."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise RgbtError(f"no images match '{pattern}'; check the path and quote the pattern")
    keys: dict[str, str] = {}
    for f in files:  # views pair by key: two files with one key would silently replace each other
        if view_key(f) in keys:
            raise RgbtError(
                f"{short(keys[view_key(f)])} and {short(f)} both count as view {view_key(f)} in '{pattern}'; "
                "give each camera its own pattern (e.g. 'left*.jpg' and 'right*.jpg')"
            )
        keys[view_key(f)] = f
    corners, notes, size = {}, {}, None
    for f in files:
        img = imread(f)
        hw = (img.shape[1], img.shape[0])
        if size is None:
            size = hw
        elif hw != size:
            raise RgbtError(
                f"{short(f)} is {hw[0]}x{hw[1]} but earlier images are {size[0]}x{size[1]}; one camera per pattern"
            )
        if isinstance(board, CodedBoard):
            c, ids, how = detect_coded(img, board)
            notes[view_key(f)] = f"{how}, {len(ids)} verified corners"
            if len(ids) >= MIN_CODED_CORNERS:
                corners[view_key(f)] = (c, ids)
            elif len(ids):
                notes[view_key(f)] += f" (< {MIN_CODED_CORNERS}: not used)"
            continue
        if isinstance(board, Charuco):
            c, ids, how = detect_charuco(img, board, thermal=thermal)
            notes[view_key(f)] = f"{how}, {len(ids)} corners"
            if len(ids) >= 6:
                corners[view_key(f)] = (c, ids)
            continue
        detect = detect_circles if isinstance(board, CircleGrid) else detect_chessboard
        c, how = detect(img, board, thermal=thermal)
        notes[view_key(f)] = how
        if c is not None:
            corners[view_key(f)] = c
    return corners, notes, size


def per_view_plot(cams: dict[str, CameraCalibration], height: int = 260) -> np.ndarray:
    """A bar chart (BGR uint8) of per-view RMS for each camera, with the overall RMS as a line."""
    keys = sorted({k for c in cams.values() for k in c.per_view})
    colours = [(200, 120, 40), (40, 140, 220)]
    bar, gap = 14, 6
    width = 60 + len(keys) * (len(cams) * bar + gap)
    img = np.full((height, width, 3), 255, np.uint8)
    top = max(max(c.per_view.values()) for c in cams.values()) * 1.15
    scale = (height - 60) / top
    for ci, (name, cam) in enumerate(cams.items()):
        for ki, k in enumerate(keys):
            if k in cam.per_view:
                x = 50 + ki * (len(cams) * bar + gap) + ci * bar
                y = int(height - 30 - cam.per_view[k] * scale)
                cv2.rectangle(img, (x, y), (x + bar - 2, height - 30), colours[ci % 2], -1)
        y = int(height - 30 - cam.rms * scale)
        cv2.line(img, (45, y), (width - 5, y), colours[ci % 2], 1)
        cv2.putText(
            img, f"{name} RMS {cam.rms:.3f} px", (50, 18 + 16 * ci), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colours[ci % 2], 1
        )
    for ki, k in enumerate(keys):
        x = 50 + ki * (len(cams) * bar + gap)
        cv2.putText(img, k[-3:], (x, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    cv2.putText(img, f"{top:.2f} px", (2, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    return img


def corner_mosaic(pattern: str, corners: dict, cam: CameraCalibration, thumb_w: int = 192, cols: int = 8):
    """Every view of ``pattern`` as a thumbnail with its detected corners drawn (green: used, with the view's RMS;
    grey label: not used), BGR uint8, so a person can see what the calibration rests on."""
    files = {view_key(f): f for f in sorted(glob.glob(pattern))}
    tiles = []
    for key, f in files.items():
        img = to_gray8(imread(f))
        s = thumb_w / img.shape[1]
        t = cv2.cvtColor(cv2.resize(img, (thumb_w, max(1, round(img.shape[0] * s))), interpolation=cv2.INTER_AREA),
                         cv2.COLOR_GRAY2BGR)  # fmt: skip
        c = corners.get(key)
        pts = (c[0] if isinstance(c, tuple) else c) if c is not None else np.zeros((0, 1, 2))
        for x, y in np.asarray(pts, np.float64).reshape(-1, 2) * s:
            cv2.circle(t, (int(round(x)), int(round(y))), 2, (40, 200, 40), -1, cv2.LINE_AA)
        label = f"{key} {cam.per_view[key]:.2f}px" if key in cam.per_view else f"{key} not used"
        colour = (0, 0, 0) if key in cam.per_view else (120, 120, 120)
        strip = np.full((16, thumb_w, 3), 255, np.uint8)
        cv2.putText(strip, label, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
        tiles.append(np.concatenate([strip, t], 0))
    if not tiles:
        return np.full((1, thumb_w, 3), 255, np.uint8)
    th = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, th - t.shape[0]), (0, 2), (0, 0)), constant_values=255) for t in tiles]
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % cols)
    return np.concatenate([np.concatenate(tiles[i : i + cols], 1) for i in range(0, len(tiles), cols)], 0)


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    w = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 4), (0, w - p.shape[1]), (0, 0)), constant_values=255) for p in parts], 0)


def run_calibration(
    board: Chessboard | CodedBoard,
    cam1: str,
    out: str | Path,
    cam2: str | None = None,
    thermal1: bool = False,
    thermal2: bool = False,
    overwrite: bool = False,
    plot: str | Path | None = None,
    board_image: str | Path | None = None,
) -> dict:
    """Calibrate one camera (``cam1`` glob) or a stereo pair (``cam1``, ``cam2``) and write the YAML ``out``
    (and the ``plot``); ``board_image``, the coded board's printable image, is an input the outputs must spare."""
    import glob

    from fusion.guard import check_outputs

    out = Path(out)
    inputs = glob.glob(cam1) + (glob.glob(cam2) if cam2 else []) + [board_image]
    check_outputs({"--out": out, "--plot": plot}, inputs, overwrite)  # before the slow detection
    kind = {CodedBoard: "coded", Charuco: "charuco", CircleGrid: "circle grid"}.get(type(board), "chessboard")
    result: dict = {"board": {"type": kind, "inner_corners": [board.cols, board.rows], "square_mm": board.square}}
    corners1, notes1, size1 = detect_all(cam1, board, thermal1)
    c1 = calibrate_camera(corners1, board, size1, what=f"--cam1 '{cam1}' ({len(notes1)} images)")
    result["camera1"] = {"images": cam1, "detection": notes1, **c1.to_dict()}
    cams = {"camera1": c1}
    if cam2:
        corners2, notes2, size2 = detect_all(cam2, board, thermal2)
        c2 = calibrate_camera(corners2, board, size2, what=f"--cam2 '{cam2}' ({len(notes2)} images)")
        result["camera2"] = {"images": cam2, "detection": notes2, **c2.to_dict()}
        result["stereo"] = calibrate_stereo(c1, c2, corners1, corners2, board).to_dict()
        cams["camera2"] = c2
    atomic_write_bytes(out, yaml.safe_dump(result, sort_keys=False).encode())
    if plot:  # per-view RMS bars, then every view with its detected corners, camera by camera
        parts = [per_view_plot(cams), corner_mosaic(cam1, corners1, c1)]
        if cam2:
            parts.append(corner_mosaic(cam2, corners2, cams["camera2"]))
        ok, enc = cv2.imencode(".png", _stack(parts))
        atomic_write_bytes(plot, enc.tobytes())
    return result
