"""The CLI on the real sample data in ../shared/data (skipped when absent, a failure under CI)."""

import csv

import cv2
import pytest

from fusion.cli import main
from fusion.data import dataset_dir, dataset_pairs
from fusion.demo import DemoConfig
from fusion.metrics import metric_names


@pytest.mark.slow
@pytest.mark.parametrize("name,colour", [("tno", False), ("roadscene/test", True)])
def test_fuse_and_evaluate_real_sets(shared_data, tmp_path, capsys, name, colour):
    d = dataset_dir(name, shared_data)
    pairs = dataset_pairs(d)
    out = tmp_path / "fused" / "laplacian"
    assert (
        main(["fuse", "--method", "laplacian", "--ir", str(d / "ir"), "--vis", str(d / "vi"), "--out", str(out)]) == 0
    )
    for p in pairs:
        src = cv2.imread(str(p.vis), cv2.IMREAD_UNCHANGED)
        fused = cv2.imread(str(out / f"{p.name}.png"), cv2.IMREAD_UNCHANGED)
        assert fused.shape[:2] == src.shape[:2]
        assert (fused.ndim == 3) == colour
    assert len(list(out.glob("*.png"))) == len(pairs)
    csv_path = tmp_path / "s.csv"
    args = ["evaluate", "--fused", str(out), "--ir", str(d / "ir"), "--vis", str(d / "vi"), "--csv", str(csv_path)]
    assert main(args) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == len(metric_names()) * len(pairs)
    en = [float(r["value"]) for r in rows if r["metric"] == "EN"]
    assert all(5 < v < 8 for v in en)
    assert "| laplacian (" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_on_real_data(shared_data, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--data", str(shared_data), "--out", str(out), "--limit", "2"]) == 0
    stdout = capsys.readouterr().out
    for ds in ("tno", "roadscene/test", "msrs"):
        assert f"### {ds} (2 pairs)" in stdout
    fig = cv2.imread(str(out / "comparison.png"))
    assert fig is not None and fig.shape[0] > 3 * 180 and fig.shape[1] > 7 * 100
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 3 * 2 * len(DemoConfig().methods) * len(
        DemoConfig().metrics
    )  # datasets x pairs x methods x metrics
    assert {r["convention"] for r in rows} == {"standard"}
