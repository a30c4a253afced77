"""The standard suite in strips (fusion.metrics.streaming) equals the whole-image code, in bounded memory."""

from __future__ import annotations

import math

import pytest
import torch

from fusion.metrics import compute_metrics, metric_names
from fusion.metrics.streaming import STREAMED, stream_standard, strips

# the float32 paths of the standard convention (docs/metrics.md): their rounding depends on the centring offset
# and on how Qcb's Gaussians are applied (FFT there, spatial here)
FLOAT32 = {"VIF": 1e-6, "SSIM": 1e-6, "MEF_SSIM": 1e-6, "Qcb": 1e-5, "Qabf": 1e-6, "Nabf": 1e-6}


def _scene(h: int, w: int, c: int, seed: int) -> torch.Tensor:
    """(1, c, h, w) uint8: smooth waves, noise, a flat block (VIF's flat-window test) and a saturated one."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = 0.5 + 0.4 * torch.sin(9 * xx + 3 * yy + seed) * torch.cos(7 * yy)
    x = (base.expand(1, c, h, w) + 0.1 * torch.rand(1, c, h, w, generator=g)).clamp(0, 1)
    x[..., h // 3 : h // 3 + 20, w // 4 : w // 4 + 30] = 0.7
    x[..., -9:, :12] = 1.0
    return (x * 255).round().to(torch.uint8)


@pytest.mark.parametrize(
    ("h", "w", "fused_c", "strip"),
    [(203, 157, 1, 2000), (97, 64, 3, 100), (250, 331, 1, 6000), (64, 300, 1, 50_000), (130, 90, 1, 1)],
    ids=["odd-13-strips", "colour-fused-tiny", "wide", "one-strip", "minimum-strips"],
)
def test_strips_equal_the_whole_image_code(h, w, fused_c, strip):
    f, v, i = _scene(h, w, fused_c, 1), _scene(h, w, 3, 2), _scene(h, w, 1, 3)
    assert len(strips(h, w, strip)) == math.ceil(h / max(16, (strip // w) // 16 * 16))
    whole = compute_metrics(f.float() / 255, v.float() / 255, i.float() / 255, STREAMED, "standard")
    got = stream_standard(f, v, i, STREAMED, strip_pixels=strip)
    assert set(got) == set(STREAMED) == set(metric_names("standard"))
    for k in STREAMED:
        ref = float(whole[k][0])
        assert got[k] == pytest.approx(ref, rel=FLOAT32.get(k, 1e-11), abs=1e-12), k


def test_float_inputs_and_subsets():
    """16-bit images come as float in [0, 1]; any subset of the metrics can be asked for."""
    g = torch.Generator().manual_seed(0)
    f, v, i = (torch.rand(1, c, 70, 45, generator=g) for c in (1, 3, 1))
    names = ["SD", "Qcv", "MI"]
    whole = compute_metrics(f, v, i, names, "standard")
    got = stream_standard(f, v, i, names, strip_pixels=500)
    assert list(got) == names
    for k in names:
        assert got[k] == pytest.approx(float(whole[k][0]), rel=1e-11)
    with pytest.raises(ValueError, match="not streamed"):
        stream_standard(f, v, i, ["FMI_pixel"])
    with pytest.raises(ValueError, match="NaN"):
        stream_standard(f * float("nan"), v, i, ["SD"])


def test_evaluate_streams_large_pairs_with_the_same_scores(pair_dirs, tmp_path, monkeypatch):
    """rgbt evaluate's scoring switches to strips above STREAM_PIXELS; the scores stay those of the whole code."""
    from fusion import evaluate
    from fusion.data import find_pairs
    from fusion.fuse import fuse_pairs
    from fusion.methods import build_method

    ir, vi = pair_dirs
    pairs = find_pairs(ir, vi)
    fuse_pairs(build_method("max"), pairs, tmp_path / "max", method="max", progress=False)
    fused = evaluate.collect_fused(tmp_path / "max")
    whole = evaluate.evaluate_pairs(fused, pairs, progress=False)
    monkeypatch.setattr(evaluate, "STREAM_PIXELS", 1)
    calls = []
    monkeypatch.setattr(evaluate, "stream_standard", lambda *a, **k: calls.append(1) or stream_standard(*a, **k))
    streamed = evaluate.evaluate_pairs(fused, pairs, progress=False, metrics=[*STREAMED, "FMI_pixel"])
    assert len(calls) == len(pairs)
    by_key = {(r.image, r.metric): r.value for r in streamed}
    assert by_key.keys() >= {(r.image, r.metric) for r in whole} and ("p0", "FMI_pixel") in by_key
    for r in whole:
        assert by_key[(r.image, r.metric)] == pytest.approx(r.value, rel=FLOAT32.get(r.metric, 1e-11), abs=1e-12)


def test_24_megapixel_pair_scores_under_1500_mb(tmp_path, monkeypatch):
    """The bound of issue 14: rgbt evaluate, the standard suite, on a synthetic 6000x4000 pair."""
    monkeypatch.syspath_prepend("scripts")
    from bench_memory import peak, synthetic_pair

    ir, vi = synthetic_pair(tmp_path, 24)
    csv = tmp_path / "scores.csv"
    mb, _, code = peak(["evaluate", "--fused", str(vi), "--ir", str(ir), "--vis", str(vi), "--csv", str(csv)])
    assert code == 0 and len(csv.read_text().splitlines()) == 1 + len(STREAMED)
    assert mb < 1500, f"peak {mb:.0f} MB"
