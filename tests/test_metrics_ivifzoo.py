"""The ``ivifzoo`` convention (the TPAMI 2024 survey's ``Metric/eval_torch.py``) and the survey's added metrics by
their papers' definitions (``fusion.metrics.survey``): known values, quirks, NaN where the code has no value, the
command line, and every value the survey's own code wrote on real pairs (tests/fixtures/metrics/README.md)."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fusion.cli import main as rgbt
from fusion.metrics import compute_metrics, metric_names
from fusion.metrics import ivifzoo as Z
from fusion.metrics.reference import IVIFZOO_CSV, ivifzoo_checks

NAMES = ["CE", "NMI", "QNCIE", "TE", "EI", "Qy", "Qcb", "EN", "MI", "SF", "AG", "SD", "CC", "SCD", "VIF", "MSE"]
NAMES += ["PSNR", "Qabf", "Nabf", "SSIM", "MS_SSIM"]


def levels(*shape, seed=0):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 255).round() / 255


def scene(h, w, seed):
    """A smooth scene with texture, as levels / 255 (random noise makes every windowed metric degenerate)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(7 * x + float(torch.rand(1, generator=g)) * 6) * torch.cos(5 * y)
    return (base + 0.08 * torch.rand(h, w, generator=g)).clamp(0, 1).mul(255).round().div(255)[None, None]


def test_the_convention_reports_the_codes_21_metrics_in_its_order():
    assert metric_names("ivifzoo") == NAMES


@pytest.mark.slow
def test_the_survey_codes_values_are_reproduced(shared_data, tmp_path):
    """The first triple of each dataset and method of the reference CSV (10 of 100: VIFB x SeAFusion, U2Fusion,
    GFF; PIAFusion on TNO; two integer fusions of TNO, RoadScene and MSRS), all 21 metrics, each to 1e-6 relative.
    ``rgbt experiment references`` checks all 2,100 values (docs/metrics.md)."""
    rows = list(csv.DictReader(IVIFZOO_CSV.open()))
    pairs = {(r["dataset"], r["image"]) for r in rows}
    assert len(pairs) >= 30 and {r["dataset"] for r in rows} >= {"TNO", "RoadScene", "MSRS", "VIFB"}
    first: dict[tuple, str] = {}
    for r in rows:
        first.setdefault((r["dataset"], r["method"]), r["image"])
    subset = [r for r in rows if first[(r["dataset"], r["method"])] == r["image"]]
    sub_csv = tmp_path / "subset.csv"
    with sub_csv.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(subset)
    checks = ivifzoo_checks(shared_data, sub_csv)
    assert len(checks) == len(subset) == 10 * 21 and {c.metric for c in checks} == set(NAMES)
    bad = [c for c in checks if not c.ok]
    assert not bad, "\n".join(f"{c.method} {c.image} {c.metric}: {c.reference!r} ours {c.ours!r}" for c in bad[:20])


def test_reference_csv_records_its_commit_and_command():
    readme = (IVIFZOO_CSV.parent / "README.md").read_text()
    assert "2fc8473" in readme and "make_refs.py" in readme and IVIFZOO_CSV.name in readme


def test_known_values():
    f = torch.zeros(1, 1, 8, 8)
    f[..., :4] = 1.0  # half 0, half 255
    a, b = levels(1, 1, 8, 8, seed=1), levels(1, 1, 8, 8, seed=2)
    m = compute_metrics(f, a, b, ["EN", "MSE", "PSNR"], "ivifzoo")
    assert m["EN"].item() == pytest.approx(-math.log2(0.5 + 1e-7), rel=1e-6)
    mse = 0.5 * ((f - a) ** 2).mean() + 0.5 * ((f - b) ** 2).mean()  # on [0, 1]
    assert m["MSE"].item() == pytest.approx(mse.item(), rel=1e-6)
    std = compute_metrics(f, a, b, ["PSNR"])["PSNR"].item()  # 10 log10(255^2 / MSE on 0-255)
    assert m["PSNR"].item() == pytest.approx(std + 20 * math.log10(255), rel=1e-6)


def test_identical_images():
    x = scene(170, 180, 3)
    m = compute_metrics(x, x, x, None, "ivifzoo")
    h = compute_metrics(x, x, x, ["EN"])["EN"].item()  # bits, 256 bins of the levels
    assert m["MI"].item() == pytest.approx(2 * h, rel=1e-9)
    assert m["NMI"].item() == pytest.approx(2.0, rel=1e-8)  # 1e-10 inside its entropies' logs
    assert m["TE"].item() == pytest.approx(h, rel=1e-5)  # H(B) + H(A) - H(F)
    assert m["SSIM"].item() == pytest.approx(2.0, abs=1e-6)  # a sum over the sources
    assert m["MS_SSIM"].item() == pytest.approx(2.0, abs=1e-5)
    assert m["VIF"].item() == pytest.approx(2.0, abs=1e-5)
    assert m["Qy"].item() == pytest.approx(1.0, abs=1e-12)
    assert m["CC"].item() == pytest.approx(1.0, abs=1e-6) and m["MSE"].item() == 0
    # Eigenvalues 3, 0, 0: the code's 0 * log2(0) (or a float32 -1e-8 in the log) gives NaN, not the limit 1.
    assert math.isnan(m["QNCIE"].item())


def test_cross_entropy_is_a_sigmoid_bce_on_levels():
    """Every level above ~17 has sigmoid 1 in float32: bright images all give the clamp's own entropy."""
    x, y = levels(1, 1, 20, 20, seed=4) * 0.5 + 0.5, levels(1, 1, 20, 20, seed=5) * 0.5 + 0.5
    p = torch.tensor(1 - 1e-7, dtype=torch.float32)
    expect = -(p * torch.log(p) + (1 - p) * torch.log(1 - p))
    assert compute_metrics(x, y, x, ["CE"], "ivifzoo")["CE"].item() == pytest.approx(expect.item(), rel=1e-6)
    dark = torch.zeros(1, 1, 4, 4)  # sigmoid(0) = 0.5 everywhere: BCE(0.5, 0.5) = log 2
    assert compute_metrics(dark, dark, dark, ["CE"], "ivifzoo")["CE"].item() == pytest.approx(math.log(2))


def test_vif_window_is_the_codes_off_centre_linspace():
    w = Z._window(3, 0.6)
    pts = torch.tensor([-2.0, -0.5, 1.0])  # linspace(-3 // 2, 3 // 2, 3)
    g = torch.exp(-(pts[:, None] ** 2 + pts[None, :] ** 2) / (2 * 0.6**2))
    assert torch.allclose(w, g / g.sum())


@pytest.mark.parametrize("n", [3, 5, 9, 17])
def test_same_filtering_is_the_convolutions_arithmetic(n):
    """The strips of ``_same`` form each output as PyTorch's convolution does: bit for bit, which VIF's float32
    cancellation needs to give the code's value (a CPU whose convolution sums otherwise fails here)."""
    x = scene(97, 131, 6)[0, 0] * 255
    k = Z._window(n, n / 5)
    assert torch.equal(Z._same(x, k), F.conv2d(x[None, None], k[None, None], padding=n // 2)[0, 0])


def test_undefined_values_are_nan_as_in_the_code():
    """Where the code divides zero by zero (flat images) or stops (MS-SSIM on sides of 160 or less), NaN, not a
    stand-in; and no crash (LAPACK's eigvals used to abort on QNCIE's NaN matrix)."""
    flat = torch.full((1, 1, 40, 40), 100 / 255)
    x = scene(40, 40, 7)
    m = compute_metrics(x, flat, flat, None, "ivifzoo")
    nan = {k for k, v in m.items() if torch.isnan(v).any()}
    assert nan == {"QNCIE", "Qcb", "CC", "SCD", "Nabf", "MS_SSIM"}
    big = scene(161, 170, 8)
    assert not torch.isnan(compute_metrics(big, big * 0.5, big, ["MS_SSIM"], "ivifzoo")["MS_SSIM"]).any()
    assert torch.isnan(compute_metrics(x[..., :1, :], x[..., :1, :], x[..., :1, :], ["AG"], "ivifzoo")["AG"]).all()


def test_batches_are_scored_image_by_image():
    f, a, b = (torch.cat([scene(24, 30, s), scene(24, 30, s + 9)]) for s in (1, 2, 3))
    m = compute_metrics(f, a, b, ["VIF", "Qcb", "NMI"], "ivifzoo")
    one = compute_metrics(f[1:], a[1:], b[1:], ["VIF", "Qcb", "NMI"], "ivifzoo")
    assert all(m[k][1] == one[k][0] for k in one)


# --- the standard definitions (fusion.metrics.survey) -----------------------------------------------------------


def _tsallis_loops(x: np.ndarray, y: np.ndarray, q: float) -> float:
    """Tsallis MI by its definition, bin by bin."""
    joint = np.zeros((256, 256))
    for u, v in zip(x.ravel(), y.ravel(), strict=True):
        joint[u, v] += 1
    joint /= joint.sum()
    px, py = joint.sum(1), joint.sum(0)
    s = sum(joint[i, j] ** q / (px[i] * py[j]) ** (q - 1) for i, j in zip(*np.nonzero(joint), strict=True))
    return (1 - s) / (1 - q)


def test_standard_definitions_known_values():
    x = scene(64, 72, 11)
    m = compute_metrics(x, x, x, ["NMI", "QNCIE", "Qy", "MS_SSIM"])
    assert m["NMI"].item() == pytest.approx(2.0) and m["QNCIE"].item() == pytest.approx(1.0, abs=1e-9)
    assert m["Qy"].item() == pytest.approx(1.0) and m["MS_SSIM"].item() == pytest.approx(1.0)
    flat = torch.full_like(x, 0.4)  # a constant F is independent of anything: Tsallis MI 0
    assert compute_metrics(flat, x, x * 0.5, ["TE"])["TE"].item() == pytest.approx(0.0, abs=1e-12)
    f, a, b = levels(1, 1, 12, 14, seed=12), levels(1, 1, 12, 14, seed=13), levels(1, 1, 12, 14, seed=14)
    lv = [(t[0, 0] * 255).round().int().numpy() for t in (f, a, b)]
    expect = _tsallis_loops(lv[1], lv[0], 1.85) + _tsallis_loops(lv[2], lv[0], 1.85)
    assert compute_metrics(f, a, b, ["TE"])["TE"].item() == pytest.approx(expect, rel=1e-10)


def test_qncie_uses_rank_bins_not_levels():
    """A monotone remapping of F keeps every rank, so QNCIE does not change; the survey code's linear version
    does."""
    f, a, b = scene(50, 60, 15), scene(50, 60, 16), scene(50, 60, 17)
    g = (f**3 * 255).round() / 255  # monotone on the levels present (ties kept as ties or broken the same way)
    std = [compute_metrics(t, a, b, ["QNCIE"])["QNCIE"].item() for t in (f, g)]
    zoo = [compute_metrics(t, a, b, ["QNCIE"], "ivifzoo")["QNCIE"].item() for t in (f, g)]
    assert std[0] == pytest.approx(std[1], abs=2e-3) and abs(zoo[0] - zoo[1]) > 10 * abs(std[0] - std[1])


@pytest.mark.parametrize("name", ["Qy", "MS_SSIM"])
def test_standard_definitions_have_gradients(name):
    f = scene(64, 64, 18).requires_grad_()
    out = compute_metrics(f, scene(64, 64, 19), scene(64, 64, 20), [name])[name]
    out.sum().backward()
    assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


@pytest.mark.parametrize("conv", ["vifb", "tang", "tang2022", "cddfuse"])
def test_added_metrics_are_available_by_name_under_published_conventions(conv):
    x, a, b = scene(40, 44, 21), scene(40, 44, 22), scene(40, 44, 23)
    names = ["NMI", "QNCIE", "TE", "Qy"] + ([] if conv == "tang" else ["MS_SSIM"])
    assert set(names) <= set(metric_names(conv, extra=True)) and not set(names) & set(metric_names(conv))
    ours = compute_metrics(x, a, b, names, conv)
    std = compute_metrics(x, a, b, names)
    assert all(torch.allclose(ours[k], std[k]) for k in names)


def test_evaluate_command_takes_the_convention(tmp_path, pair_dirs, capsys):
    ir_dir, vi_dir = pair_dirs
    fused = tmp_path / "fused" / "mean"
    fused.mkdir(parents=True)
    import cv2

    for p in sorted(ir_dir.iterdir()):
        cv2.imwrite(str(fused / f"{p.stem}.png"), cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) // 2 + 40)
    out = tmp_path / "scores.csv"
    rgbt(["evaluate", "--fused", str(tmp_path / "fused"), "--ir", str(ir_dir), "--vis", str(vi_dir)]
         + ["--convention", "ivifzoo", "--csv", str(out)])  # fmt: skip
    cap = capsys.readouterr()
    assert "convention: ivifzoo" in cap.out and "QNCIE" in cap.out
    # The pairs are small: the code's MS-SSIM stops on them, and the command says so.
    assert "MS_SSIM is undefined (NaN) on 3 image(s)" in cap.err
    rows = list(csv.DictReader(out.open()))
    assert {r["convention"] for r in rows} == {"ivifzoo"} and len(rows) == 3 * 21


def test_experiment_files_take_the_convention(tmp_path, pair_dirs):
    from fusion.experiment.spec import load_spec

    p = Path(tmp_path / "e.yaml")
    sets = f"datasets: [{{name: S, path: {pair_dirs[0].parent}}}]"
    p.write_text(f"name: t\nconvention: ivifzoo\nmetrics: [QNCIE, TE, VIF]\n{sets}\nmethods: [average]\n")
    spec = load_spec(p)
    assert spec.convention == "ivifzoo" and spec.metrics == ["QNCIE", "TE", "VIF"]


def test_references_command_refuses_an_unknown_code(tmp_path, capsys):
    assert rgbt(["experiment", "references", "--data", str(tmp_path), "--codes", "ivifzoo,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "ivifzoo" in err[0]
