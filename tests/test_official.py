"""Official checkpoints: load the official files as they are and reproduce the official scripts' outputs.

The fixtures in ``official_checkpoints/`` hold random weights in each official format and what the official code
computed from them on two crops (see its README); matching them proves both the loader and the architecture.
"""

from __future__ import annotations

import os
import pickle

import cv2
import numpy as np
import pytest
import torch

from fusion.cli import main as rgbt
from fusion.errors import RgbtError
from fusion.models import CDDFuse, load_model, save_weights
from fusion.models.official import near_boundary
from fusion.models.zoo import FAMILIES
from tests.test_zoo import assert_official

MODELS = ("densefuse", "swinfusion", "cddfuse")
ATOL = {"densefuse": 1e-3, "swinfusion": 1e-5, "cddfuse": 1e-5}  # DenseFuse's raw output is on 0..255


@pytest.fixture(scope="module")
def official(shared_data):
    return shared_data / "official_checkpoints"


@pytest.fixture
def one_thread():
    """The fixtures were made with one thread; more threads change float rounding in CDDFuse (README)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _grey(path) -> torch.Tensor:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return torch.from_numpy(img.astype(np.float32) / 255)[None, None]


@pytest.mark.parametrize("pair", ["a", "b"])
@pytest.mark.parametrize("name", MODELS)
def test_official_outputs_match(official, one_thread, name, pair):
    model = load_model(official / name / "official_random.pth", expect=name, official=True)
    assert model.source == f"authors' {name} weights"
    ir_p, vi_p = official / "inputs" / f"ir_{pair}.png", official / "inputs" / f"vi_{pair}.png"
    with torch.no_grad():
        raw = model.forward_raw(_grey(vi_p), _grey(ir_p))[0, 0].numpy()
    ref = np.load(official / name / f"out_{pair}_raw.npy")
    assert raw.shape == ref.shape
    np.testing.assert_allclose(raw, ref, rtol=1e-5, atol=ATOL[name])
    res = FAMILIES[name].official(model, ir_p, vi_p)
    png = cv2.imread(str(official / name / f"out_{pair}.png"), cv2.IMREAD_UNCHANGED)
    assert_official(res.image, png, res.near, f"{name} {pair}")


def test_png_tolerance_uses_the_scripts_cast(official):
    """The grey levels the DenseFuse script truncates: a level just under an integer is at risk, one mid-way is not."""
    ref = np.load(official / "densefuse" / "out_a_raw.npy").clip(0, 255)
    near = near_boundary(ref, "trunc")
    frac = np.abs(ref - np.round(ref))
    assert near[(frac < 0.006) & (ref > 1)].all() and not near[frac > 0.01].any()


def test_fast_cddfuse_within_tolerance(official):
    """Our default CDDFuse (channels-last, fused layer norms) differs from the official code by float rounding."""
    ckpt = torch.load(official / "cddfuse" / "official_random.pth", weights_only=True)
    model = CDDFuse().eval()
    model.load_state_dict(FAMILIES["cddfuse"].convert({"": ckpt}))
    vis, ir = _grey(official / "inputs" / "vi_b.png"), _grey(official / "inputs" / "ir_b.png")
    with torch.no_grad():
        out = model(vis, ir)[0, 0].numpy()
    np.testing.assert_allclose(out, np.load(official / "cddfuse" / "out_b_raw.npy"), rtol=1e-5, atol=1e-5)


def test_rgbt_fuse_official_writes_the_official_pngs(official, tmp_path, one_thread):
    ir_dir, vi_dir = tmp_path / "ir", tmp_path / "vi"
    ir_dir.mkdir()
    vi_dir.mkdir()
    for p in "ab":
        (ir_dir / f"{p}.png").write_bytes((official / "inputs" / f"ir_{p}.png").read_bytes())
        (vi_dir / f"{p}.png").write_bytes((official / "inputs" / f"vi_{p}.png").read_bytes())
    for name in MODELS:
        out = tmp_path / f"out_{name}"
        ckpt = official / name / "official_random.pth"
        assert rgbt(["fuse", "--method", name, "--ckpt", str(ckpt), "--official", "--ir", str(ir_dir),
                     "--vis", str(vi_dir), "--out", str(out)]) == 0  # fmt: skip
        model = load_model(ckpt, official=True)
        for p in "ab":
            ours = cv2.imread(str(out / f"{p}.png"), cv2.IMREAD_UNCHANGED)
            png = cv2.imread(str(official / name / f"out_{p}.png"), cv2.IMREAD_UNCHANGED)
            near = FAMILIES[name].official(model, ir_dir / f"{p}.png", vi_dir / f"{p}.png").near
            assert_official(ours, png, near, f"{name} {p}")


def test_swinfusion_formats_params_wrapper_and_module_prefix(official, tmp_path):
    sd = torch.load(official / "swinfusion" / "official_random.pth", weights_only=True)
    assert FAMILIES["swinfusion"].detect(sd) == "" and len(sd) == 448
    wrapped = tmp_path / "10000_E.pth"
    torch.save({"params": {f"module.{k}": v for k, v in sd.items()}}, wrapped)
    a = load_model(official / "swinfusion" / "official_random.pth")
    b = load_model(wrapped, expect="swinfusion")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_unknown_format_and_wrong_method_are_one_line(official, tmp_path):
    odd = tmp_path / "odd.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, odd)
    with pytest.raises(RgbtError, match="not a known weight format; expected .*CDDFuse_IVF.pth.*SeAFusion") as e:
        load_model(odd, expect="cddfuse")
    assert "\n" not in str(e.value)
    with pytest.raises(RgbtError, match="holds a cddfuse model, not swinfusion"):
        load_model(official / "cddfuse" / "official_random.pth", expect="swinfusion")


def test_a_checkpoint_that_does_not_fit_names_one_key(official, tmp_path):
    sd = torch.load(official / "densefuse" / "official_random.pth", weights_only=True)
    sd["conv2.conv2d.weight"] = torch.zeros(64, 64, 5, 5)
    bad = tmp_path / "bad.model"
    torch.save(sd, bad)
    with pytest.raises(RgbtError, match="weights do not fit densefuse") as e:
        load_model(bad)
    assert len(str(e.value)) < 400


class _Payload:
    """Unpickling this runs a command that writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, capsys, pair_dirs):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:  # a plain pickle, as torch.save's legacy format writes it
        pickle.dump({"fusion_model": {"name": "densefuse", "config": {}}, "state_dict": _Payload(str(marker))}, f, 2)
    torch.save({"params": _Payload(str(marker))}, tmp_path / "evil2.pth")  # torch's zip format
    with open(tmp_path / "evil3.pth", "wb") as f:  # protocol 4: refused before any object is built
        pickle.dump(_Payload(str(marker)), f, 4)
    for path in (evil, tmp_path / "evil2.pth", tmp_path / "evil3.pth"):
        with pytest.raises(RgbtError, match="never unpickled|not a readable weight file"):
            load_model(path)
        ir, vi = pair_dirs
        assert rgbt(["fuse", "--method", "densefuse", "--ckpt", str(path), "--ir", str(ir), "--vis", str(vi),
                     "--out", str(tmp_path / "o")]) == 2  # fmt: skip
        assert rgbt(["export", "--ckpt", str(path), "--out", str(tmp_path / "w.pt")]) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert err.count("never unpickled") == 4  # evil and evil2, by fuse and by export
    assert "Traceback" not in err and all(line.startswith("rgbt ") for line in err.strip().splitlines())
    assert not (tmp_path / "w.pt").exists() and not (tmp_path / "o").exists()


def test_export_converts_an_official_file_and_records_where_it_came_from(official, tmp_path):
    out = tmp_path / "cddfuse.pt"
    assert rgbt(["export", "--ckpt", str(official / "cddfuse" / "official_random.pth"), "--out", str(out)]) == 0
    meta = torch.load(out, weights_only=True)["meta"]
    assert meta["source_format"] == "authors' cddfuse weights" and len(meta["source_sha256"]) == 64
    a, b = load_model(official / "cddfuse" / "official_random.pth"), load_model(out, expect="cddfuse")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_official_mode_is_refused_for_ddcgan_and_classical(tmp_path):
    g = save_weights(load_model.__globals__["MODELS"]["ddcgan"](), tmp_path / "g.pt")
    with pytest.raises(RgbtError, match="ddcgan has no official mode for .* our own training"):
        load_model(g, official=True)
    from fusion.methods import build_method

    with pytest.raises(RgbtError, match="--official applies to learned methods"):
        build_method("gff", official=True)
