"""Every metric under every convention: shape, known values, invariants, NaN-freedom, gradients, errors."""

import math

import pytest
import torch

from fusion.errors import RgbtError
from fusion.metrics import compute_metrics, higher_is_better, metric_names
from fusion.metrics.conventions import CONVENTIONS

ALL = [(c, m) for c in CONVENTIONS for m in metric_names(c, extra=True)]
IVIFZOO_UNDEFINED = {"QNCIE", "Qcb", "SF", "AG", "CC", "SCD", "Qabf", "Nabf", "MS_SSIM"}
# The tang code's published Nabf scores the infrared image as the fused one: not symmetric in the sources.
ASYMMETRIC = {("tang", "Nabf_published")}
# The survey code's MS-SSIM stops on a side of 160 pixels or less (NaN under ivifzoo): scored on larger images.
LARGE = {("ivifzoo", "MS_SSIM")}


def size_for(conv, name, h, w):
    return (max(h, 161), max(w, 161)) if (conv, name) in LARGE else (h, w)


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def levels(*shape, seed=0):
    """Images that hold exact 8-bit levels, as read from files."""
    return (rand(*shape, seed=seed) * 255).round() / 255


@pytest.mark.parametrize("conv,name", ALL)
def test_shape_dtype_and_finite(conv, name):
    h, w = size_for(conv, name, 33, 41)
    f, v, i = levels(3, 1, h, w, seed=1), levels(3, 1, h, w, seed=2), levels(3, 1, h, w, seed=3)
    out = compute_metrics(f, v, i, [name], conv)[name]
    assert out.shape == (3,) and out.dtype == torch.float64 and torch.isfinite(out).all()
    # Batched values equal one-by-one values.
    one = compute_metrics(f[1:2], v[1:2], i[1:2], [name], conv)[name]
    assert torch.allclose(out[1:2], one, rtol=1e-10, atol=1e-12)


FLOAT32 = {("standard", n) for n in ("SSIM", "MEF_SSIM", "Qcb", "VIF", "Qabf", "Nabf")}


@pytest.mark.parametrize("conv,name", [x for x in ALL if x not in ASYMMETRIC])
def test_swapped_sources_give_the_same_value(conv, name):
    h, w = size_for(conv, name, 40, 40)
    f, v, i = levels(2, 1, h, w, seed=4), levels(2, 1, h, w, seed=5), levels(2, 1, h, w, seed=6)
    a = compute_metrics(f, v, i, [name], conv)[name]
    b = compute_metrics(f, i, v, [name], conv)[name]
    # standard's float32 paths sum the two sources in another order when swapped: equal up to float32 rounding
    rtol = 1e-6 if (conv, name) in FLOAT32 else 1e-9
    assert torch.allclose(a, b, rtol=rtol, atol=1e-12)


# ivifzoo reproduces the survey code's NaN where it divides 0 by 0: tests/test_metrics_ivifzoo.py.
@pytest.mark.parametrize("conv,name", [x for x in ALL if x[0] != "ivifzoo" or x[1] not in IVIFZOO_UNDEFINED])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 5), (16, 16)])
def test_flat_and_tiny_images_are_nan_free(conv, name, size):
    flat = torch.full((1, 1, *size), 100 / 255)
    for f, v, i in [(flat, flat, flat), (flat, levels(1, 1, *size), flat * 0.5), (levels(1, 1, *size), flat, flat)]:
        out = compute_metrics(f, v, i, [name], conv)[name]
        assert not torch.isnan(out).any(), (f.shape, name)


@pytest.mark.parametrize("conv", [c for c in CONVENTIONS if CONVENTIONS[c].shared])
@pytest.mark.parametrize("size", [(1, 4), (5, 7), (40, 33)])
def test_metrics_computed_together_equal_their_separate_values(conv, size):
    f, v, i = levels(2, 1, *size, seed=30), levels(2, 1, *size, seed=31), levels(2, 1, *size, seed=32)
    for group in CONVENTIONS[conv].shared:
        together = compute_metrics(f, v, i, list(group), conv)
        for name in group:
            alone = compute_metrics(f, v, i, [name], conv)[name]
            assert torch.allclose(together[name], alone, rtol=1e-12, atol=1e-15), (group, name)


@pytest.mark.parametrize("conv", list(CONVENTIONS))
def test_identical_inputs(conv):
    x = levels(1, 1, 48, 48, seed=7)
    m = compute_metrics(x, x, x, convention=conv)
    pairs = 1 if conv in ("standard", "tang") else 2  # SSIM is a mean (standard, tang) or a sum
    if conv == "tang2022":  # no SSIM by default; on [0, 1] data every tie gives G = gF, not the fixed code's value
        fixed = compute_metrics(x, x, x, ["Qabf"], "tang")["Qabf"].item()
        assert "SSIM" not in m and 0 < m["Qabf"].item() < 1 and abs(m["Qabf"].item() - fixed) > 1e-3
        assert m["VIF"].item() == pytest.approx(2.0, abs=1e-9) and m["MSE"].item() == 0
        return
    assert m["SSIM"].item() == pytest.approx(pairs, abs=1e-6)
    if "VIF" in m:
        assert m["VIF"].item() == pytest.approx(2.0, abs=1e-9)
    if "CC" in m:
        assert m["CC"].item() == pytest.approx(1.0)
    if "MSE" in m:
        assert m["MSE"].item() == 0
    # Qabf with F = A = B: the published G term is gF where gA == gF, so only the angle term is below 1.
    expected = 0.9994 * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert m["Qabf"].item() == pytest.approx(expected, rel=1e-6)
    if "MI" in m and conv == "standard":
        assert m["MI"].item() == pytest.approx(2 * m["EN"].item())
    if "CE" in m and conv != "ivifzoo":  # the survey's CE is a sigmoid BCE: test_metrics_ivifzoo.py
        assert m["CE"].item() == 0


def test_tang2022_strengths_take_a_correctly_rounded_square_root():
    """MATLAB's sqrt is IEEE's (correctly rounded) and Qabf's tie rule compares strengths for exact equality, so a
    root one ulp off flips ties: torch's vectorised float64 sqrt on an AVX-512 CPU rounds the first value up."""
    from fusion.metrics.tang2022 import _sqrt_ieee

    x = torch.cat([torch.tensor([14.981837754709726], dtype=torch.float64), torch.rand(10_000, dtype=torch.float64)])
    assert _sqrt_ieee(x).tolist() == [math.sqrt(v) for v in x.tolist()]


def test_published_nabf_scores_infrared_as_fused():
    f, v, i = levels(1, 1, 30, 30, seed=23), levels(1, 1, 30, 30, seed=24), levels(1, 1, 30, 30, seed=25)
    published = compute_metrics(f, v, i, ["Nabf_published"], "tang")["Nabf_published"]
    assert torch.allclose(published, compute_metrics(i, f, v, ["Nabf"], "tang")["Nabf"])
    assert not torch.allclose(published, compute_metrics(f, v, i, ["Nabf"], "tang")["Nabf"])


def test_known_values_standard():
    f = torch.zeros(1, 1, 4, 4)
    f[..., :2] = 1.0  # half 0, half 255
    a, b = torch.zeros_like(f), torch.ones_like(f)
    m = compute_metrics(f, a, b)
    assert m["EN"].item() == pytest.approx(1.0)
    assert m["SD"].item() == pytest.approx(127.5)
    assert m["MSE"].item() == pytest.approx(255**2 / 2)
    assert m["RMSE"].item() == pytest.approx(255 / math.sqrt(2))
    assert m["PSNR"].item() == pytest.approx(10 * math.log10(2))
    # One jump of 255 per row between columns 1 and 2; no vertical differences.
    assert m["SF"].item() == pytest.approx(math.sqrt(255**2 / 3))


def test_known_values_other_conventions():
    f = levels(1, 1, 20, 24, seed=8)
    v, i = levels(1, 1, 20, 24, seed=9), levels(1, 1, 20, 24, seed=10)
    s, t, c, vb = (compute_metrics(f, v, i, convention=k) for k in ("standard", "tang", "cddfuse", "vifb"))
    assert t["MSE"].item() == pytest.approx(s["MSE"].item() / 255**2)
    assert t["PSNR"].item() == pytest.approx(s["PSNR"].item() + 20 * math.log10(255))
    peak = (f * 255).max().item()
    assert c["PSNR"].item() == pytest.approx(10 * math.log10(peak**2 / s["MSE"].item()))
    assert c["MI"].item() == pytest.approx(s["MI"].item() * math.log(2), rel=1e-6)  # nats vs bits
    assert t["AG"].item() == pytest.approx(c["AG"].item() * 20 * 24 / (19 * 23))
    n = 20 * 24
    sse = lambda x: ((f - x) * 255).pow(2).sum().sqrt().item() / n  # noqa: E731
    assert vb["RMSE"].item() == pytest.approx(0.5 * (sse(v) + sse(i)))


def test_vifb_colour_is_scored_per_channel_and_sf_as_mosaic():
    f, v = levels(1, 3, 16, 20, seed=11), levels(1, 3, 16, 20, seed=12)
    i = levels(1, 1, 16, 20, seed=13)
    m = compute_metrics(f, v, i, ["EN", "SF"], "vifb")
    per = [compute_metrics(f[:, k : k + 1], v[:, k : k + 1], i, ["EN"], "vifb")["EN"] for k in range(3)]
    assert m["EN"].item() == pytest.approx(torch.stack(per).mean().item())
    mosaic = torch.cat(f.unbind(1), dim=-1).unsqueeze(1)
    assert m["SF"].item() == pytest.approx(compute_metrics(mosaic, mosaic, mosaic, ["SF"], "vifb")["SF"].item())


@pytest.mark.parametrize("conv,name", ALL)
def test_value_ranges(conv, name):
    h, w = size_for(conv, name, 32, 32)
    m = compute_metrics(
        levels(2, 1, h, w, seed=14), levels(2, 1, h, w, seed=15), levels(2, 1, h, w, seed=16), [name], conv
    )[name]
    bounds = {"EN": (0, 8), "SD": (0, 127.5), "Qabf": (0, 1), "CC": (-1, 1), "SCD": (-2, 2), "MI": (0, 16)}
    lo, hi = bounds.get(name, (-math.inf, math.inf))
    if name == "SSIM":
        lo, hi = -2, 2
    assert ((m >= lo) & (m <= hi)).all(), (name, m)


DIFFERENTIABLE = ["SD", "SF", "AG", "EI", "SCD", "CC", "VIF", "SSIM", "PSNR", "MSE", "RMSE"]


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradients_flow_under_standard(name):
    f = rand(1, 1, 40, 40, seed=17).requires_grad_()
    out = compute_metrics(f, rand(1, 1, 40, 40, seed=18), rand(1, 1, 40, 40, seed=19), [name])[name]
    out.sum().backward()
    assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


def test_higher_is_better_flags():
    assert higher_is_better("SSIM") and higher_is_better("VIF") and not higher_is_better("MSE")
    assert not higher_is_better("RMSE", "vifb") and not higher_is_better("CE", "vifb")


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(rand(1, 1, 8, 8), rand(1, 1, 8, 9), rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="empty"):
        compute_metrics(*(torch.zeros(1, 1, 0, 4),) * 3)
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(torch.full((1, 1, 4, 4), float("nan")), rand(1, 1, 4, 4), rand(1, 1, 4, 4))
    with pytest.raises(RgbtError, match="unknown metric"):
        compute_metrics(rand(1, 1, 4, 4), rand(1, 1, 4, 4), rand(1, 1, 4, 4), ["XYZ"])
    with pytest.raises(RgbtError, match="convention"):
        compute_metrics(rand(1, 1, 4, 4), rand(1, 1, 4, 4), rand(1, 1, 4, 4), convention="nope")
    with pytest.raises(RgbtError, match="unknown metric"):
        compute_metrics(rand(1, 1, 4, 4), rand(1, 1, 4, 4), rand(1, 1, 4, 4), ["VIF"], "vifb")


def test_torchmetrics_wrapper_averages_over_images():
    from fusion.metrics.module import FusionMetric, fusion_metrics

    f, v, i = rand(4, 1, 24, 24, seed=20), rand(4, 1, 24, 24, seed=21), rand(4, 1, 24, 24, seed=22)
    m = FusionMetric("SSIM")
    m.update(f[:1], v[:1], i[:1])
    m.update(f[1:], v[1:], i[1:])
    expected = compute_metrics(f, v, i, ["SSIM"])["SSIM"].mean()
    assert torch.allclose(m.compute(), expected)
    coll = fusion_metrics(["EN", "VIF"], prefix="val/")
    coll.update(f, v, i)
    out = coll.compute()
    assert set(out) == {"val/EN", "val/VIF"}
    with pytest.raises(ValueError):
        FusionMetric("VIF", "vifb")


def scene(seed, h=72, w=88):
    """A smooth 8-bit scene with saturated (flat) areas and noise, closer to real images than pure noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = 120 + 90 * torch.sin(6 * xx + 3 * torch.rand(1, generator=g)) * torch.cos(4 * yy)
    x = x + 8 * torch.randn(h, w, generator=g)
    return x.clamp(40, 200).round().view(1, 1, h, w).double()


def test_filter_helpers_match_references():
    import torch.nn.functional as F

    from fusion.metrics._kernels import SOBEL_X, SOBEL_Y, filter_valid, flat_windows, gaussian_window, sobel

    x = torch.randint(0, 3, (2, 3, 30, 34)).double()
    x[:, :, 4:24, 6:28] = 7.0
    for size in (1, 2, 3, 5, 8, 11, 17):  # running maxima by doubling: powers of two and the rest
        brute = x.unfold(2, size, 1).unfold(3, size, 1).flatten(-2).std(-1, correction=0) == 0
        assert torch.equal(flat_windows(x, size), brute) and brute.any(), size
    assert not flat_windows(x, 5).all()
    # Separable Sobel equals the 3x3 correlation with MATLAB's kernels, for every padding
    y = rand(2, 3, 9, 12, seed=40).double() * 255
    for pad in ("zeros", "replicate", "reflect"):
        yp = F.pad(y, (1, 1, 1, 1)) if pad == "zeros" else F.pad(y, (1, 1, 1, 1), mode=pad)
        for got, k in zip(sobel(y, pad), (SOBEL_X, SOBEL_Y), strict=True):
            want = F.conv2d(yp, torch.tensor(k, dtype=y.dtype).expand(3, 1, 3, 3), groups=3)
            assert torch.allclose(got, want, atol=1e-9), pad
    g = gaussian_window(9, 1.8)
    for c in (1, 3, 6, 9, 17):  # channel groups of 8 and padded remainders
        y = rand(1, c, 40, 45, seed=c).double() * 255
        ref = filter_valid(y, g)
        assert torch.allclose(filter_valid(y, g, torch.float32).double(), ref, atol=1e-3)
        assert torch.allclose(filter_valid(y, g, torch.float32, stride=2).double(), ref[..., ::2, ::2], atol=1e-3)
        assert torch.equal(filter_valid(y, g, stride=2), ref[..., ::2, ::2])


@pytest.mark.parametrize("name", ["VIF", "MEF_SSIM", "Qcb", "SSIM", "Qabf", "Nabf"])
def test_standard_float32_paths_agree_with_float64(name):
    from functools import partial

    from fusion.metrics import gradient, perceptual, structural

    f64 = {"VIF": structural.vif, "MEF_SSIM": perceptual.mef_ssim, "Qcb": perceptual.qcb, "Qabf": gradient.qabf}
    f64["Nabf"] = gradient.nabf
    f64["SSIM"] = lambda f, a, b: sum(structural.ssim_pair(f, a, b)) / 2
    f32 = CONVENTIONS["standard"].metrics[name][0]
    a, b = scene(1), scene(2)
    # The last fusion equals a source: every strength ties (Qabf's discontinuous quirk).
    for f in ((a + b) / 2, torch.maximum(a, b), ((0.3 * a + 0.7 * b) + 5).round(), a):
        assert f32(f, a, b).item() == pytest.approx(f64[name](f, a, b).item(), rel=1e-4)
    # A flat source: its VIF term is 0/0, reported as 1 in both precisions.
    flat = torch.full_like(a, 90.0)
    assert f32(a, flat, b).item() == pytest.approx(f64[name](a, flat, b).item(), rel=1e-4)
    if name == "VIF":
        assert partial(structural.vif, dtype=torch.float32)(a, flat, flat).item() == 2.0
