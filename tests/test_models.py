"""Fusion networks: one parametrised test over every model, architecture sizes, tiling and weight files."""

from __future__ import annotations

import pytest
import torch

from fusion.errors import RgbtError
from fusion.models import (
    MODELS,
    CDDFuse,
    DDcGANDiscriminator,
    DDcGANGenerator,
    DenseFuse,
    SwinFusion,
    load_model,
    save_weights,
    tiled_forward,
)
from fusion.models.densefuse import fuse_features
from fusion.models.swinfusion import shift_mask, window_partition, window_reverse


def small(name: str) -> torch.nn.Module:
    # SwinFusion at full width is slow on CPU; a narrower one exercises the same code paths
    if name == "swinfusion":
        return SwinFusion(embed_dim=12, heads=2, window=4, extract_depth=2, fusion_depths=(2,), recon_depth=2)
    return MODELS[name]()


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", [(37, 53), (16, 16)])
def test_model_contract(name, size):
    torch.manual_seed(0)
    model = small(name).train()
    vis, ir = torch.rand(2, 1, *size), torch.rand(2, 1, *size)
    out = model(vis, ir)
    assert out.shape == (2, 1, *size)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # every parameter receives a gradient (the loss must reach the whole network)
    (out - torch.maximum(vis, ir)).abs().mean().backward()
    unused = getattr(model, "unused", ())  # what the authors' files hold and their forward never uses
    params = [(n, p) for n, p in model.named_parameters() if not any(n.startswith(u) or u in n for u in unused)]
    missing = [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing[:5]}"
    assert sum(float(p.grad.abs().sum() > 0) for _, p in params) >= 0.9 * len(params)
    model.eval()
    with torch.no_grad():
        assert model(vis[:1], ir[:1]).shape == (1, 1, *size)


def count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_the_papers():
    d = DenseFuse()
    assert (count(d), count(d.encoder), count(d.decoder)) == (74_193, 14_032, 60_161)
    assert count(DDcGANGenerator()) == 1_097_665
    # the official SwinFusion reports 973,681 including an unused 8,430-parameter second stem
    assert count(SwinFusion()) == 973_681 - 8_430
    assert count(DDcGANDiscriminator(84)) == 31_233
    c = CDDFuse()
    parts = (count(c.encoder), count(c.decoder), count(c.base_fuse), count(c.detail_fuse))
    assert (count(c), parts) == (1_188_272, (599_144, 207_936, 363_016, 18_176))


def test_cddfuse_exact_and_fast_paths_agree():
    """The channels-last fast path and the official arithmetic differ by float rounding only."""
    torch.manual_seed(0)
    fast = CDDFuse().eval()
    exact = CDDFuse(exact=True).eval()
    exact.load_state_dict(fast.state_dict())
    vis, ir = torch.rand(1, 1, 23, 31), torch.rand(1, 1, 23, 31)
    with torch.no_grad():
        torch.testing.assert_close(fast(vis, ir), exact(vis, ir), rtol=1e-5, atol=1e-6)
        rec, base, detail = fast.reconstruct(vis)
    assert rec.shape == vis.shape and base.shape == detail.shape == (1, 64, 23, 31)


def test_official_options_keep_shapes():
    """DenseFuse's official mode works on 0-255 with a final ReLU; SwinFusion's pads 1-8 px and crops back."""
    torch.manual_seed(0)
    d = DenseFuse(strategy="mean", official=True).eval()
    vis, ir = torch.rand(1, 1, 16, 24), torch.rand(1, 1, 16, 24)
    with torch.no_grad():
        raw = d.forward_raw(vis, ir)
        assert raw.min() >= 0 and torch.equal(d(vis, ir), (raw / 255).clamp(0, 1))
    s = small("swinfusion")
    s.official = True
    assert s._pad(torch.rand(1, 1, 16, 13)).shape[-2:] == (20, 16)  # a multiple of the window gains a full window
    with torch.no_grad():
        assert s.eval().forward_raw(vis, ir).shape == (1, 1, 16, 24)


def test_swinfusion_full_width_runs_on_a_small_odd_image():
    m = SwinFusion().eval()
    vis, ir = torch.rand(1, 1, 19, 27), torch.rand(1, 1, 19, 27)
    with torch.no_grad():
        out = m(vis, ir)
        again = m(vis, ir)  # second call uses the cached attention bias
    assert out.shape == (1, 1, 19, 27) and torch.isfinite(out).all()
    assert torch.equal(out, again)
    assert torch.allclose(m(vis, ir), out, atol=1e-6)  # with grad: bias rebuilt, same result


def test_window_helpers_round_trip_and_mask():
    x = torch.arange(2 * 8 * 12 * 3, dtype=torch.float32).view(2, 8, 12, 3)
    w = window_partition(x, 4)
    assert w.shape == (2, 6, 16, 3)
    assert torch.equal(window_reverse(w, 4, 8, 12), x)
    m = shift_mask(8, 8, 4, 2, torch.device("cpu"))
    assert m.shape == (4, 16, 16)
    assert (m[0] == 0).all()  # the top-left window holds one region only
    assert (m[-1] == -100).any() and (m[-1].diagonal() == 0).all()


def test_densefuse_strategies():
    f1, f2 = torch.rand(1, 64, 5, 5), torch.rand(1, 64, 5, 5)
    assert torch.allclose(fuse_features(f1, f2, "mean"), (f1 + f2) / 2)
    assert torch.allclose(fuse_features(f1, f2, "sum"), f1 + f2)
    assert torch.allclose(fuse_features(f1, f1, "l1"), f1)  # equal activity: equal weights
    assert torch.allclose(fuse_features(f1, torch.zeros_like(f1), "l1"), f1)  # silent source gets no weight
    with pytest.raises(ValueError):
        DenseFuse(strategy="max")


def test_tiled_matches_untiled_for_a_conv_net():
    torch.manual_seed(0)
    m = DenseFuse().eval()  # receptive radius 8 px < overlap: tiling must be exact
    vis, ir = torch.rand(1, 1, 70, 90), torch.rand(1, 1, 70, 90)
    with torch.no_grad():
        full = m(vis, ir)
        tiled = tiled_forward(m, vis, ir, tile=32, overlap=12)
    assert torch.allclose(full, tiled, atol=1e-6)


def test_tiled_cufd_normalises_the_whole_image_first():
    """CUFD min-max normalises each source: tiles are normalised together (its prepare), so they give the whole
    image's result (receptive radius 22 px < the 32 px overlap)."""
    torch.manual_seed(0)
    m = MODELS["cufd"]().eval()
    vis, ir = torch.rand(1, 1, 150, 170), torch.rand(1, 1, 150, 170) * 0.5
    with torch.no_grad():
        assert torch.allclose(m(vis, ir), tiled_forward(m, vis, ir, tile=64, overlap=32), atol=1e-6)


def test_tiled_swinfusion_matches_away_from_seams():
    torch.manual_seed(0)
    m = small("swinfusion").eval()
    vis, ir = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        full, tiled = m(vis, ir), tiled_forward(m, vis, ir, tile=32, overlap=16)
    diff = (full - tiled).abs()[0, 0]
    assert diff[:24, :24].max() < 1e-2  # far from the seams at 32
    assert diff.max() < 0.5


def test_weight_file_round_trip(tmp_path):
    m = DenseFuse(strategy="mean")
    path = save_weights(m, tmp_path / "w" / "densefuse.pt", {"steps": "3"})
    back = load_model(path, expect="densefuse")
    assert back.strategy == "mean"
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values(), strict=True))
    assert load_model(path, strategy="l1").strategy == "l1"
    with pytest.raises(RgbtError, match="not swinfusion"):
        load_model(path, expect="swinfusion")
    with pytest.raises(RgbtError, match="no such weight file"):
        load_model(tmp_path / "missing.pt", expect="densefuse")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RgbtError, match="not a readable weight file"):
        load_model(bad)
