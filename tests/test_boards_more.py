"""Circle grids and ChArUco boards rendered with known poses: detection accuracy and calibration."""

import cv2
import numpy as np
import pytest

from calibration.boards import Charuco, CircleGrid, detect_charuco, detect_circles, parse_board_spec
from calibration.intrinsics import calibrate_camera
from fusion.errors import RgbtError

K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
SIZE = (640, 480)


def warp_texture(tex, mm_per_px, origin_mm, rvec, tvec):
    """Image of a planar texture (pixel (u, v) at board mm (u, v) * mm_per_px + origin), 4x supersampled."""
    s = 4
    A = np.array([[mm_per_px, 0, origin_mm[0]], [0, mm_per_px, origin_mm[1]], [0, 0, 1]]) @ np.array(
        [[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]]
    )
    Ks = np.array([[K[0, 0] * s, 0, (K[0, 2] + 0.5) * s - 0.5], [0, K[1, 1] * s, (K[1, 2] + 0.5) * s - 0.5], [0, 0, 1]])
    R, _ = cv2.Rodrigues(np.asarray(rvec, float))
    H = Ks @ np.column_stack([R[:, 0], R[:, 1], np.asarray(tvec, float)]) @ A
    big = cv2.warpPerspective(tex, H, (SIZE[0] * s, SIZE[1] * s), flags=cv2.INTER_LINEAR, borderValue=255)
    return cv2.resize(big, SIZE, interpolation=cv2.INTER_AREA)


def poses(n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield (
            [rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(-0.2, 0.2)],
            [rng.uniform(-90, -40), rng.uniform(-80, -40), rng.uniform(420, 520)],
        )


@pytest.mark.parametrize("asymmetric", [False, True])
def test_circle_grid_detection_and_calibration(asymmetric):
    grid = CircleGrid(4, 11, 15.0, asymmetric) if asymmetric else CircleGrid(7, 5, 20.0)
    obj = grid.object_points()
    ppm = 10  # texture px per mm, 20 mm margin
    w, h = obj[:, 0].max() + 40, obj[:, 1].max() + 40
    tex = np.full((int(h * ppm), int(w * ppm)), 255, np.uint8)
    for x, y, _ in obj:
        cv2.circle(tex, (int((x + 20) * ppm), int((y + 20) * ppm)), int(grid.spacing * 0.3 * ppm), 0, -1, cv2.LINE_AA)
    views = {}
    for k, (r, t) in enumerate(poses(8, seed=5)):
        img = warp_texture(tex, 1 / ppm, (-20, -20), r, t)
        c, how = detect_circles(img, grid)
        assert c is not None, how
        truth, _ = cv2.projectPoints(obj, np.array(r), np.array(t), K, None)
        assert np.linalg.norm(c - truth, axis=2).max() < 0.5
        views[str(k)] = c
    cal = calibrate_camera(views, grid, SIZE)
    assert abs(cal.K[0, 0] - 600) < 12 and cal.rms < 0.3


def test_charuco_partial_detection_and_calibration():
    spec = Charuco(7, 5, 30.0, 22.0)
    ppm = 10
    tex = spec.board().generateImage((int(7 * 30 * ppm), int(5 * 30 * ppm)), marginSize=0)
    obj = spec.object_points()
    views = {}
    for k, (r, t) in enumerate(poses(8, seed=6)):
        t = [t[0] - 20, t[1], t[2]]
        img = warp_texture(tex, 1 / ppm, (0, 0), r, t)
        if k == 0:  # hide a third of the board: ChArUco still reports the visible corners
            img[:, : SIZE[0] // 3 + 140] = 255
        c, ids, how = detect_charuco(img, spec)
        assert len(ids) >= 6, how
        truth, _ = cv2.projectPoints(obj[ids], np.array(r), np.array(t), K, None)
        assert np.linalg.norm(c - truth, axis=2).max() < 0.5
        if k == 0:
            assert len(ids) < len(obj)
        views[str(k)] = (c, ids)
    cal = calibrate_camera(views, spec, SIZE)
    assert abs(cal.K[0, 0] - 600) < 12 and cal.rms < 0.3


def test_board_specs():
    assert parse_board_spec("acircles:4x11:15") == CircleGrid(4, 11, 15.0, True)
    assert parse_board_spec("charuco:7x5:30:22").cols == 6
    assert parse_board_spec("chessboard:9x6:25").cols == 9
    for bad in ("circles:4x:1", "charuco:7x5:30", "charuco:7x5:30:22:DICT_NOPE"):
        with pytest.raises(RgbtError):
            parse_board_spec(bad)
