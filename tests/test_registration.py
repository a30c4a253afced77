"""Registration: conventions and conversions, fitting, refinement, warping and evaluation."""

import json

import cv2
import numpy as np
import pytest

from calibration.align import common_crop, endpoint_error, refine_ecc, warp
from calibration.autoreg import auto_register
from calibration.register import bridge, read_points
from calibration.registration import Registration, fit_points
from fusion.cli import main
from fusion.errors import RgbtError

A = np.array([[1.02, 0.03, 12.0], [-0.02, 0.98, -7.0], [0, 0, 1]])


def scene(h=240, w=320, seed=0):
    """A textured grey scene with strong edges (blobs and bars)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.float32)
    for _ in range(25):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, 30)
        cv2.circle(img, (int(x), int(y)), int(r), float(rng.uniform(60, 255)), -1)
    for _ in range(8):
        x, y = int(rng.uniform(0, w - 40)), int(rng.uniform(0, h - 20))
        cv2.rectangle(
            img, (x, y), (x + int(rng.uniform(10, 60)), y + int(rng.uniform(5, 30))), float(rng.uniform(0, 200)), -1
        )
    return cv2.GaussianBlur(img, (0, 0), 1.2).astype(np.uint8)


GRID = np.stack(np.meshgrid(np.linspace(0, 319, 9), np.linspace(0, 239, 7)), -1).reshape(-1, 2)


def max_gap(a: Registration, b: Registration) -> float:
    """Largest distance between the two mappings over a grid of the 320x240 source."""
    return float(np.linalg.norm(a.map_points(GRID) - b.map_points(GRID), axis=1).max())


def test_matlab_and_opencv_round_trips():
    reg = Registration(A, "affine", (320, 240), (640, 480))
    m = reg.to_matlab()
    assert m["class"] == "affine2d"
    back = Registration.from_matlab(m["T"], (320, 240), (640, 480))
    assert np.allclose(back.H, reg.H)
    # MATLAB semantics: [x y 1] * T with 1-based pixels equals our 0-based mapping shifted by one.
    p0 = np.array([[10.0, 20.0], [100.0, 5.0]])
    p1 = np.hstack([p0 + 1, np.ones((2, 1))]) @ np.array(m["T"])
    assert np.allclose(p1[:, :2] - 1, reg.map_points(p0))
    assert np.allclose(Registration.from_opencv(reg.to_opencv(), (320, 240), (640, 480)).H, reg.H)
    hom = Registration(np.array([[1, 0.01, 3], [0, 1, 2], [1e-4, 0, 1]]), "homography", (10, 10), (10, 10))
    assert hom.to_matlab()["class"] == "projective2d" and hom.to_opencv().shape == (3, 3)
    assert np.allclose(reg.inverse().map_points(reg.map_points(p0)), p0)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_load_and_overwrite_guard(tmp_path, suffix):
    reg = Registration(A, "affine", (320, 240), (640, 480), info={"note": "x"})
    path = tmp_path / f"r{suffix}"
    reg.save(path)
    loaded = Registration.load(path)
    assert np.allclose(loaded.H, reg.H) and loaded.source_size == (320, 240) and loaded.source == "ir"
    with pytest.raises(RgbtError, match="--overwrite"):
        reg.save(path)
    path.write_text("nonsense: [")
    with pytest.raises(RgbtError, match="not a registration file"):
        Registration.load(path)


@pytest.mark.parametrize("model", ["translation", "similarity", "affine", "homography"])
def test_fit_points_recovers_the_model_despite_outliers(model):
    rng = np.random.default_rng(1)
    truth = {
        "translation": np.array([[1, 0, 5.0], [0, 1, -3], [0, 0, 1]]),
        "similarity": np.array([[0.99, -0.05, 4.0], [0.05, 0.99, 2], [0, 0, 1]]),
        "affine": A,
        "homography": np.array([[1.01, 0.02, 3], [0.01, 0.99, -2], [2e-5, -1e-5, 1]]),
    }[model]
    src = rng.uniform(0, 300, (30, 2))
    dst = Registration(truth, model, (320, 240), (320, 240)).map_points(src) + rng.normal(0, 0.2, (30, 2))
    dst[:4] += 40  # outliers
    reg = fit_points(src, dst, model, (320, 240), (320, 240), "ransac")
    assert max_gap(reg, Registration(truth, model, (320, 240), (320, 240))) < 0.5
    assert reg.info["inliers"] >= 26 and reg.info["rms_residual_px"] > 0
    with pytest.raises(RgbtError, match="at least"):
        fit_points(src[:1], dst[:1], "homography", (1, 1), (1, 1))


def test_ecc_recovers_a_known_affine_and_epe_measures_it():
    src = scene()
    truth = Registration(A, "affine", (320, 240), (320, 240))
    tgt = warp(truth, src)
    reg = auto_register(src, tgt, "affine")
    assert reg.info["confidence"]["ok"] and reg.info["confidence"]["gain_over_start"] > 0
    h, w = src.shape
    # Ground-truth displacement in SuperFusion's convention: source pixel p lands on p + d(p).
    yy, xx = np.mgrid[0:h, 0:w]
    p = np.column_stack([xx.ravel(), yy.ravel()]).astype(float)
    disp = (truth.map_points(p) - p).reshape(h, w, 2)
    assert endpoint_error(truth, disp).max() < 1e-9
    identity = Registration(np.eye(3), "affine", (w, h), (w, h))
    assert endpoint_error(identity, disp).mean() > 5
    assert endpoint_error(reg, disp).mean() < 0.3


def test_refinement_is_rejected_when_it_moves_too_far():
    src = scene(seed=2)
    tgt = warp(Registration(A, "affine", (320, 240), (320, 240)), src)
    start = Registration(np.eye(3), "affine", (320, 240), (320, 240))
    out = refine_ecc(start, src, tgt, model="translation", max_shift=2.0)
    assert "rejected" in out.info["refinement"] and np.allclose(out.H, start.H)


def test_common_crop_is_fully_covered():
    reg = Registration(A, "affine", (320, 240), (320, 240))
    x0, y0, x1, y1 = common_crop(reg)
    cover = warp(reg, np.full((240, 320), 255, np.uint8), cv2.INTER_NEAREST)[y0:y1, x0:x1]
    assert (cover > 0).all() and (x1 - x0) * (y1 - y0) > 0.7 * 320 * 240


def test_bridge_recovers_crop_and_scale():
    full = scene(300, 400, seed=3)
    Ac = np.array([[1.12, 0.0, 30.0], [0.0, 1.25, 20.0], [0, 0, 1]])  # aligned crop -> full frame
    crop = cv2.warpAffine(full, Ac[:2], (300, 200), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR)
    vis_crop = 255 - crop  # another modality, aligned with the crop
    vis_hr = cv2.resize(vis_crop, (840, 620), interpolation=cv2.INTER_CUBIC)
    reg = bridge(full, vis_hr, crop, vis_crop)
    pt = np.array([[100.0, 80.0]])  # a crop pixel
    full_pt = (Ac @ np.array([100.0, 80.0, 1]))[:2]
    hr_pt = (pt + 0.5) * [840 / 300, 620 / 200] - 0.5
    assert np.allclose(reg.map_points(full_pt[None]), hr_pt, atol=0.5)
    with pytest.raises(RgbtError, match="does not come from"):
        bridge(full, vis_hr, scene(200, 300, seed=9), vis_crop)


def test_points_files_and_cli(tmp_path, capsys):
    (tmp_path / "p.json").write_text(json.dumps({"source": [[1, 1], [2, 2]], "target": [[2, 2], [3, 3]]}))
    src, dst = read_points(tmp_path / "p.json", one_based=True)
    assert np.allclose(src, [[0, 0], [1, 1]])
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(RgbtError, match="source_x"):
        read_points(tmp_path / "bad.csv")
    src_img = scene(seed=4)
    cv2.imwrite(str(tmp_path / "ir.png"), src_img)
    cv2.imwrite(
        str(tmp_path / "vi.png"),
        cv2.cvtColor(warp(Registration(A, "affine", (320, 240), (320, 240)), src_img), cv2.COLOR_GRAY2BGR),
    )
    out = tmp_path / "reg.yaml"
    assert (
        main(
            ["register", "fit", "--ir", str(tmp_path / "ir.png"), "--vis", str(tmp_path / "vi.png"), "--out", str(out)]
        )
        == 0
    )
    assert max_gap(Registration.load(out), Registration(A, "affine", (320, 240), (320, 240))) < 0.5
    (tmp_path / "irs").mkdir()
    (tmp_path / "vis").mkdir()
    cv2.imwrite(str(tmp_path / "irs" / "a.png"), src_img)
    cv2.imwrite(str(tmp_path / "vis" / "a.png"), cv2.imread(str(tmp_path / "vi.png")))
    args = ["register", "apply", "--reg", str(out), "--ir", str(tmp_path / "irs"), "--vis", str(tmp_path / "vis")]
    assert main([*args, "--out", str(tmp_path / "aligned"), "--overlay"]) == 0
    a = cv2.imread(str(tmp_path / "aligned" / "ir" / "a.png"), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(tmp_path / "aligned" / "vi" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert a.shape[:2] == b.shape[:2] and (tmp_path / "aligned" / "overlay" / "a.png").exists()
    assert main([*args, "--out", str(tmp_path / "small"), "--rgb-onto-ir", "--resize", "160x120"]) == 0
    assert cv2.imread(str(tmp_path / "small" / "vi" / "a.png")).shape == (120, 160, 3)
    assert main([*args, "--out", str(tmp_path / "bad"), "--resize", "160"]) == 2
    cv2.imwrite(str(tmp_path / "vis" / "a.png"), np.zeros((10, 10, 3), np.uint8))  # wrong size
    assert main([*args, "--out", str(tmp_path / "again")]) == 2
    assert "registration maps" in capsys.readouterr().err and not (tmp_path / "again").exists()


@pytest.mark.slow
def test_real_registration_sets(shared_data, capsys):
    sf = shared_data / "registration" / "superfusion"
    # mean EPE no worse than the baseline, 5.12 and 6.88 px (measured 3.09 and 6.48 px)
    for flow, warped, vis, bound in [
        (sf / "RoadScene" / "flow", sf / "RoadScene" / "ir_warp", sf / "RoadScene" / "vi", 5.12),
        (sf / "MSRS" / "flow", sf / "MSRS" / "ir_warp", shared_data / "msrs" / "vi", 6.88),
    ]:
        assert main(["register", "eval", "--flow", str(flow), "--ir", str(warped), "--vis", str(vis)]) == 0
        rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ") and "id" not in ln]
        for row in rows:  # every image improves, and the mean improves by more than half
            cells = [float(c) for c in row.strip("|").split("|")[1:5]]
            assert cells[2] < cells[0]
        mean = [float(c) for c in rows[-1].strip("|").split("|")[1:5]]
        assert mean[2] < bound
    lm = shared_data / "registration" / "murf_rgbir" / "landmarks"
    src, dst = read_points(lm / "1.json", one_based=True)
    auto = auto_register(cv2.imread(str(lm / "1_fix_ir.png")), cv2.imread(str(lm / "1_move_rgb.png")), "affine")
    assert np.linalg.norm(auto.map_points(src) - dst, axis=1).mean() < 1.3  # MURF landmarks: 1.22 px
    loo = []
    for k in range(len(src)):
        keep = [j for j in range(len(src)) if j != k]
        reg = fit_points(src[keep], dst[keep], "affine", (530, 277), (530, 277), "lsq")
        loo.append(np.linalg.norm(reg.map_points(src[k : k + 1]) - dst[k]))
    assert np.mean(loo) < 0.4 * np.linalg.norm(src - dst, axis=1).mean()


def test_rig_plane_homography_and_parallax():
    from calibration.registration import from_rig

    K = [[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]
    rig = {
        "camera1": {"K": K, "image_size": [640, 480]},
        "camera2": {"K": K, "image_size": [640, 480]},
        "stereo": {"R": np.eye(3).tolist(), "T_mm": [-100.0, 0, 0]},  # camera 2 100 mm to the right
    }
    reg = from_rig(rig, 2000.0, "camera1", (1000.0, 1e9))
    # A point on the plane at 2 m: pixel (320, 240) in camera 1 sees X = (0, 0, 2000) -> x2 = 320 - 500*100/2000.
    assert np.allclose(reg.map_points(np.array([[320.0, 240.0]])), [[295.0, 240.0]])
    par = reg.info["parallax_at_other_depths"]
    assert par["1000 mm"]["max_px"] == pytest.approx(500 * 100 * (1 / 1000 - 1 / 2000), abs=1e-6)
    assert par["1e+09 mm"]["mean_px"] == pytest.approx(25.0, abs=1e-3)
    back = from_rig(rig, 2000.0, "camera2")
    assert np.allclose(back.map_points(reg.map_points(np.array([[100.0, 50.0]]))), [[100.0, 50.0]])
    with pytest.raises(RgbtError, match="stereo"):
        from_rig({"camera1": rig["camera1"]}, 1000.0)


def test_similarity_fits_rotation_uniform_scale_and_shift():
    """ECC has no scaled-rotation model: the fit runs as an affine and is projected, so the result is a similarity
    and recovers a real scale change (the old Euclidean model could not)."""
    import cv2
    import numpy as np

    from calibration.align import refine_ecc
    from calibration.registration import Registration

    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur((rng.random((240, 320)) * 255).astype(np.float32), (0, 0), 3)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    th, s = np.deg2rad(2.0), 1.04
    H = np.array([[s * np.cos(th), -s * np.sin(th), 4.0], [s * np.sin(th), s * np.cos(th), -3.0], [0, 0, 1]])
    target = cv2.warpPerspective(tex, H, (320, 240))
    out = refine_ecc(Registration(np.eye(3), "similarity", (320, 240), (320, 240)), tex, target, max_shift=60)
    M = out.H / out.H[2, 2]
    assert "accepted" in out.info["refinement"]
    assert abs(M[0, 0] - M[1, 1]) < 1e-6 and abs(M[0, 1] + M[1, 0]) < 1e-6  # a similarity
    assert abs(np.hypot(M[0, 0], M[1, 0]) - s) < 0.005  # the scale came back
    c = np.array([[0, 0], [319, 0], [0, 239], [319, 239]], float)
    err = np.linalg.norm(
        out.map_points(c) - Registration(H, "similarity", (320, 240), (320, 240)).map_points(c), axis=1
    )
    assert err.max() < 0.5


def test_automatic_fit_refuses_refine_and_reports_failure(tmp_path, capsys):
    import cv2
    import numpy as np

    from fusion.cli import main

    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.full((64, 80), 128, np.uint8))
    out = tmp_path / "reg.yaml"
    base = ["register", "fit", "--ir", str(flat), "--vis", str(flat), "--out", str(out)]
    assert main([*base, "--refine"]) == 2 and "--refine applies to" in capsys.readouterr().err
    assert main(base) == 3  # nothing to register: its own exit code, one line, no identity written
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "automatic registration" in err[0] and "--points" in err[0]
    assert not out.exists()


def _about_centre(w, h, deg, s, tx=0.0, ty=0.0):
    th = np.deg2rad(deg)
    L = s * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    H = np.eye(3)
    H[:2, :2], H[:2, 2] = L, c + [tx, ty] - L @ c
    return H


def _corner_gap(a, b):
    w, h = a.source_size
    c = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], float)
    return np.linalg.norm(a.map_points(c) - b.map_points(c), axis=1).max()


@pytest.mark.parametrize("deg,s", [(14.0, 0.8), (-12.0, 1.25), (0.0, 1.0)])
def test_global_search_recovers_rotation_and_scale(deg, s):
    """Beyond ECC's reach from the identity (±15°, 0.75-1.33 scale); an aligned pair stays where it is."""
    src = scene(seed=3)
    truth = Registration(_about_centre(320, 240, deg, s, 9.0, -6.0), "similarity", (320, 240), (320, 240))
    if deg == 0.0:
        truth = Registration(np.eye(3), "similarity", (320, 240), (320, 240))
    tgt = cv2.warpPerspective(src, truth.H, (320, 240), borderMode=cv2.BORDER_REPLICATE)
    reg = auto_register(src, tgt, "similarity")
    assert reg.info["confidence"]["ok"] and _corner_gap(reg, truth) < 1.0


def test_cross_resolution_starts_from_the_size_ratio():
    """IR at half the visible resolution (a 160x120 thermal image onto a 320x240 RGB grid), slightly turned."""
    big = scene(seed=4)
    truth_big = Registration(_about_centre(320, 240, 4.0, 1.05, 6.0, 3.0), "affine", (320, 240), (320, 240))
    tgt = cv2.warpPerspective(big, truth_big.H, (320, 240), borderMode=cv2.BORDER_REPLICATE)
    small = cv2.resize(big, (160, 120), interpolation=cv2.INTER_AREA)
    up = np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]])  # half-resolution pixel centres -> full
    truth = Registration(truth_big.H @ up, "affine", (160, 120), (320, 240))
    reg = auto_register(small, tgt, "affine")
    assert reg.source_size == (160, 120) and reg.target_size == (320, 240)
    assert reg.info["confidence"]["ok"] and _corner_gap(reg, truth) < 1.5


def test_fit_records_confidence_and_accepts_different_sizes(tmp_path):
    import yaml

    from fusion.cli import main

    big = scene(seed=5)
    cv2.imwrite(str(tmp_path / "vis.png"), big)
    cv2.imwrite(str(tmp_path / "ir.png"), cv2.resize(big, (160, 120), interpolation=cv2.INTER_AREA))
    out = tmp_path / "reg.yaml"
    assert main(["register", "fit", "--ir", str(tmp_path / "ir.png"), "--vis", str(tmp_path / "vis.png"),
                 "--out", str(out)]) == 0  # fmt: skip
    conf = yaml.safe_load(out.read_text())["info"]["confidence"]
    assert conf["ok"] and conf["structure_ncc"] > 0.3 and conf["blocks_agreeing"] >= 14 and 0 < conf["value"] <= 1
    wrong = tmp_path / "wrong.yaml"
    Registration(np.eye(3), "affine", (320, 240), (320, 240)).save(wrong)
    assert main(["register", "fit", "--ir", str(tmp_path / "ir.png"), "--vis", str(tmp_path / "vis.png"),
                 "--init", str(wrong), "--out", str(tmp_path / "r2.yaml")]) == 2  # fmt: skip
