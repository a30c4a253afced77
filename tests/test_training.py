"""Training: a fast_dev_run of every config, exact mid-epoch resume, DDP on CPU (gloo), export and fuse."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import pytest
import torch

from fusion.cli import main as rgbt
from fusion.sampling import ResumableSampler
from fusion.train.cli import make_cli
from tests.conftest import synth_pair

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "experiments").glob("*.yaml"))
TRAIN_CONFIGS = [c for c in CONFIGS if c.stem not in ("demo", "readme_figure") and not c.stem.startswith("detect")]
PAPER_CONFIGS = sorted((ROOT / "experiments" / "paper").glob("*.yaml"))  # the papers' schedules, for a GPU


@pytest.fixture
def train_set(tmp_path) -> Path:
    """Four 96x96 synthetic pairs in ir/ + vi/."""
    root = tmp_path / "train"
    (root / "ir").mkdir(parents=True)
    (root / "vi").mkdir()
    for i in range(4):
        vis, ir = synth_pair(96, 96, i, colour=True)
        cv2.imwrite(str(root / "ir" / f"{i}.png"), ir)
        cv2.imwrite(str(root / "vi" / f"{i}.png"), vis)
    return root


@pytest.fixture(autouse=True)
def no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


def fit_args(cfg: Path, data: Path, out: Path, *extra: str) -> list[str]:
    patch = "84" if "ddcgan" in cfg.stem else "32"
    return [
        "fit", "--config", str(cfg),
        f"--data.train=[{data}]", f"--data.val=[{data}]", "--data.val_limit", "1",
        "--data.patch_size", patch, "--data.batch_size", "2", "--data.num_workers", "0",
        "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.callbacks.init_args.dirpath", str(out / "ckpt"), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("cfg", TRAIN_CONFIGS + PAPER_CONFIGS, ids=lambda p: p.parent.name + "/" + p.stem)
def test_fast_dev_run_every_config(cfg, train_set, tmp_path):
    extra = ["--trainer.fast_dev_run", "1"]
    if cfg.parent.name == "paper":  # a paper schedule runs here as given, on one CPU device and a small patch
        extra += ["--trainer.devices", "1", "--trainer.strategy", "auto", "--data.patches_per_image", "2"]
    if "decoder" in cfg.stem:  # stage 2 starts from a stage-1 file; make one so the test needs no release
        from fusion.models import DenseFuse, save_weights

        extra += ["--model.init_args.init_weights", str(save_weights(DenseFuse(), tmp_path / "stage1.pt"))]
    if "finetune" in cfg.stem:  # phase 2 starts from a phase-1 generator
        from fusion.models import DDcGANGenerator, save_weights

        extra += ["--model.init_args.init_weights", str(save_weights(DDcGANGenerator(), tmp_path / "phase1.pt"))]
    cli = make_cli(fit_args(cfg, train_set, tmp_path / "run", *extra))
    assert cli.trainer.state.finished
    assert cli.trainer.global_step >= 1


def _fit_densefuse(train_set, out, max_steps, resume=None):
    args = fit_args(
        ROOT / "experiments" / "densefuse.yaml", train_set, out,
        "--trainer.max_steps", str(max_steps), "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0", "--trainer.callbacks.init_args.every_n_train_steps", "1",
        "--data.patches_per_image", "8", "--model.init_args.lr", "1e-3",
    )  # fmt: skip
    if resume:
        args += ["--ckpt_path", str(resume)]
    return make_cli(args)


def test_resume_mid_epoch_loses_nothing(train_set, tmp_path):
    # 4 images x 8 patches / batch 2 = 16 batches per epoch: step 3 is mid-epoch
    whole = _fit_densefuse(train_set, tmp_path / "a", 6)
    _fit_densefuse(train_set, tmp_path / "b", 3)  # as if killed after step 3
    last = tmp_path / "b" / "ckpt" / "last.ckpt"
    resumed = _fit_densefuse(train_set, tmp_path / "b", 6, resume=last)
    assert resumed.trainer.global_step == whole.trainer.global_step == 6
    a, b = whole.model.model.state_dict(), resumed.model.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), "resumed run diverged from the uninterrupted one"


def test_sampler_shards_and_resumes(monkeypatch):
    s = ResumableSampler(10, seed=3)
    s.set_epoch(1)
    full = list(s)
    assert sorted(full) == list(range(10)) and full != list(range(10))
    s.resume_epoch, s.start = 1, 4
    assert list(s) == full[4:]
    assert list(s) == full  # the resume point applies once
    monkeypatch.setattr("fusion.sampling._rank_world", lambda: (1, 3))
    assert list(s) == full[:9][1::3] and len(s) == 3


@pytest.mark.slow
def test_ddp_two_processes_gloo(train_set, tmp_path):
    import pytorch_lightning as pl

    from fusion.datamodule import FusionDataModule
    from fusion.models import DenseFuse
    from fusion.train import FusionModule
    from fusion.train.base import CloseProcessGroup

    pl.seed_everything(0)
    module = FusionModule(DenseFuse(), lr=1e-3, val_metrics=["EN"])
    data = FusionDataModule([str(train_set)], [str(train_set)], patch_size=32, batch_size=2, val_limit=1)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=2, use_distributed_sampler=False,
        limit_val_batches=1, val_check_interval=2, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
        callbacks=[CloseProcessGroup()],
    )  # fmt: skip
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer.fit(module, data)
    assert trainer.state.finished and trainer.world_size == 2
    after = module.model.state_dict()  # rank 0's weights come back to the launching process
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert "val/EN" in trainer.callback_metrics


def test_export_and_fuse_with_checkpoint(train_set, tmp_path, pair_dirs, capsys):
    _fit_densefuse(train_set, tmp_path / "r", 2)
    ckpt = tmp_path / "r" / "ckpt" / "last.ckpt"
    ir, vi = pair_dirs
    out = tmp_path / "fused"
    assert rgbt(["fuse", "--method", "densefuse", "--ckpt", str(ckpt), "--ir", str(ir), "--vis", str(vi),
                 "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    img = cv2.imread(str(out / "p0.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (37, 53, 3)  # colour comes back through CbCr
    w = tmp_path / "w.pt"
    assert rgbt(["export", "--ckpt", str(ckpt), "--out", str(w), "--meta", "steps=2"]) == 0
    assert rgbt(["export", "--ckpt", str(ckpt), "--out", str(w)]) == 2  # no overwrite without the flag
    assert rgbt(["fuse", "--method", "ddcgan", "--ckpt", str(w), "--ir", str(ir), "--vis", str(vi),
                 "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    assert "holds a densefuse model" in capsys.readouterr().err
    assert rgbt(["fuse", "--method", "average", "--ckpt", str(w), "--ir", str(ir), "--vis", str(vi),
                 "--out", str(tmp_path / "y")]) == 2  # fmt: skip


def test_bad_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: fusion.train.NoSuchModule\n")
    assert rgbt(["fit", "--config", str(bad)]) == 2
    assert "rgbt fit: error:" in capsys.readouterr().err


def test_cddfuse_runs_both_phases(train_set, tmp_path):
    """Phase I (reconstruction + decomposition) for one step, then phase II (fusion) with the fusion layers."""
    cfg = ROOT / "experiments" / "cddfuse.yaml"
    out = tmp_path / "run"
    extra = ["--trainer.max_steps", "2", "--model.init_args.phase1_steps", "1", "--trainer.log_every_n_steps", "1",
             "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0"]  # fmt: skip
    cli = make_cli(fit_args(cfg, train_set, out, *extra))
    assert cli.trainer.global_step == 2
    rows = list(csv.DictReader((next(out.rglob("metrics.csv"))).open()))
    phases = [float(r["train/phase"]) for r in rows if r.get("train/phase")]
    assert phases == [1.0, 2.0]
    phase2 = next(r for r in rows if r.get("train/phase") == "2.0")
    assert all(phase2[f"train/{k}"] for k in ("int", "grad", "ssim", "decomp", "cc_base", "cc_detail"))


def test_quiet_lightning_silences_the_banner(capfd):
    """detect compare builds one Trainer per detector; none may print the accelerator banner or tips."""
    import pytorch_lightning as pl

    from fusion.train.cli import quiet_lightning

    quiet_lightning()
    pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    out, err = capfd.readouterr()
    assert "GPU available" not in out + err and "Tip" not in out + err


def test_ddcgan_authors_module_alternates_discriminator_and_generator_batches():
    """DDcGANAuthorsModule: the even batch steps both discriminators, the odd one the generator; every solver run
    advances the shared decay counter and the weights stay within the clip."""
    import pytorch_lightning as pl

    from fusion.losses import DDcGANLoss
    from fusion.models import DDcGANGenerator
    from fusion.train import DDcGANAuthorsModule

    torch.manual_seed(0)
    batches = [{"vis": torch.rand(2, 1, 16, 16), "ir": torch.rand(2, 1, 16, 16)} for _ in range(2)]
    module = DDcGANAuthorsModule(DDcGANGenerator(authors=True), DDcGANLoss(), patch_size=16, clip=0.5)
    g_before = [p.detach().clone() for p in module.model.parameters()]
    d_before = [p.detach().clone() for p in module.d_vis.parameters()]
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)  # fmt: skip
    trainer.fit(module, torch.utils.data.DataLoader(batches, batch_size=None))
    m = trainer.callback_metrics
    assert m["train/d_vis_steps"] >= 1 and m["train/g_steps"] >= 1
    assert int(module.solver_runs) >= 3  # D_vis, D_ir, then G at least once
    assert any(not torch.equal(a, b) for a, b in zip(g_before, module.model.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, module.d_vis.parameters(), strict=True))
    assert all(p.abs().max() <= 0.5 for p in module.parameters() if p.requires_grad)


def test_tf_rmsprop_is_tensorflow_1s_update():
    """ms starts at 1 and epsilon sits inside the square root: two steps by hand."""
    from fusion.train.optim import TFRMSprop

    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = TFRMSprop([w], lr=0.1)
    ms, want = torch.ones(2), torch.tensor([1.0, -2.0])
    for g in (torch.tensor([3.0, -0.5]), torch.tensor([1.0, 2.0])):
        w.grad = g.clone()
        opt.step()
        ms = 0.9 * ms + 0.1 * g * g
        want = want - 0.1 * g / torch.sqrt(ms + 1e-10)
        assert torch.allclose(w.detach(), want, atol=1e-7)
