"""scripts/learning_curves.py: the segments' CSV logs make one curve, and the figure draws it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "learning_curves.py"


def _load():
    spec = importlib.util.spec_from_file_location("learning_curves", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_segments_merge_into_one_curve_and_plot(tmp_path, monkeypatch):
    lc = _load()
    monkeypatch.setattr(lc, "RUNS", tmp_path)
    monkeypatch.setattr(lc, "CURVES_CSV", tmp_path / "fig" / "curves.csv")
    monkeypatch.setattr(lc, "AUTHORS_JSON", tmp_path / "fig" / "authors.json")
    head = "epoch,step,train/loss,val/VIF,val/Qabf,val/SSIM\n"
    logs = tmp_path / "cddfuse" / "logs"
    for version, rows in ((0, ["0,5,0.9,,,", "0,99,,0.40,0.30,0.60"]), (1, ["0,199,,0.45,0.35,0.62", "0,150,0.5,,,"])):
        (logs / f"version_{version}").mkdir(parents=True)
        (logs / f"version_{version}" / "metrics.csv").write_text(head + "\n".join(rows) + "\n")
    curve = lc.read_curve("cddfuse")
    assert curve == {100: {"VIF": 0.40, "Qabf": 0.30, "SSIM": 0.60}, 200: {"VIF": 0.45, "Qabf": 0.35, "SSIM": 0.62}}
    (tmp_path / "fig").mkdir()
    authors = '{"cddfuse": {"weights": "a", "VIF": 0.5, "Qabf": 0.4, "SSIM": 0.7}}'
    (tmp_path / "fig" / "authors.json").write_text(authors)
    table = lc.plot()
    assert "| cddfuse | 200 | 0.400 / 0.450 / 0.450 | 0.500 |" in table
    svg = (tmp_path / "fig" / "curves.svg").read_text()
    assert svg.count("<polyline") == 3 and svg.count("stroke-dasharray") >= 3  # one curve, one authors' line a panel
    assert (tmp_path / "fig" / "curves.csv").read_text().splitlines()[1] == "cddfuse,100,0.4000,0.3000,0.6000"


def test_plot_refuses_without_runs(tmp_path, monkeypatch):
    lc = _load()
    monkeypatch.setattr(lc, "RUNS", tmp_path)
    monkeypatch.setattr(lc, "CURVES_CSV", tmp_path / "fig" / "curves.csv")
    import pytest

    with pytest.raises(SystemExit, match="no validation scores"):
        lc.plot()
    assert not (tmp_path / "fig").exists()
