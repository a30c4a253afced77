import math

import pytest
import torch
from kornia.metrics import ssim as kornia_ssim

from fusion.errors import RgbtError
from fusion.metrics import compute_metrics, higher_is_better, metric_names

G = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.rand(*shape, generator=G)


def test_shapes_and_names():
    out = compute_metrics(rand(3, 3, 20, 30), rand(3, 3, 20, 30), rand(3, 1, 20, 30))
    assert list(out) == metric_names() == ["EN", "SD", "SSIM", "PSNR", "MSE"]
    assert all(v.shape == (3,) and v.dtype == torch.float64 for v in out.values())
    assert higher_is_better("SSIM") and not higher_is_better("MSE")


def test_known_values():
    # Half the pixels at 0, half at 255: EN = 1 bit, SD = 127.5.
    f = torch.zeros(1, 1, 4, 4)
    f[..., :2] = 1.0
    a, b = torch.zeros_like(f), torch.ones_like(f)
    m = compute_metrics(f, a, b)
    assert m["EN"].item() == pytest.approx(1.0)
    assert m["SD"].item() == pytest.approx(127.5)
    # F differs from each source on half the pixels by 255: MSE = 255^2 / 2.
    assert m["MSE"].item() == pytest.approx(255**2 / 2)
    assert m["PSNR"].item() == pytest.approx(10 * math.log10(2))


def test_ssim_matches_kornia_and_identity():
    f, a, b = rand(2, 1, 40, 50), rand(2, 1, 40, 50), rand(2, 1, 40, 50)
    ref = 0.5 * (
        kornia_ssim(f, a, 11, padding="valid").flatten(1).mean(1)
        + kornia_ssim(f, b, 11, padding="valid").flatten(1).mean(1)
    )
    assert torch.allclose(compute_metrics(f, a, b, ["SSIM"])["SSIM"], ref.double(), atol=1e-5)
    assert torch.allclose(compute_metrics(f, f, f, ["SSIM"])["SSIM"], torch.ones(2, dtype=torch.float64))


def test_identical_inputs():
    x = rand(1, 1, 32, 32)
    m = compute_metrics(x, x, x)
    assert m["MSE"].item() == 0 and m["PSNR"].item() == math.inf and m["SSIM"].item() == pytest.approx(1.0)


def test_swapped_sources_give_the_same_scores():
    f, a, b = rand(2, 1, 24, 24), rand(2, 1, 24, 24), rand(2, 1, 24, 24)
    m1, m2 = compute_metrics(f, a, b), compute_metrics(f, b, a)
    for k in m1:
        assert torch.allclose(m1[k], m2[k]), k


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (8, 8), (64, 64)])
@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_constant_and_tiny_images_are_nan_free(size, value):
    f = torch.full((1, 1, *size), value)
    m = compute_metrics(f, f, torch.full_like(f, 0.25))
    for k, v in m.items():
        assert not torch.isnan(v).any(), k
    assert 0 <= m["EN"].item() <= 8 and m["SD"].item() == 0 and -1 <= m["SSIM"].item() <= 1


def test_ranges_on_random_images():
    m = compute_metrics(rand(4, 1, 32, 32), rand(4, 3, 32, 32), rand(4, 1, 32, 32))
    assert ((m["EN"] >= 0) & (m["EN"] <= 8)).all()
    assert ((m["SD"] >= 0) & (m["SD"] <= 127.5)).all()
    assert ((m["SSIM"] >= -1) & (m["SSIM"] <= 1)).all()
    assert (m["MSE"] >= 0).all()


def test_colour_is_scored_on_luminance():
    f, v, i = rand(1, 3, 16, 16), rand(1, 3, 16, 16), rand(1, 1, 16, 16)
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    grey = compute_metrics((f * w).sum(1, keepdim=True), (v * w).sum(1, keepdim=True), i)
    colour = compute_metrics(f, v, i)
    for k in grey:
        assert torch.allclose(grey[k], colour[k], atol=1e-5), k


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
