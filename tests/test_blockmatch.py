"""Block matching and the robust model fit behind automatic registration, and its structure maps and score."""

import cv2
import numpy as np
import pytest

from calibration.autoreg import _scorer, assess, auto_register, frame_ncc, priors, structure
from calibration.blockmatch import _apply, fit_model, refine_blocks, select_model
from calibration.registration import Registration
from tests.test_registration import scene

PTS = np.stack(np.meshgrid(np.linspace(20, 620, 8), np.linspace(20, 460, 6)), -1).reshape(-1, 2)  # 48 points
SHEAR = np.array([[1.0, 0.03, -7.0], [0.0, 1.0, 0.0], [0, 0, 1]])  # the benchmark's largest shear, about the centre


def _corners(H: np.ndarray) -> np.ndarray:
    c = np.array([[0, 0], [639, 0], [0, 479], [639, 479]], float)
    return _apply(H, c)


def test_noise_alone_keeps_the_simple_model_and_real_shear_is_kept():
    """Block positions scatter by a pixel or two across modalities; extrapolated to the corners, an affine fitted to
    that scatter would move an aligned pair by pixels. A real shear is far above the scatter and is kept."""
    rng = np.random.default_rng(0)
    noisy = PTS + rng.normal(0, 1.5, PTS.shape)
    H, inl, m, sigma = select_model(PTS, noisy, np.ones(len(PTS)), np.eye(3), "affine", 0.5, (640, 480))
    assert m in ("translation", "similarity") and inl.mean() > 0.9
    assert 0.2 < sigma < 1.0  # 1.5 px of scatter over 48 blocks: well under a pixel at the corners
    few = [0, 1, 2, 8, 9, 10]  # six blocks in the top-left corner: the other corners are extrapolated
    assert select_model(PTS[few], noisy[few], np.ones(6), np.eye(3), "similarity", 0.5, (640, 480))[3] > 1.5 * sigma
    assert np.linalg.norm(_corners(H) - _corners(np.eye(3)), axis=1).mean() < 1.5
    sheared = _apply(SHEAR, PTS) + rng.normal(0, 1.5, PTS.shape)
    H, _, m, _ = select_model(PTS, sheared, np.ones(len(PTS)), np.eye(3), "affine", 0.5, (640, 480))
    assert m == "affine" and abs(H[0, 1] - 0.03) < 0.005


@pytest.mark.parametrize("model", ["similarity", "affine", "homography"])
def test_fit_ignores_wrong_blocks(model):
    """A third of the blocks matched something else (a lamp, a repeated texture): the fit follows the rest."""
    rng = np.random.default_rng(1)
    truth = np.array([[0.98, -0.05, 12.0], [0.05, 0.98, -9.0], [0, 0, 1]])
    if model == "affine":
        truth = truth @ SHEAR
    if model == "homography":
        truth = truth @ np.array([[1, 0, 0], [0, 1, 0], [2e-5, -1e-5, 1]])
    dst = _apply(truth, PTS)
    bad = rng.random(len(PTS)) < 0.33
    dst[bad] += rng.uniform(-40, 40, (bad.sum(), 2))
    H, inl, _ = fit_model(PTS, dst, np.ones(len(PTS)), np.eye(3), model, floor=0.5)
    assert not inl[bad].any() and inl[~bad].all()
    assert np.abs(_corners(H) - _corners(truth)).max() < 1e-3
    # too few points to determine the model: no fit rather than a degenerate one
    assert fit_model(PTS[:3], dst[:3], np.ones(3), np.eye(3), model, floor=0.5) is None


def test_blocks_recover_a_known_warp_and_say_how_many_agree():
    src = scene(480, 640, seed=7)
    truth = np.array([[1.01, 0.02, -6.0], [-0.015, 0.995, 4.0], [0, 0, 1]])
    tgt = cv2.warpPerspective(src, truth, (640, 480), borderMode=cv2.BORDER_REPLICATE)
    fit = refine_blocks(structure(src), structure(tgt), np.eye(3), "affine", [(0.5, 10), (1.0, 4)])
    assert fit is not None and fit.model == "affine" and fit.inliers.sum() >= 20
    assert np.linalg.norm(_corners(fit.H) - _corners(truth), axis=1).max() < 0.5
    assert fit.residual_px < 0.5
    # nothing to match in a flat image: no fit
    flat = np.full((480, 640), 90, np.uint8)
    assert refine_blocks(structure(flat), structure(tgt), np.eye(3), "affine", [(0.5, 10)]) is None


def test_structure_map_and_frame_score():
    img = cv2.add(scene(240, 320, seed=2), 20)  # no exact zeros: nothing taken for padding
    s = structure(img)
    assert s.dtype == np.float32 and abs(float(s.mean())) < 1e-4 and abs(float(s.std()) - 1) < 1e-3
    # the padding of a warped image carries no information: 0, and its border step is no edge
    padded = cv2.warpAffine(img, np.float32([[0.8, 0, 32], [0, 0.8, 24]]), (320, 240))
    sp = structure(padded)
    assert (sp[:20] == 0).all() and (sp[:, :28] == 0).all()
    # the whole-frame score: a source covering half the frame scores about half of a full cover
    assert frame_ncc(s, s) == pytest.approx(1.0, abs=1e-5)
    half = s.copy()
    half[:, 160:] = 0
    assert 0.4 < frame_ncc(half, s) < 0.6


def test_overlap_score_judges_a_narrower_field_of_view_on_what_it_sees():
    """A source that sees the central quarter of the target's frame (a thermal camera with half the field of view)
    correlates fully where it lands; the frame score, which the search needs, counts the rest against it."""
    img = cv2.add(scene(240, 320, seed=6), 20)
    crop = img[60:180, 80:240]
    H = np.array([[1.0, 0, 80], [0, 1, 60], [0, 0, 1]])  # crop pixels -> target pixels
    gs, gt = structure(crop), structure(img)
    ncc, cover = _scorer(gs, gt, 1.0, overlap=True)(H)
    assert ncc > 0.9 and 0.2 < cover < 0.25
    assert _scorer(gs, gt, 1.0)(H) < 0.6
    shifted = np.array([[1.0, 0, 3], [0, 1, 0], [0, 0, 1]]) @ H  # 3 px off: the overlap score drops
    assert _scorer(gs, gt, 1.0, overlap=True)(shifted)[0] < 0.5 * ncc
    # too little of the frame covered to judge: refused with a reason, however well it correlates
    conf = assess(0.5, 0.0, 30, 40, 0.5, 0.0, 640, coverage=0.1)
    assert not conf["ok"] and "covers only 10%" in conf["reasons"][0]


def test_narrower_field_of_view_is_registered(shared_data):
    """Real pairs whose IR image is cut to its central 75 % and resampled to its full size, as a thermal lens with a
    narrower field of view would see them: the fit agrees with the untouched pair's fit composed with the cut."""
    from calibration.boards import imread

    # judged on the whole frame these were refused or pulled to a larger scale (2.7 and 7.3 px off)
    for name in ["msrs/{}/00085D.png", "llvip/{}/190003.jpg"]:
        ir, vis = imread(shared_data / name.format("ir")), imread(shared_data / name.format("vi"))
        h, w = ir.shape[:2]
        f = 0.75
        C = np.array([[1 / f, 0, -(1 - f) * w / 2 / f], [0, 1 / f, -(1 - f) * h / 2 / f], [0, 0, 1]])
        narrow = cv2.warpPerspective(ir, C, (w, h), flags=cv2.INTER_LINEAR)
        own, reg = auto_register(ir, vis, "affine"), auto_register(narrow, vis, "affine")
        conf = reg.info["confidence"]
        assert conf["ok"] and 0.5 < conf["coverage"] < 0.6, conf
        expect = Registration(own.H @ np.linalg.inv(C), "affine", (w, h), vis.shape[1::-1])
        c = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], float)
        assert np.linalg.norm(reg.map_points(c) - expect.map_points(c), axis=1).mean() < 2.5


def test_size_priors_of_another_aspect_ratio_add_square_pixels():
    """Same aspect ratio (to rounding): one start, the frames resized onto each other. 640x512 onto 1024x1024: also
    square pixels at the widths' ratio and at the heights' ratio, centre on centre."""
    assert len(priors((640, 480), (1280, 960))) == len(priors((505, 351), (252, 175))) == 1
    stretch, *square = priors((640, 512), (1024, 1024))
    np.testing.assert_allclose(stretch, np.diag([1.6, 2.0, 1.0]))
    for S, s in zip(square, (1.6, 2.0), strict=True):
        np.testing.assert_allclose(S[:2, :2], s * np.eye(2))
        np.testing.assert_allclose(S @ [319.5, 255.5, 1], [511.5, 511.5, 1])


@pytest.mark.parametrize("crop", ["square", "wide"])
def test_thermal_of_another_aspect_ratio_is_registered(shared_data, crop):
    """A 640x512 thermal image beside a 1024x1024 (or 1280x720) RGB one, the RGB cut from the middle of the
    pair's 1280x1024 frame: the fit agrees with the untouched pair's fit composed with the resize and the cut.
    From the stretched size prior alone (1.6 x 2.0, or 2.0 x 1.41) both were refused at correlation 0.02-0.04,
    111 and 224 px off."""
    from calibration.boards import imread

    ir, vis = (imread(shared_data / "llvip" / d / "190006.jpg") for d in ("ir", "vi"))
    own = auto_register(ir, vis, "affine")
    small = cv2.resize(ir, (640, 512), interpolation=cv2.INTER_AREA)
    U = np.array([[2, 0, 0.5], [0, 2, 0.5], [0, 0, 1.0]])  # 640x512 -> 1280x1024, pixel centres
    cut, T = (vis[:, 128:1152], [-128, 0]) if crop == "square" else (vis[152:872], [0, -152])
    reg = auto_register(small, cut, "affine")
    assert reg.info["confidence"]["ok"], reg.info["confidence"]
    expect = Registration(
        np.array([[1, 0, T[0]], [0, 1, T[1]], [0, 0, 1.0]]) @ own.H @ U, "affine", (640, 512), cut.shape[1::-1]
    )
    c = np.array([[0, 0], [639, 0], [0, 511], [639, 511]], float)
    assert np.linalg.norm(reg.map_points(c) - expect.map_points(c), axis=1).mean() < 3.0


def test_real_pairs_aligned_or_refused(shared_data):
    """On public pairs the fit either agrees with the pair's own alignment to within its residual, or says no."""
    from calibration.align import corner_shift
    from calibration.boards import imread

    for name in ["roadscene/test/{}/FLIR_04269.jpg", "llvip/{}/200003.jpg", "msrs/{}/00040N.png"]:
        ir, vis = imread(shared_data / name.format("ir")), imread(shared_data / name.format("vi"))
        reg = auto_register(ir, vis, "affine")
        h, w = ir.shape[:2]
        ident = Registration(np.diag([vis.shape[1] / w, vis.shape[0] / h, 1.0]), "affine", (w, h), vis.shape[1::-1])
        conf = reg.info["confidence"]
        if "00040N" in name:  # a night pair whose visible image is a few lamps in the dark: refused, with a reason
            assert not conf["ok"] and "daylight pair" in conf["reasons"][0]
        else:
            assert conf["ok"] and corner_shift(reg, ident) < 3.0
