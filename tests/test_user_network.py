"""A network of the user's own (examples/my_net.py, shown in docs/training.md) trains with the standard losses
through a config naming its class path, and scores in an experiment table beside the registered methods."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from fusion.cli import main as rgbt
from fusion.errors import RgbtError
from fusion.models import load_model, save_weights

REPO = Path(__file__).resolve().parents[1]


def test_the_docs_show_the_example_as_it_is():
    doc = (REPO / "docs" / "training.md").read_text()
    for f in ("examples/my_net.py", "examples/my_net.yaml", "examples/my_net_table.yaml"):
        body = (REPO / f).read_text()
        assert body.strip() in doc, f"docs/training.md does not show {f} as it is"
    assert len((REPO / "examples" / "my_net.py").read_text().splitlines()) <= 25


def test_own_network_trains_20_steps_and_scores_in_a_table(shared_data, tmp_path, monkeypatch, capsys):
    shared_data = shared_data.resolve()
    monkeypatch.syspath_prepend(str(REPO))  # examples.my_net, as PYTHONPATH=. does on the command line
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)  # runs/my_net of the config lands here
    code = rgbt(["fit", "--config", str(REPO / "examples" / "my_net.yaml"), "--data.data", str(shared_data),
                 "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"])  # fmt: skip
    ckpt = tmp_path / "runs" / "my_net" / "last.ckpt"
    assert code == 0 and ckpt.is_file()
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 20

    for sub in ("ir", "vi"):  # three TNO pairs keep the table quick
        (tmp_path / "set" / sub).mkdir(parents=True)
        for name in ("01.png", "02.png", "03.png"):
            shutil.copy(shared_data / "tno" / sub / name, tmp_path / "set" / sub / name)
    exp = yaml.safe_load((REPO / "examples" / "my_net_table.yaml").read_text())
    exp["datasets"] = [{"name": "TNO", "path": str(tmp_path / "set")}]
    exp["methods"] = ["average", *[m for m in exp["methods"] if isinstance(m, dict)]]
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(exp))
    assert rgbt(["experiment", "run", str(tmp_path / "e.yaml"), "--out", str(tmp_path / "exp"), "--devices", "1"]) == 0
    table = (tmp_path / "exp" / "tables" / "tables.md").read_text()
    assert "| my_net (3) |" in table and "| average (3) |" in table
    rows = list(csv.DictReader((tmp_path / "exp" / "scores.csv").open()))
    mine = [float(r["value"]) for r in rows if r["method"] == "my_net"]
    assert len(mine) == 3 * 5 and all(math.isfinite(v) for v in mine)


def test_a_weight_file_alone_never_imports_code(tmp_path, monkeypatch):
    """The class a checkpoint names is imported only when the caller names the same class."""
    monkeypatch.syspath_prepend(str(REPO))
    from examples.my_net import MyNet

    f = save_weights(MyNet(width=8), tmp_path / "mine.pt")
    with pytest.raises(RgbtError, match="a network of your own"):
        load_model(f)
    with pytest.raises(RgbtError, match="not examples.my_net.Other"):
        load_model(f, class_path="examples.my_net.Other")
    with pytest.raises(RgbtError, match="network of your own .*not densefuse"):
        load_model(f, expect="densefuse")
    net = load_model(f, class_path="examples.my_net.MyNet")
    assert isinstance(net, MyNet) and net.config == {"width": 8}
    vis, ir = torch.rand(1, 1, 37, 53), torch.rand(1, 1, 37, 53)
    out = net(vis, ir)
    assert out.shape == (1, 1, 37, 53) and torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
