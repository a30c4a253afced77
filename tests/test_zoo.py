"""The model zoo: the published networks from their authors' own weight files, reproducing their test scripts.

The fixtures (``fixtures/zoo``, see its README) are what each authors' script saved for three real crops; the weights
are read from ``official_weights/`` of the shared data, never copied into the project.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fusion.cli import main as rgbt
from fusion.methods import build_method
from fusion.models import load_model, param_count, read_checkpoint
from fusion.models.official import OfficialImage
from fusion.models.zoo import FAMILIES, ZOO, find_weights

FIX = Path(__file__).parent / "fixtures" / "zoo"
PAIRS = json.loads((FIX / "pairs.json").read_text())
SCRIPTED = sorted(p.name for p in FIX.iterdir() if p.is_dir())  # methods with reference PNGs
# networks whose trained files are too large for the sample data: random weights written in the official format by
# the authors' own training code, with what their test script saved from them (fixtures/zoo_random/README.md)
RANDOM = Path(__file__).parent / "fixtures" / "zoo_random"
RANDOM_SCRIPTED = sorted(p.name for p in RANDOM.iterdir() if p.is_dir())
# the authors' files too large for the sample data (official_weights/README.md)
NOT_IN_SAMPLE = {"swinfusion", "cddfuse", "fusiongan", "ganmcc", "piafusion", "ddcgan"}
AUTHORS = [m for m in ZOO.values() if m.files and m.name not in NOT_IN_SAMPLE]  # files in shared data


# a TensorFlow 1 checkpoint also holds the optimiser's state (Adam's moments and powers, a step): not the network's
TF1_OPTIMIZER = re.compile(r"/(Adam|RMSProp)(_\d+)?$|^beta[12]_power$|^Variable$")


# CSF's rule weighs each feature by a softmax of classifier gradients at temperature 0.00015: TensorFlow's and
# PyTorch's float rounding, carried through a max pool's near-ties and that softmax, moves some levels by up to 0.2
# grey levels. For it the issue's own bound applies: one level, on at most 0.1 % of the pixels.
AMPLIFIED = {"csf": 0.001}


def assert_official(ours: np.ndarray, ref: np.ndarray, near: np.ndarray, what: str, off: float = 0.0) -> None:
    """``ours`` equals the authors' PNG, except by one grey level where the script's level lies within float noise of
    its cast's boundary (``near``): there the CPU decides, for their code as for ours. ``off``: the fraction of
    pixels allowed one level off elsewhere too."""
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, f"{what}: {ours.shape} vs {ref.shape}"
    diff = np.abs(ours.astype(int) - ref.astype(int))
    diff = diff.max(-1) if diff.ndim == 3 else diff
    assert diff.max() <= 1, f"{what}: off by {diff.max()} grey levels"
    bad = int(((diff != 0) & ~near).sum())
    assert bad <= off * diff.size, f"{what}: {bad} pixels differ off a boundary"


@pytest.fixture(scope="module")
def crops(shared_data, tmp_path_factory) -> Path:
    """The fixtures' input crops, cut from the shared data as the README says (PIL, the file's own mode, PNG)."""
    d = tmp_path_factory.mktemp("zoo_in")
    for name, p in PAIRS.items():
        (r0, r1), (c0, c1) = p["rows"], p["cols"]
        for key in ("ir", "vi"):
            (d / key).mkdir(exist_ok=True)
            with Image.open(shared_data / p[key]) as im:
                im.crop((c0, r0, c1, r1)).save(d / key / f"{name}.png")
    return d


@pytest.mark.parametrize("method", SCRIPTED)
def test_rgbt_fuse_official_reproduces_the_authors_script(method, crops, tmp_path):
    out = tmp_path / "out"
    assert rgbt(["fuse", "--method", method, "--official", "--ir", str(crops / "ir"), "--vis", str(crops / "vi"),
                 "--out", str(out)]) == 0  # fmt: skip
    model = build_method(method, official=True)
    assert model.source.startswith(f"authors' {ZOO[method].family} weights")
    for pair in PAIRS:
        ref = np.asarray(Image.open(FIX / method / f"{pair}.png"))
        ours = np.asarray(Image.open(out / f"{pair}.png"))
        res = FAMILIES[model.name].official(model, crops / "ir" / f"{pair}.png", crops / "vi" / f"{pair}.png")
        assert np.array_equal(res.image, ours), "rgbt fuse writes what the official function returns"
        assert_official(ours, ref, res.near, f"{method} {pair}", AMPLIFIED.get(method, 0.0))


@pytest.mark.parametrize("method", RANDOM_SCRIPTED)
def test_official_format_random_weights_reproduce_the_authors_script(method, crops, tmp_path):
    """The loader takes the official checkpoint format as the authors' code writes it, and ``--official`` gives what
    their test script saved from those weights."""
    ckpt = next((RANDOM / method).glob("*.index"))
    out = tmp_path / "out"
    assert rgbt(["fuse", "--method", method, "--official", "--ckpt", str(ckpt), "--ir", str(crops / "ir"),
                 "--vis", str(crops / "vi"), "--out", str(out)]) == 0  # fmt: skip
    model = build_method(method, official=True, ckpt=ckpt)
    # the files hold the generator's variables only (and training's spectral-norm vectors, which the scripts ignore)
    values = sum(v.numel() for k, v in read_checkpoint(ckpt).items() if "weights_SN" not in k)
    assert values == ZOO[method].params
    for pair in PAIRS:
        ref = np.asarray(Image.open(RANDOM / method / f"{pair}.png"))
        ours = np.asarray(Image.open(out / f"{pair}.png"))
        res = FAMILIES[model.name].official(model, crops / "ir" / f"{pair}.png", crops / "vi" / f"{pair}.png")
        assert np.array_equal(res.image, ours)
        assert_official(ours, ref, res.near, f"{method} {pair}")


def test_the_boundary_tolerance_refuses_other_differences():
    ref = np.full((4, 5), 100, np.uint8)
    near = np.zeros((4, 5), bool)
    near[1, 1] = True
    flipped = ref.copy()
    flipped[1, 1] = 101
    assert_official(flipped, ref, near, "flip at a boundary")
    off = ref.copy()
    off[2, 2] = 101
    with pytest.raises(AssertionError, match="off a boundary"):
        assert_official(off, ref, near, "flip elsewhere")
    two = ref.copy()
    two[1, 1] = 102
    with pytest.raises(AssertionError, match="off by 2"):
        assert_official(two, ref, near, "two levels")


@pytest.mark.parametrize("method", [m.name for m in AUTHORS])
def test_the_authors_files_load_whole(method, shared_data):
    """Every value of the authors' file(s) lands in our network and nothing is left over; the counts are the zoo's."""
    m = ZOO[method]
    found = find_weights(method)
    assert found is not None and found.kind == "authors", f"{method}: {found}"
    values = 0
    for f in found.files:
        sd = read_checkpoint(f)
        sd = sd.get("weight", sd)
        values += sum(v.numel() for k, v in sd.items() if not TF1_OPTIMIZER.search(k))
    assert values == m.params
    fam = FAMILIES[m.family]
    parts = {fam.detect(read_checkpoint(f)): read_checkpoint(f) for f in found.files}
    state = fam.convert(parts)
    model = fam.model(**{**fam.native, **m.config})
    assert set(state) == set(model.state_dict())  # nothing missing, nothing left over
    counters = sum(1 for k in state if k.endswith("num_batches_tracked")) - sum(
        1 for p in parts.values() for k in p.get("weight", p) if k.endswith("num_batches_tracked")
    )
    assert param_count(model) == m.params + counters  # IFCNN's file predates batch-norm counters: zeros added


@pytest.mark.parametrize("method", [m.name for m in AUTHORS])
def test_every_zoo_method_fuses_a_tno_pair(method, shared_data, tmp_path):
    """``rgbt fuse`` runs each method on TNO with the authors' weights, in our pipeline: a finite image in range."""
    ir, vi = tmp_path / "ir", tmp_path / "vi"
    ir.mkdir()
    vi.mkdir()
    for d, src in ((ir, "ir"), (vi, "vi")):
        (d / "19.png").write_bytes((shared_data / "tno" / src / "19.png").read_bytes())
    out = tmp_path / "out"
    assert rgbt(["fuse", "--method", method, "--ir", str(ir), "--vis", str(vi), "--out", str(out)]) == 0
    manifest = json.loads((out / "rgbt_fuse.json").read_text())
    assert manifest["weights"].startswith(f"authors' {ZOO[method].family} weights")
    img = np.asarray(Image.open(out / "19.png"))
    assert img.shape == np.asarray(Image.open(vi / "19.png")).shape[:2] and img.std() > 5


def test_missing_weights_say_which_file_to_put_where(tmp_path, monkeypatch, capsys, pair_dirs):
    monkeypatch.setenv("RGBT_DATA", str(tmp_path))  # a data root without official_weights/
    monkeypatch.delenv("RGBT_WEIGHTS", raising=False)
    ir, vi = pair_dirs
    assert rgbt(["fuse", "--method", "seafusion", "--ir", str(ir), "--vis", str(vi), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "SeAFusion.pth" in err and "seafusion/" in err and "VIF-Benchmark" in err
    assert not (tmp_path / "o").exists()


def test_rgbt_weights_and_the_flag_are_searched_first(shared_data, tmp_path, monkeypatch):
    mine = tmp_path / "mine" / "reconet"
    mine.mkdir(parents=True)
    (mine / "params.pth").write_bytes((shared_data / "official_weights/reconet/params.pth").read_bytes())
    monkeypatch.setenv("RGBT_WEIGHTS", str(tmp_path / "mine"))
    assert find_weights("reconet").files[0] == mine / "params.pth"
    flag = tmp_path / "flag" / "reconet"
    flag.mkdir(parents=True)
    (flag / "params.pth").write_bytes((mine / "params.pth").read_bytes())
    assert find_weights("reconet", tmp_path / "flag").files[0] == flag / "params.pth"


def test_bad_weight_inputs_are_one_line(shared_data, tmp_path, capsys, pair_dirs):
    ir, vi = pair_dirs
    ow = shared_data / "official_weights"
    odd = tmp_path / "odd.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, odd)
    half = tmp_path / "didfuse_half"
    half.mkdir()
    (half / "Encoder_weight_IJCAI.pkl").write_bytes((ow / "didfuse/Encoder_weight_IJCAI.pkl").read_bytes())
    cases = [
        (["--method", "seafusion", "--ckpt", str(ow / "tardal/tardal.pt")], "holds a tardal model, not seafusion"),
        (["--method", "ydtr", "--ckpt", str(odd)], "not a known weight format; expected .*SeAFusion.pth.*IFCNN"),
        (["--method", "didfuse", "--ckpt", str(half)], "no Decoder_weight_IJCAI.pkl here"),
        (["--method", "didfuse", "--ckpt", str(half / "Encoder_weight_IJCAI.pkl")], "not its decoder"),
        (["--method", "lrrnet", "--ckpt", str(tmp_path / "none.model")], "no such weight file"),
    ]
    for args, msg in cases:
        out = tmp_path / "out"
        assert rgbt(["fuse", *args, "--ir", str(ir), "--vis", str(vi), "--out", str(out)]) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "Traceback" not in err, err
        import re

        assert re.search(msg, err), (msg, err)
        assert not out.exists()


def test_official_image_marks_only_levels_at_risk():
    from fusion.models.official import grey_result

    levels = np.array([[0.0, 0.3, 1.0, 254.999, 255.0, 12.5]])
    res = grey_result(levels, "trunc")
    assert isinstance(res, OfficialImage)
    assert res.image.tolist() == [[0, 0, 1, 254, 255, 12]]
    assert res.near.tolist() == [[False, False, True, True, True, False]]  # 0 truncates to 0 from either side
    r = grey_result(np.array([[12.5, 12.0, -3.0, 300.0]]), "round")
    assert r.image.tolist() == [[12, 12, 0, 255]] and r.near.tolist() == [[True, False, False, False]]


def test_load_model_from_a_folder_takes_the_methods_file(shared_data):
    model = load_model(shared_data / "official_weights/ifcnn", expect="ifcnn", files=("IFCNN-SUM.pth",), rule="sum")
    ref = load_model(shared_data / "official_weights/ifcnn/IFCNN-SUM.pth", rule="sum")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True))


def test_rgbt_methods_lists_every_method_with_its_weights(capsys):
    assert rgbt(["methods"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and not r.startswith("| method")]
    assert len(rows) >= 17
    seafusion = next(r for r in rows if r.startswith("| seafusion |"))
    assert "Information Fusion 2022" in seafusion and "167,113" in seafusion and "authors:" in seafusion
    assert "VIF-Benchmark" in seafusion
    ddcgan = next(r for r in rows if r.startswith("| ddcgan |"))
    assert "ours:" in ddcgan  # no authors' PyTorch file: our weights


def test_export_of_the_authors_folder_fuses_as_the_authors_files(shared_data, tmp_path, pair_dirs):
    out = tmp_path / "didfuse.pt"
    folder = shared_data / "official_weights" / "didfuse"
    assert rgbt(["export", "--ckpt", str(folder), "--method", "didfuse", "--out", str(out)]) == 0
    meta = torch.load(out, weights_only=True)["meta"]
    assert set(meta["source_sha256"]) == {"Encoder_weight_IJCAI.pkl", "Decoder_weight_IJCAI.pkl"}
    ir, vi = pair_dirs
    a, b = tmp_path / "a", tmp_path / "b"
    assert rgbt(["fuse", "--method", "didfuse", "--ir", str(ir), "--vis", str(vi), "--out", str(a)]) == 0
    assert (
        rgbt(["fuse", "--method", "didfuse", "--ckpt", str(out), "--ir", str(ir), "--vis", str(vi), "--out", str(b)])
        == 0
    )
    for p in a.glob("*.png"):
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(b / p.name)))


def test_tables_mark_the_networks_fused_with_our_weights(shared_data, tmp_path):
    import yaml

    from fusion.experiment.spec import load_spec
    from fusion.experiment.tables import render

    f = tmp_path / "e.yaml"
    f.write_text(yaml.safe_dump({"name": "m", "convention": "standard", "metrics": ["EN"], "datasets": ["tno"],
                                 "methods": ["average", "ddcgan", "reconet"]}))  # fmt: skip
    spec = load_spec(f)
    kinds = {m.name: m.weights for m in spec.methods}
    assert kinds == {"average": "", "ddcgan": "ours", "reconet": "authors"}
    rows = [("tno", "01", m, "EN", 6.0 + i, "standard") for i, m in enumerate(kinds)]
    md = render(spec, rows, [])["tno.md"]
    assert "| ddcgan* (1) |" in md and "| reconet (1) |" in md and "*: our weights" in md


def test_forward_memory_estimate_follows_the_window_and_refuses_what_cannot_fit(monkeypatch):
    """The estimate rgbt fuse and rgbt experiment check before any work: bounded by the tile with automatic tiles
    (a 24 MP pair under 1.5 GB, as measured), quadratic in the side whole; a run that cannot fit is refused."""
    from fusion.errors import RgbtError
    from fusion.methods.learned import AUTO_TILE, BYTES_PER_PIXEL, WHOLE, check_forward_memory, forward_bytes
    from fusion.models import MODELS, Tiled

    assert set(BYTES_PER_PIXEL) == set(AUTO_TILE)  # every tiled family has a measured figure
    net = MODELS["densefuse"]()
    auto, whole = Tiled(net, AUTO_TILE["densefuse"], 32, whole=WHOLE), net
    assert forward_bytes(auto, 4000, 6000) < 1.5 * 2**30
    assert forward_bytes(auto, 4000, 6000) < forward_bytes(Tiled(net, 2048, 32), 4000, 6000)
    assert forward_bytes(whole, 1000, 1000) * 4 == pytest.approx(forward_bytes(whole, 2000, 2000), rel=1e-9)
    assert forward_bytes(auto, 480, 640) == forward_bytes(whole, 480, 640)  # runs whole below WHOLE
    assert forward_bytes(build_method("average"), 4000, 6000) is None  # the classical methods work in strips

    monkeypatch.setattr("fusion.train.memory.available_bytes", lambda: 4 << 30)
    check_forward_memory(auto, [(4000, 6000), (480, 640)], "densefuse")
    with pytest.raises(RgbtError, match=r"densefuse on a 6000x4000 pair would need about .* leave --tile out"):
        check_forward_memory(whole, [(480, 640), (4000, 6000)], "densefuse")
    with pytest.raises(RgbtError, match="drop --official"):
        check_forward_memory(whole, [(4000, 6000)], "densefuse", official=True)
    with pytest.raises(RgbtError, match="smaller --tile"):
        check_forward_memory(Tiled(net, 6000, 32), [(4000, 6000)], "densefuse")
