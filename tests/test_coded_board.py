"""The ArUco-coded checkerboard: detection on rendered views with known poses, and the real thermal frames."""

import cv2
import numpy as np
import pytest
import yaml

from calibration.coded import CodedBoard, detect_coded
from fusion.cli import main

BOARD = CodedBoard(marker_bits=((0, 1, 1), (1, 1, 0), (0, 1, 0)))
K = np.array([[380.0, 0, 191], [0, 380.0, 144], [0, 0, 1]])
SIZE = (382, 288)


def view(rvec, tvec, thermal=True, seed=0):
    """Render the board at a pose (4x supersampled), thermal-looking: low contrast, blurred, noisy."""
    px, s = 40, 4
    tex = BOARD.render(px)
    A = np.array([[BOARD.square / px, 0, -BOARD.square], [0, BOARD.square / px, -BOARD.square], [0, 0, 1]])
    A = A @ np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    Ks = np.array([[K[0, 0] * s, 0, (K[0, 2] + 0.5) * s - 0.5], [0, K[1, 1] * s, (K[1, 2] + 0.5) * s - 0.5], [0, 0, 1]])
    R, _ = cv2.Rodrigues(np.asarray(rvec, float))
    H = Ks @ np.column_stack([R[:, 0], R[:, 1], np.asarray(tvec, float)]) @ A
    big = cv2.warpPerspective(tex, H, (SIZE[0] * s, SIZE[1] * s), flags=cv2.INTER_LINEAR, borderValue=200)
    img = cv2.resize(big, SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    if thermal:
        img = cv2.GaussianBlur(img, (0, 0), 0.8) * 0.35 + 60 + np.random.default_rng(seed).normal(0, 2.0, img.shape)
    truth, _ = cv2.projectPoints(BOARD.object_points(), np.asarray(rvec, float), np.asarray(tvec, float), K, None)
    return np.clip(img, 0, 255).astype(np.uint8), truth.reshape(-1, 2)


@pytest.mark.parametrize("thermal", [False, True])
def test_full_view_gives_verified_accurate_corners(thermal):
    img, truth = view([0.2, -0.25, 0.05], [-250.0, -200.0, 1400.0], thermal=thermal)
    corners, ids, how = detect_coded(img, BOARD)
    assert "aruco" in how and len(ids) >= 70  # 99 corners, up to 25 hidden or touched by the marker
    err = np.linalg.norm(corners.reshape(-1, 2) - truth[ids], axis=1)
    assert err.max() < (0.5 if thermal else 0.3), err.max()
    # Corners inside the marker's quiet zone are never reported.
    c, r = ids % BOARD.cols, ids // BOARD.cols
    assert not ((c >= 4) & (c <= 6) & (r >= 3) & (r <= 5)).any()


def test_partial_view_still_gives_corners():
    img, truth = view([0.1, 0.3, 0.0], [40.0, -180.0, 1100.0])  # the board runs off the right edge
    corners, ids, _ = detect_coded(img, BOARD)
    visible = ((truth[:, 0] > 5) & (truth[:, 0] < SIZE[0] - 5)).sum()
    assert visible < 99 and 20 <= len(ids) <= visible
    assert np.linalg.norm(corners.reshape(-1, 2) - truth[ids], axis=1).max() < 0.5


@pytest.mark.parametrize("angle", [50, 120, 200])
def test_rotated_board_in_plane(angle):
    """The X-junction test runs along the board's own axes, so a board turned in-plane keeps its corners."""
    rvec = cv2.Rodrigues(cv2.Rodrigues(np.array([0.15, -0.1, 0.0]))[0] @ cv2.Rodrigues(
        np.array([0.0, 0.0, np.deg2rad(angle)]))[0])[0].ravel()  # fmt: skip
    img, truth = view(rvec, [0.0, 0.0, 1500.0], thermal=True)
    corners, ids, how = detect_coded(img, BOARD)
    assert "aruco" in how and len(ids) >= 60, (how, len(ids))
    assert np.linalg.norm(corners.reshape(-1, 2) - truth[ids], axis=1).max() < 0.5


def test_no_marker_no_corners():
    corners, ids, how = detect_coded(np.full((288, 382), 128, np.uint8), BOARD)
    assert len(ids) == 0 and how == "marker not found"


@pytest.mark.slow
def test_real_thermal_coded_board(shared_data, tmp_path, capsys):
    d = shared_data / "calibration" / "thermal_coded_board"
    out = tmp_path / "thermal.yaml"
    board = f"coded:{d / 'target_60x45cm_11x9features_aruco3x3.png'}"
    plot = tmp_path / "views.png"
    argv = ["calibrate", "--board", board, "--cam1", f"{d}/images/*.png", "--out", str(out), "--plot", str(plot)]
    assert main(argv) == 0
    res = yaml.safe_load(out.read_text())["camera1"]
    assert len(res["detection"]) == 60
    assert res["views_used"] >= 55  # boards turned far in-plane included
    assert res["rms_px"] < 0.35
    assert all("aruco" in v or "marker" in v for v in res["detection"].values())
    fig = cv2.imread(str(plot))
    assert fig.shape[0] > 8 * 150  # the per-view bars and a thumbnail of every view with its corners


def test_stereo_calibration_with_the_coded_board(tmp_path):
    """Two cameras see the coded board in six poses; the stereo baseline comes back from the coded corners."""
    from calibration.run import run_calibration

    rig_R = cv2.Rodrigues(np.array([0.0, 0.05, 0.0]))[0]
    rig_t = np.array([-120.0, 0.0, 0.0])  # camera 2 is 120 mm to the right of camera 1
    poses = [([0.2, -0.25, 0.05], [-250.0, -200.0, 1400.0]), ([-0.3, 0.2, 0.3], [-300.0, -150.0, 1600.0]),
             ([0.1, 0.35, -0.2], [-200.0, -250.0, 1500.0]), ([0.35, 0.1, 0.9], [-150.0, -300.0, 1700.0]),
             ([-0.2, -0.3, 1.6], [-100.0, -100.0, 1450.0]), ([0.25, 0.25, -0.6], [-350.0, -200.0, 1800.0])]  # fmt: skip
    for d in ("left", "right"):
        (tmp_path / d).mkdir()
    for i, (rvec, tvec) in enumerate(poses):
        R1 = cv2.Rodrigues(np.array(rvec))[0]
        cv2.imwrite(str(tmp_path / "left" / f"left{i:02d}.png"), view(rvec, tvec, thermal=True, seed=i)[0])
        r2 = cv2.Rodrigues(rig_R @ R1)[0].ravel()
        t2 = rig_R @ np.array(tvec) + rig_t
        cv2.imwrite(str(tmp_path / "right" / f"right{i:02d}.png"), view(r2, t2, thermal=True, seed=10 + i)[0])
    res = run_calibration(BOARD, str(tmp_path / "left" / "*.png"), tmp_path / "rig.yaml",
                          str(tmp_path / "right" / "*.png"))  # fmt: skip
    assert len(res["stereo"]["pairs_used"]) >= 5
    assert abs(res["stereo"]["baseline_mm"] - 120.0) < 3.0, res["stereo"]["baseline_mm"]
    assert res["stereo"]["rms_px"] < 0.5
