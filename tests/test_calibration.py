"""Board detection and calibration on boards rendered with known poses, and on OpenCV's stereo samples."""

import glob

import cv2
import numpy as np
import pytest
import yaml

from calibration.boards import Chessboard, detect_chessboard
from calibration.intrinsics import align_order, calibrate_camera, calibrate_stereo, near_duplicates
from fusion.cli import main
from fusion.errors import RgbtError

BOARD = Chessboard(9, 6, 20.0)
K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
SIZE = (640, 480)


def render(board, K, rvec, tvec, size, thermal=False, seed=0):
    """Render a chessboard (one extra square of margin all round) seen by camera K at pose (rvec, tvec)."""
    ppm = 10  # texture pixels per mm
    sq = int(board.square * ppm)
    cols, rows = board.cols + 3, board.rows + 3  # squares incl. white border ring
    tex = np.full((rows * sq, cols * sq), 255, np.uint8)
    for r in range(1, rows - 1):
        for c in range(1, cols - 1):
            if (r + c) % 2 == 0:
                tex[r * sq : (r + 1) * sq, c * sq : (c + 1) * sq] = 0
    # Texture pixel (u, v) -> board mm (u/ppm - 2 sq, v/ppm - 2 sq): inner corner (0,0) is at square (2, 2).
    A = np.array([[1 / ppm, 0, -2 * board.square], [0, 1 / ppm, -2 * board.square], [0, 0, 1]])
    R, _ = cv2.Rodrigues(rvec)
    # Render at 4x and area-average down, so edges are anti-aliased like a real lens/sensor would give.
    s = 4
    Ks = np.array([[K[0, 0] * s, 0, (K[0, 2] + 0.5) * s - 0.5], [0, K[1, 1] * s, (K[1, 2] + 0.5) * s - 0.5], [0, 0, 1]])
    # Texture pixel centres sit half a pixel inside the squares' edges.
    A = A @ np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    H = Ks @ np.column_stack([R[:, 0], R[:, 1], tvec.ravel()]) @ A
    big = cv2.warpPerspective(tex, H, (size[0] * s, size[1] * s), flags=cv2.INTER_LINEAR, borderValue=255)
    img = cv2.resize(big, size, interpolation=cv2.INTER_AREA)
    if thermal:  # a warm board: low contrast, inverted, blurred, noisy
        img = cv2.GaussianBlur(255 - img, (5, 5), 1.2).astype(np.float32) * 0.12 + 110
        img += np.random.default_rng(seed).normal(0, 1.5, img.shape)
        img = np.clip(img, 0, 255).astype(np.uint8)
    truth, _ = cv2.projectPoints(board.object_points(), rvec, tvec, K, None)
    return img, truth.reshape(-1, 1, 2)


def poses(n, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        rvec = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3)])
        tvec = np.array([rng.uniform(-110, -50), rng.uniform(-70, -30), rng.uniform(380, 520)])
        yield rvec, tvec


@pytest.mark.parametrize("thermal", [False, True])
def test_detection_matches_the_rendered_corners(thermal):
    for k, (rvec, tvec) in enumerate(poses(4, seed=1)):
        img, truth = render(BOARD, K, rvec, tvec, SIZE, thermal=thermal, seed=k)
        corners, how = detect_chessboard(img, BOARD, thermal=thermal)
        assert corners is not None, how
        err = np.linalg.norm(align_order(truth, corners) - truth, axis=2)
        assert err.max() < (0.35 if thermal else 0.2), (how, err.max())
        if thermal:
            assert "inverted" in how or "clahe" in how or "stretched" in how or "raw" in how


def test_thermal_chain_is_needed_for_a_faint_inverted_board():
    rvec, tvec = next(poses(1, seed=2))
    img, _ = render(BOARD, K, rvec, tvec, SIZE, thermal=True)
    found, how = detect_chessboard(img, BOARD, thermal=True)
    assert found is not None, how


def _views(n, seed=0, K=K):
    out = {}
    for k, (rvec, tvec) in enumerate(poses(n, seed)):
        img, _ = render(BOARD, K, rvec, tvec, SIZE)
        c, _ = detect_chessboard(img, BOARD)
        out[f"{k:02d}"] = c
    return out


def test_calibration_recovers_intrinsics_and_rejects_a_bad_view():
    views = _views(10, seed=3)
    views["09"] = views["09"] + np.random.default_rng(0).normal(0, 4, views["09"].shape).astype(np.float32)
    cal = calibrate_camera(views, BOARD, SIZE)
    assert "09" in cal.rejected and len(cal.per_view) == 9
    assert cal.rms < 0.2
    assert abs(cal.K[0, 0] - 600) / 600 < 0.01 and abs(cal.K[1, 1] - 600) / 600 < 0.01
    assert abs(cal.K[0, 2] - 320) < 4 and abs(cal.K[1, 2] - 240) < 4


def test_near_duplicate_views_are_set_aside_not_counted():
    """500 copies of one view are one view: the copies are set aside with the reason, and a set that is only
    copies fails in one line saying so; a board moved by more than half a pixel is a new view."""
    views = _views(8, seed=3)
    first = sorted(views)[0]
    many = {**views, **{f"copy{i:03d}": views[first] + 0.1 for i in range(500)}}
    cal = calibrate_camera(many, BOARD, SIZE)
    assert len(cal.per_view) == len(views) and sum("near-duplicate" in r for r in cal.rejected.values()) == 500
    clean = calibrate_camera(views, BOARD, SIZE)
    assert np.allclose(cal.K, clean.K)  # the copies changed nothing
    with pytest.raises(RgbtError, match="only 1 usable views .*500 near-duplicate views set aside"):
        calibrate_camera({first: views[first], **{f"copy{i:03d}": views[first] for i in range(500)}}, BOARD, SIZE)
    moved = {first: views[first], "moved": views[first] + 2.0}
    assert near_duplicates({k: (v, np.arange(54)) for k, v in moved.items()}) == {}


def test_stereo_recovers_the_baseline():
    R2, _ = cv2.Rodrigues(np.array([0.0, 0.05, 0.0]))
    T2 = np.array([-60.0, 0.0, 0.0])  # camera 2 is 60 mm to the right
    c1, c2 = {}, {}
    for k, (rvec, tvec) in enumerate(poses(10, seed=4)):
        R1, _ = cv2.Rodrigues(rvec)
        img1, _ = render(BOARD, K, rvec, tvec, SIZE)
        r2, _ = cv2.Rodrigues(R2 @ R1)
        img2, _ = render(BOARD, K, r2, R2 @ tvec + T2, SIZE)
        a, b = detect_chessboard(img1, BOARD)[0], detect_chessboard(img2, BOARD)[0]
        if a is not None and b is not None:
            c1[f"{k}"], c2[f"{k}"] = a, b
    cam1, cam2 = calibrate_camera(c1, BOARD, SIZE), calibrate_camera(c2, BOARD, SIZE)
    st = calibrate_stereo(cam1, cam2, c1, c2, BOARD)
    assert st.rms < 0.3
    assert np.allclose(st.T.ravel(), T2, atol=1.5)
    assert np.allclose(st.R, R2, atol=5e-3)


def test_board_spec_and_cli_errors(tmp_path, capsys):
    assert Chessboard.parse("chessboard:9x6:25") == Chessboard(9, 6, 25.0)
    for bad in ("chess:9x6", "chessboard:9", "chessboard:9x6:-1", "chessboard:1x6"):
        with pytest.raises(RgbtError):
            Chessboard.parse(bad)
    args = [
        "calibrate",
        "--board",
        "chessboard:9x6:25",
        "--cam1",
        str(tmp_path / "none*.png"),
        "--out",
        str(tmp_path / "c.yaml"),
    ]
    assert main(args) == 2 and "no images match" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text("mine")
    for k in range(3):
        img, _ = render(BOARD, K, *next(poses(1, seed=k)), SIZE)
        cv2.imwrite(str(tmp_path / f"v{k}.png"), img)
    args[4] = str(tmp_path / "v*.png")
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 2 and "usable views" in capsys.readouterr().err
    assert (tmp_path / "c.yaml").read_text() == "mine"  # nothing half-written


@pytest.mark.slow
def test_opencv_stereo_samples(shared_data, tmp_path, capsys):
    d = shared_data / "calibration" / "opencv_stereo"
    out = tmp_path / "stereo.yaml"
    args = ["calibrate", "--board", "chessboard:9x6:1", "--cam1", f"{d}/left*.jpg", "--cam2", f"{d}/right*.jpg"]
    assert main([*args, "--out", str(out), "--plot", str(tmp_path / "views.png")]) == 0
    res = yaml.safe_load(out.read_text())
    assert res["camera1"]["views_used"] + len(res["camera1"]["rejected"]) == len(glob.glob(f"{d}/left*.jpg"))
    assert res["camera1"]["rms_px"] < 0.5 and res["camera2"]["rms_px"] < 0.5
    assert res["stereo"]["rms_px"] < 0.5
    assert 3.2 < res["stereo"]["baseline_mm"] < 3.45  # OpenCV's sample rig: about 3.3 squares
    assert cv2.imread(str(tmp_path / "views.png")) is not None
    assert "stereo: RMS" in capsys.readouterr().out
