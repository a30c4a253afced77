"""Detection: boxes and NMS, the FCOS model and loss, learning on a synthetic set, COCO scoring against
pycocotools, datasets and labels, the LightningModule, and the CLI."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from detection.boxes import batched_nms, giou_loss, pairwise_iou, reference_nms
from detection.coco import Detections, Target, coco_map
from detection.data import DetectionSet, augment, read_coco_json, read_yolo
from detection.loss import FCOSLoss, fcos_targets
from detection.model import FCOS, TwoStreamFCOS
from detection.synthetic import synthetic_pair
from fusion.errors import RgbtError


@pytest.fixture(autouse=True)
def no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


def random_boxes(n, seed, span=60.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * span
    wh = torch.rand(n, 2, generator=g) * 25 + 1
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("seed", range(5))
def test_kornia_nms_equals_reference(seed):
    b, s, c = random_boxes(80, seed)
    assert torch.equal(batched_nms(b, s, c, 0.5), reference_nms(b, s, c, 0.5))
    # class-aware: identical boxes of two classes both survive
    two = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    assert len(batched_nms(two, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5)) == 2
    assert len(batched_nms(two, torch.tensor([0.9, 0.8]), torch.tensor([1, 1]), 0.5)) == 1


def test_iou_and_giou_known_values():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10]])
    assert pairwise_iou(a, b).item() == pytest.approx(50 / 150)
    assert giou_loss(a, a).item() == pytest.approx(0.0)
    far = torch.tensor([[20.0, 0, 30, 10]])  # disjoint: IoU 0, hull 30x10, union 200
    assert giou_loss(a, far).item() == pytest.approx(1 + (300 - 200) / 300)
    p = a.clone().requires_grad_()
    giou_loss(p, b).sum().backward()
    assert p.grad.abs().sum() > 0


def test_fcos_targets_centre_sampling_and_smallest_box():
    pts = torch.tensor([[20.0, 20.0], [60.0, 60.0], [21.0, 21.0]])
    st = torch.full((3,), 8.0)
    rg = torch.tensor([[0.0, 1e9]]).expand(3, 2)
    boxes = torch.tensor([[0.0, 0, 40, 40], [10.0, 10, 30, 30]])
    label, assigned = fcos_targets(pts, st, rg, boxes, torch.tensor([0, 2]))
    assert label.tolist() == [2, -1, 2]  # inside both: the smaller box wins; (60, 60) is outside
    assert torch.equal(assigned[0], boxes[1])


@pytest.mark.parametrize("make", [lambda: FCOS(1, 3, 8), lambda: FCOS(4, 2, 8), lambda: TwoStreamFCOS(3, 3, 8)])
def test_model_contract(make):
    torch.manual_seed(0)
    m = make()
    c = m.in_channels
    x = torch.rand(2, c, 75, 101, requires_grad=True)  # odd sizes
    out = m(x)
    assert [o[0].shape[-2:] for o in out] == [(10, 13), (5, 7), (3, 4)]
    t = [
        Target(torch.tensor([[5.0, 5, 40, 30]]), torch.tensor([1]), (75, 101)),
        Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), (75, 101)),
    ]
    terms = FCOSLoss()(out, t)
    assert set(terms) == {"cls", "box", "ctr", "total"} and all(torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # a fusion network can train through it
    assert all(p.grad is not None for p in m.parameters())
    m.eval()
    d = m.predict(x.detach())
    assert len(d) == 2 and d[0].boxes.shape[1] == 4
    assert (d[0].boxes[:, 2] <= 101).all() and (d[0].boxes[:, 3] <= 75).all()


def test_learns_synthetic_set():
    """The must-show: mAP@0.5 above 0.9 on held-out synthetic images."""
    torch.manual_seed(0)
    train = [synthetic_pair(i) for i in range(64)]
    test = [synthetic_pair(1000 + i) for i in range(16)]
    m, loss = FCOS(1, 3, width=8), FCOSLoss()
    opt = torch.optim.AdamW(m.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [180], 0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(240):
        idx = torch.randint(0, len(train), (8,), generator=g).tolist()
        x = torch.stack([train[i][1] for i in idx])
        l = loss(m(x), [train[i][2] for i in idx])["total"]
        opt.zero_grad()
        l.backward()
        opt.step()
        sched.step()
    m.eval()
    scores = coco_map([t for _, _, t in test], m.predict(torch.stack([ir for _, ir, _ in test])), ["a", "b", "c"])
    assert scores["mAP50"] > 0.9, scores


def test_coco_map_equals_pycocotools():
    pytest.importorskip("pycocotools")
    g = torch.Generator().manual_seed(3)
    targets, dets = [], []
    for i in range(15):
        b, _, c = random_boxes(int(torch.randint(1, 6, (1,), generator=g)), 100 + i, span=200)
        targets.append(Target(b, c, (256, 256)))
        fb, fs, fc = random_boxes(3, 200 + i, span=200)
        noisy = b + torch.randn(b.shape, generator=g) * 2
        dets.append(
            Detections(torch.cat([noisy, fb]), torch.cat([torch.rand(len(b), generator=g), fs]), torch.cat([c, fc]))
        )
    a = coco_map(targets, dets, ["p", "b", "c"])
    r = coco_map(targets, dets, ["p", "b", "c"], backend="pycocotools")
    assert a.keys() == r.keys()
    for k in a:
        assert (math.isnan(a[k]) and math.isnan(r[k])) or a[k] == pytest.approx(r[k], abs=1e-12), k
    perfect = coco_map(
        targets, [Detections(t.boxes, torch.ones(len(t.labels)), t.labels) for t in targets], ["p", "b", "c"]
    )
    assert perfect["mAP"] == pytest.approx(1.0) and perfect["mAP50"] == pytest.approx(1.0)


def test_yolo_and_coco_labels(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.2 0.2\n")
    t = read_yolo(f, (100, 200), 3)
    assert t.labels.tolist() == [1, 0]
    assert torch.allclose(t.boxes[0], torch.tensor([80.0, 30, 120, 70]))
    assert torch.allclose(t.boxes[1], torch.tensor([0.0, 0, 40, 20]))  # clipped to the image
    f.write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(RgbtError, match="line 1: class 7"):
        read_yolo(f, (100, 200), 3)
    f.write_text("0 0.5 oops\n")
    with pytest.raises(RgbtError, match="a.txt line 1"):
        read_yolo(f, (100, 200), 3)
    j = tmp_path / "c.json"
    j.write_text(
        json.dumps(
            {
                "images": [{"id": 5, "file_name": "x/img1.png", "height": 10, "width": 20}],
                "annotations": [{"image_id": 5, "category_id": 9, "bbox": [1, 2, 3, 4]}],
                "categories": [{"id": 9, "name": "car"}, {"id": 3, "name": "person"}],
            }
        )
    )
    targets, classes = read_coco_json(j)
    assert classes == ["person", "car"] and targets["img1"].labels.tolist() == [1]
    assert torch.equal(targets["img1"].boxes, torch.tensor([[1.0, 2, 4, 6]]))
    j.write_text("{not json")
    with pytest.raises(RgbtError, match="c.json"):
        read_coco_json(j)


def test_augment_keeps_modalities_and_boxes_in_step():
    x = torch.zeros(4, 60, 80)
    x[:, 10:30, 20:50] = 1.0  # the object in all four channels
    t = Target(torch.tensor([[20.0, 10, 50, 30]]), torch.tensor([0]), (60, 80))
    for seed in range(10):
        y, u = augment(x, t, torch.Generator().manual_seed(seed))
        assert y.shape == x.shape and torch.equal(y[0], y[3])
        for b in u.boxes:
            x0, y0, x1, y1 = (int(round(float(v))) for v in b)
            inside = y[0, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1]
            assert inside.numel() and inside.mean() > 0.9  # the box still covers the object


def test_msrs_modes(shared_data):
    root = shared_data / "msrs"
    for mode, c in (("vis", 3), ("ir", 1), ("early", 4), ("two_stream", 4)):
        ds = DetectionSet(root, mode, scale=0.5, names=["00004N", "00055D"])
        x, t = ds[0]
        assert x.shape == (c, 240, 320) and t.size == (240, 320) and t.name == "00004N"
        assert ds.classes == ["person", "bicycle", "car"] and len(t.boxes) > 0
    assert len(DetectionSet(root, "ir")[0][1].boxes) != len(DetectionSet(root, "vis")[0][1].boxes)  # views
    with pytest.raises(RgbtError, match="needs --fused"):
        DetectionSet(root, "fused")
    with pytest.raises(RgbtError, match="no pair named"):
        DetectionSet(root, "vis", names=["nope"])


def test_lightning_fit_test_predict_and_cli(shared_data, tmp_path, capsys):
    from fusion.cli import main as rgbt

    cfg = "experiments/detect_msrs.yaml"
    common = [
        "--config",
        cfg,
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks.init_args.dirpath",
        str(tmp_path / "ckpt"),
        "--model.init_args.model.init_args.width",
        "8",
        "--data.scale",
        "0.25",
    ]
    assert (
        rgbt(
            [
                "detect",
                "fit",
                *common,
                "--trainer.max_steps",
                "2",
                "--trainer.check_val_every_n_epoch",
                "1",
                "--trainer.logger",
                "false",
            ]
        )
        == 0
    )
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.is_file()
    trained_with = (tmp_path / "config.yaml").read_text()  # fit records its config beside the run
    out = tmp_path / "pred"
    assert (
        rgbt(
            [
                "detect",
                "predict",
                *common,
                "--ckpt_path",
                str(ckpt),
                "--model.init_args.predict_out",
                str(out),
                "--trainer.logger",
                "false",
            ]
        )
        == 0
    )
    assert len(list(out.glob("*.png"))) == 5 and json.loads((out / "detections.json").read_text()) is not None
    assert (tmp_path / "config.yaml").read_text() == trained_with, "predict replaced the record of the fit"
    capsys.readouterr()
    again = ["detect", "predict", *common, "--ckpt_path", str(ckpt), "--model.init_args.predict_out", str(out)]
    before = {f: f.stat().st_mtime_ns for f in out.iterdir()}
    assert rgbt([*again, "--trainer.logger", "false"]) == 2  # earlier predictions stay unless asked
    assert "already holds files" in capsys.readouterr().err
    assert {f: f.stat().st_mtime_ns for f in out.iterdir()} == before
    assert rgbt([*again, "--trainer.logger", "false", "--model.init_args.overwrite", "true"]) == 0
    # checkpoint mistakes are one line each: another width, a truncated file, a missing file
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:4096])
    for path, width, messages in [
        (ckpt, "16", ["does not fit the model in the config", "config.yaml) or the same --model options"]),
        (truncated, "8", ["cannot be read (truncated or corrupt)"]),
        (tmp_path / "missing.ckpt", "8", ["no such checkpoint"]),
    ]:
        args = [*common, "--model.init_args.model.init_args.width", width, "--trainer.logger", "false"]
        assert rgbt(["detect", "test", *args, "--ckpt_path", str(path)]) == 2
        err = capsys.readouterr().err
        assert all(m in err for m in messages) and str(path) in err and "Traceback" not in err
    assert (
        rgbt(
            [
                "detect",
                "fit",
                "--config",
                cfg,
                "--data.mode",
                "nonsense",
                "--trainer.fast_dev_run",
                "true",
                "--trainer.logger",
                "false",
            ]
        )
        == 2
    )
    assert "unknown detection input mode" in capsys.readouterr().err


def test_compare_two_folds(shared_data, tmp_path, capsys):
    from fusion.cli import main as rgbt

    args = [
        "detect",
        "compare",
        "--inputs",
        "ir,fused",
        "--methods",
        "average",
        "--folds",
        "2",
        "--steps",
        "2",
        "--width",
        "8",
        "--scale",
        "0.25",
        "--out",
        str(tmp_path),
    ]
    assert rgbt(args) == 0
    table = (tmp_path / "compare.md").read_text()
    assert "| ir | 2 |" in table and "| fused:average | 2 |" in table and "±" in table
    assert len(list((tmp_path / "fused" / "average").glob("*.png"))) == 20
    assert rgbt(args) == 2 and "exists" in capsys.readouterr().err  # no silent overwrite
    # a dataset's own split, over two seeds (the lists beside the output folder: an --out holding them is refused)
    lists = tmp_path.parent / f"{tmp_path.name}_lists"
    lists.mkdir()
    (lists / "train.txt").write_text("00004N\n00055D.png\n00008N\n")
    (lists / "test.txt").write_text("00012N\n00081D\n")
    split = ["--train-list", str(lists / "train.txt"), "--test-list", str(lists / "test.txt")]
    args = [*args[:4], "--seeds", "2", *split, *args[4:], "--overwrite"]
    assert rgbt(args) == 0
    assert "| ir | 2 |" in (tmp_path / "compare.md").read_text()
    (lists / "test.txt").write_text("nope\n")
    assert rgbt(args) == 2 and "nope is not in the dataset" in capsys.readouterr().err


def test_wandb_offline_run_records_losses_map_and_box_images(shared_data, tmp_path, monkeypatch, capfd):
    """The default loggers with W&B offline (no account): loss terms, mAP and the box panels reach the run."""
    from fusion.cli import main as rgbt

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = ["detect", "fit", "--config", "experiments/detect_msrs.yaml"]
    args += ["--trainer.default_root_dir", str(tmp_path / "run")]
    args += ["--trainer.callbacks.init_args.dirpath", str(tmp_path)]
    args += ["--trainer.enable_progress_bar", "false", "--model.init_args.model.init_args.width", "8"]
    args += ["--data.scale", "0.25", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    args += ["--trainer.log_every_n_steps", "1", "--trainer.check_val_every_n_epoch", "1"]
    assert rgbt([*args, "--trainer.num_sanity_val_steps", "0"]) == 0
    err = capfd.readouterr().err
    assert "anonymous" not in err and "GPU available" not in err, err[-2000:]  # no notices on every run
    (run,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    panels = sorted((run / "files" / "media" / "images" / "val").glob("boxes*.png"))
    assert len(panels) == 2  # model.panels
    for f in panels:  # 8-bit images of the scene (not [0, 1] values cast to 0 and 1), ground truth in white
        img = cv2.imread(str(f))
        assert img.shape == (120, 160, 3) and img.max() == 255 and np.unique(img).size > 50, f
    history = next(run.glob("run-*.wandb")).read_bytes()  # W&B's own record file: keys are stored as text
    for key in (b"train/total", b"train/cls", b"val/mAP50", b"val/mAP", b"val/AP50/person", b"val/boxes0"):
        assert key in history, key
    assert (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").is_file()  # the CSV logger beside it
