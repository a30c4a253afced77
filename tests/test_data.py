import pytest
import pytorch_lightning as pl
import torch

from fusion.data import PairDataset, PatchDataset, dataset_pairs, find_pairs, resolve_data_root
from fusion.datamodule import FusionDataModule
from fusion.errors import RgbtError


def test_find_pairs_by_stem(pair_dirs):
    ir, vi = pair_dirs
    pairs = find_pairs(ir, vi)
    assert [p.name for p in pairs] == ["p0", "p1", "p2"]
    assert pairs[2].vis.suffix == ".jpg" and pairs[2].ir.suffix == ".png"
    assert [p.name for p in dataset_pairs(ir.parent)] == ["p0", "p1", "p2"]


def test_unpaired_names_are_an_error(pair_dirs):
    ir, vi = pair_dirs
    (vi / "p1.png").rename(vi / "other.png")
    with pytest.raises(RgbtError, match="no partner"):
        find_pairs(ir, vi)


def test_missing_and_empty_folders(tmp_path, pair_dirs):
    ir, _ = pair_dirs
    with pytest.raises(RgbtError, match="no such folder"):
        find_pairs(ir, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RgbtError, match="no images"):
        find_pairs(ir, tmp_path / "empty")
    with pytest.raises(RgbtError, match="no infrared folder"):
        dataset_pairs(tmp_path / "empty")


def test_data_root_order(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "set").mkdir(parents=True)
    (b / "set").mkdir(parents=True)
    monkeypatch.setenv("RGBT_DATA", str(b))
    assert resolve_data_root(a) == a  # --data wins
    assert resolve_data_root() == b  # then $RGBT_DATA
    monkeypatch.setenv("RGBT_DATA", str(tmp_path / "missing"))
    with pytest.raises(RgbtError, match="RGBT_DATA"):
        resolve_data_root()
    monkeypatch.delenv("RGBT_DATA")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "tno").mkdir(parents=True)
    assert resolve_data_root().resolve() == (tmp_path / "data").resolve()  # then ./data


def test_pair_dataset(pair_dirs):
    ds = PairDataset(pair_dirs[0].parent)
    item = ds[0]
    assert item["vis"].shape == (3, 37, 53) and item["ir"].shape == (1, 37, 53) and item["name"] == "p0"
    assert ds[1]["vis"].shape == (1, 64, 48)  # grey visible stays grey
    assert PairDataset(pair_dirs[0].parent, vis_grey=True)[0]["vis"].shape == (1, 37, 53)


def test_patch_dataset_is_deterministic_and_pads(pair_dirs):
    ds = PatchDataset(pair_dirs[0].parent, patch_size=48, patches_per_image=2, seed=3)
    assert len(ds) == 6
    a, b = ds[0], ds[0]
    assert a["vis"].shape == (1, 48, 48) and a["ir"].shape == (1, 48, 48)
    assert torch.equal(a["vis"], b["vis"]) and torch.equal(a["ir"], b["ir"])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["vis"], a["vis"])  # a new epoch draws new crops


def test_datamodule_batches(pair_dirs):
    root = pair_dirs[0].parent.parent
    dm = FusionDataModule(train=["set"], val=["set"], data=str(root), patch_size=32, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["vis"].shape == (4, 1, 32, 32) and batch["ir"].shape == (4, 1, 32, 32)
    val = next(iter(dm.val_dataloader()))
    assert val["vis"].shape[:2] == (1, 1)
    assert isinstance(dm, pl.LightningDataModule)
