"""Our training steps against the authors' training code: loss terms, gradients and one optimiser step.

Each fixture (``fixtures/train_eq/<model>_step.npz``, README beside it) holds a fixed batch of real crops, the
weights before the step, the authors' loss terms, every parameter's gradient and the weights after one optimiser
step, as the authors' own training code computed them (run outside the project).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from train_eq_util import fixed_weights, project, rel_from_projections

from fusion.color import split_luma
from fusion.losses import CDDFuseLoss, DDcGANLoss, FusionLoss, ReconstructionLoss
from fusion.models import CDDFuse, DDcGANGenerator, DenseFuse, SeAFusion, SwinFusion
from fusion.models.cddfuse import convert_official
from fusion.models.zoo import FAMILIES
from fusion.train import AutoencoderModule, CDDFuseModule, FusionModule
from fusion.train.ddcgan_authors import DDcGANAuthorsModule
from fusion.train.ema import EMA

FIX = Path(__file__).parent / "fixtures" / "train_eq"


def _part(npz, prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): torch.from_numpy(npz[k]) for k in npz.files if k.startswith(prefix)}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative difference of two tensors: ||a - b|| / ||b||."""
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def test_densefuse_stage1_matches_the_authors_training_step():
    """hli1221/densefuse-pytorch train_densefuse.py: MSE + 100 (1 - MS-SSIM) on 0-255 images, Adam 1e-4. Our
    AutoencoderModule with the authors' variant (``ReconstructionLoss(ssim="msssim")``, ``input_scale=255``)
    gives the same terms (1e-5), gradients (1e-4 per tensor) and weights after one step (1e-5)."""
    ref = np.load(FIX / "densefuse_step.npz")
    convert = FAMILIES["densefuse"].convert
    model = DenseFuse(official=True)  # the release's network: its final ReLU, NCHW arithmetic
    model.load_state_dict(convert({"": _part(ref, "before/")}))
    module = AutoencoderModule(model, ReconstructionLoss(100.0, ssim="msssim"), lr=float(ref["lr"]), input_scale=255.0)
    images = torch.from_numpy(ref["images"].astype(np.float32)) / 255  # our loader's [0, 1] images
    batch = {"vis": images[:2], "ir": images[2:]}  # the module stacks vis then ir: the authors' batch order

    x = torch.cat([batch["vis"], batch["ir"]]) * 255.0
    terms = module.loss(model.reconstruct(x), x)
    for ours, theirs in (("pixel", "pixel"), ("ssim", "ssim"), ("total", "total")):
        assert abs(float(terms[ours]) / float(ref[theirs]) - 1) < 1e-5, (ours, float(terms[ours]), float(ref[theirs]))

    opt = module.configure_optimizers()
    opt.zero_grad()
    terms["total"].backward()
    grads = convert({"": _part(ref, "grad/")})
    for name, p in model.named_parameters():
        assert rel(p.grad, grads[name]) < 1e-4, (name, rel(p.grad, grads[name]))
    opt.step()
    after = convert({"": _part(ref, "after/")})
    for name, v in model.state_dict().items():
        assert torch.allclose(v, after[name], rtol=1e-5, atol=1e-7), name


def test_the_ms_ssim_variant_is_the_authors_and_ours_stays_the_default():
    """The authors' MS-SSIM takes its last scale's SSIM four times; ours (the default) is plain SSIM."""
    torch.manual_seed(0)
    a, b = torch.rand(2, 1, 64, 64) * 255, torch.rand(2, 1, 64, 64) * 255
    assert ReconstructionLoss().ssim == "ssim"
    same = ReconstructionLoss(ssim="msssim")(a, a)
    assert float(same["ssim"]) < 1e-6 and float(same["pixel"]) == 0
    diff = ReconstructionLoss(ssim="msssim")(a, b)
    assert 0 < float(diff["ssim"]) < 1


def test_seafusion_fusion_loss_matches_the_authors_training_step():
    """SeAFusion's train_fusion (first round, no segmentation term): L_int + 10 L_grad with zero-padded Sobel
    (``FusionLoss(1, 10, 0, sobel_padding="zeros")``), Adam at the first epoch's 1e-3 x 0.75^-1, the network's
    Sobel kernels trained (``SeAFusion(train_sobel=True)``)."""
    ref = np.load(FIX / "seafusion_step.npz")
    convert = FAMILIES["seafusion"].convert
    torch.manual_seed(0)
    model = SeAFusion(train_sobel=True)  # the authors' Sobelxy kernels are conv weights, trained with the rest
    model.load_state_dict(convert({"": _part(ref, "before/")}))
    loss = FusionLoss(w_int=1.0, w_grad=10.0, w_ssim=0.0, sobel_padding="zeros")
    module = FusionModule(model, loss, lr=float(ref["lr"]))
    module.train()
    y = torch.from_numpy(ref["y"])  # the authors' Y (0.299 R + 0.587 G + 0.114 B); ours is kornia's, the same to 1e-7
    rgb = torch.from_numpy(ref["vis_rgb"]).permute(0, 3, 1, 2).float() / 255
    assert (split_luma(rgb)[0] - y).abs().max() < 1e-6
    ir = torch.from_numpy(ref["ir"]).float() / 255
    # the authors' RGB2YCrCb leaves Y a channel of a channels-last (N, 3, H, W) tensor, and the convolutions'
    # backward on that layout rounds differently from NCHW (5e-4 apart in the gradients of this train-mode
    # network): the same layout here gives their floats exactly
    y = torch.cat([y, torch.zeros_like(y), torch.zeros_like(y)], 1).contiguous(memory_format=torch.channels_last)[:, :1]
    terms = loss(model(y, ir), y, ir)
    for k in ("int", "grad", "total"):
        assert abs(float(terms[k]) / float(ref[k]) - 1) < 1e-5, (k, float(terms[k]), float(ref[k]))
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    opt.zero_grad()
    terms["total"].backward()
    grads = convert({"": _part(ref, "grad/")})
    for name, p in model.named_parameters():
        if name in grads:
            assert rel(p.grad, grads[name]) < 1e-4, (name, rel(p.grad, grads[name]))
        else:  # what the authors' forward never uses gets no gradient there either
            assert p.grad is None or not p.grad.any(), name
    opt.step()
    after = convert({"": _part(ref, "after/")})
    for name, v in model.state_dict().items():
        assert torch.allclose(v, after[name], rtol=1e-5, atol=1e-7), name


class _Grads(pl.Callback):
    """Keeps each parameter's gradient as the backward pass left it (Lightning clips after this hook) and the
    weights right after the step; seeds the random stream before the forward if ``seed`` is given."""

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seed is not None:
            torch.manual_seed(self.seed)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        params = pl_module.model.named_parameters()
        self.grads = {n: None if p.grad is None else p.grad.detach().clone() for n, p in params}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}


def _one_step(module: pl.LightningModule, batch: dict, seed: int | None = None, callbacks=(), **trainer_kwargs):
    """One optimiser step of ``module`` on ``batch`` through a real Trainer: (logged metrics, the raw gradients,
    the weights after the step)."""
    grads = _Grads(seed)
    trainer = pl.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[grads, *callbacks], accelerator="cpu", devices=1, **trainer_kwargs,
    )  # fmt: skip
    trainer.fit(module, torch.utils.data.DataLoader([batch], batch_size=None))
    return {k: float(v) for k, v in trainer.callback_metrics.items()}, grads.grads, grads.after


@pytest.mark.parametrize("phase", [1, 2])
def test_cddfuse_matches_the_authors_training_step(phase):
    """MMIF-CDDFuse train.py, phase I (reconstruction + decomposition) and phase II (fusion): the authors' four
    Adams and per-part gradient-norm clipping at 0.01 are ``CDDFuseModule(authors_schedule=True)`` with
    ``gradient_clip_val: 0.01``; the fusion term is ``FusionLoss(1, 10, 0, sobel_padding="zeros")``. The fixture
    keeps 16 Gaussian projections of each gradient and weight tensor (tests/train_eq_util.py)."""
    ref = np.load(FIX / "cddfuse_step.npz")
    names = [str(n) for n in ref["names"]]
    shapes = [tuple(int(d) for d in str(s).split(",")) for s in ref["shapes"]]
    w = fixed_weights(names, shapes)
    parts = {}
    for n in names:
        part, key = n.split(".", 1)
        parts.setdefault(part, {})[key] = torch.from_numpy(w[n])
    ours_of = dict(zip(names, convert_official(parts), strict=True))  # authors' name -> ours (same order)
    # exact: NCHW maps, the authors' layout. Our default runs the encoder channels-last (faster on CPUs), which
    # rounds the detail INN's small gradients differently: up to 6e-4 apart on this batch, the weights after the
    # step still within 3e-6
    model = CDDFuse(exact=True)
    model.load_state_dict(convert_official(parts))
    loss = CDDFuseLoss(FusionLoss(1.0, 10.0, 0.0, sobel_padding="zeros"), w_decomp=2.0, w_rec_ssim=5.0, w_rec_grad=5.0)
    module = CDDFuseModule(model, loss, phase1_steps=1 if phase == 1 else 0, lr=float(ref["lr"]), authors_schedule=True)
    batch = {"vis": torch.from_numpy(ref["vis"]), "ir": torch.from_numpy(ref["ir"])}
    logged, grads, _ = _one_step(module, batch, gradient_clip_val=float(ref["clip"]))

    for k in [f.split("/", 1)[1] for f in ref.files if f.startswith(f"p{phase}/") and f.count("/") == 1]:
        theirs = float(ref[f"p{phase}/{k}"])
        assert abs(logged[f"train/{k}"] / theirs - 1) < 1e-5, (k, logged[f"train/{k}"], theirs)
    after = model.state_dict()
    for i, n in enumerate(names):
        norm = float(ref[f"p{phase}/grad_norm/{n}"])
        g = grads[ours_of[n]]
        if norm < 0:  # the authors' phase I never uses the fusion layers: no gradient, no step
            assert g is None, n
        else:
            assert rel_from_projections(project(i, g.numpy()), ref[f"p{phase}/grad_proj/{n}"], norm) < 1e-4, n
        p_after = project(i, after[ours_of[n]].numpy())
        assert (
            rel_from_projections(p_after, ref[f"p{phase}/after_proj/{n}"], float(ref[f"p{phase}/after_norm/{n}"]))
            < 1e-5
        ), n


def test_cddfuse_learning_rates_follow_the_authors_schedule():
    """train.py's StepLRs (halve every 20 epochs; the fusion layers' step only in phase II; floor 1e-6) over the
    120 epochs, as experiments/paper/cddfuse.yaml sets them in steps (812 a epoch): equal at every epoch."""
    ref = np.load(FIX / "cddfuse_step.npz")["epoch_lrs"]  # (120 epochs, 4 parts)
    cfg = yaml.safe_load((Path(__file__).parents[1] / "experiments" / "paper" / "cddfuse.yaml").read_text())
    args = cfg["model"]["init_args"]
    assert args["authors_schedule"] and cfg["trainer"]["gradient_clip_val"] == 0.01
    module = CDDFuseModule(
        CDDFuse(dim=8, heads=1, blocks=1),
        **{k: v for k, v in args.items() if k not in ("model", "loss", "val_metrics")},
    )
    opt = module.configure_optimizers()
    sched = opt["lr_scheduler"]["scheduler"]
    per_epoch = args["phase1_steps"] // 40
    for step in range(per_epoch * 120):
        if step % per_epoch == 0:
            lr_enc, lr_fuse = (g["lr"] for g in opt["optimizer"].param_groups)
            want = ref[step // per_epoch]
            assert np.isclose(lr_enc, want[0], rtol=1e-9) and np.isclose(lr_fuse, want[2], rtol=1e-9), step // per_epoch
        sched.step()


def test_swinfusion_matches_the_authors_training_step():
    """Linfeng-Tang/SwinFusion main_train_swinfusion.py (vif options): 20 int + 20 grad + 10 (1 - SSIM) with their
    pytorch-ssim term (``FusionLoss(20, 20, 10, sobel_padding="zeros", ssim_variant="swinfusion")``), drop path 0.1
    in training mode (the same draws for the same seed), the loss on the unclamped output (``raw_output=True``), Adam
    2e-5, and their EMA 0.999 from the initial weights (``fusion.train.EMA``)."""
    ref = np.load(FIX / "swinfusion_step.npz")
    names = [str(n) for n in ref["names"]]
    shapes = [tuple(int(d) for d in str(s).split(",")) for s in ref["shapes"]]
    w = {k: torch.from_numpy(v) for k, v in fixed_weights(names, shapes).items()}
    convert = FAMILIES["swinfusion"].convert
    ours_of = {n: next(iter(convert({"": {n: w[n]}})), None) for n in names}  # None: the unused second stem
    model = SwinFusion(embed_dim=60, window=8, heads=6, mlp_ratio=2.0, drop_path=0.1)
    model.load_state_dict(convert({"": w}))
    loss = FusionLoss(20.0, 20.0, 10.0, sobel_padding="zeros", ssim_variant="swinfusion")
    module = FusionModule(model, loss, lr=float(ref["lr"]), raw_output=True)  # their loss sees the raw output
    batch = {"vis": torch.from_numpy(ref["vis"]).float() / 255, "ir": torch.from_numpy(ref["ir"]).float() / 255}
    logged, grads, after = _one_step(module, batch, seed=int(ref["seed"]), callbacks=[EMA(float(ref["ema"]))])

    for k, weight in (("int", 20), ("grad", 20), ("ssim", 10), ("total", 1)):
        assert abs(weight * logged[f"train/{k}"] / float(ref[k]) - 1) < 1e-5, (k, logged[f"train/{k}"], float(ref[k]))
    ema = dict(model.named_parameters())  # after fit, the EMA callback has put the averaged weights in the model
    for i, n in enumerate(names):
        norm = float(ref[f"grad_norm/{n}"])
        if ours_of[n] is None:  # the authors' forward never uses conv_first*_B
            assert norm < 0, n
            continue
        assert rel_from_projections(project(i, grads[ours_of[n]].numpy()), ref[f"grad_proj/{n}"], norm) < 1e-4, n
        for tag, got in (("after", after), ("ema", ema)):
            p = project(i, got[ours_of[n]].detach().numpy())
            assert rel_from_projections(p, ref[f"{tag}_proj/{n}"], float(ref[f"{tag}_norm/{n}"])) < 1e-5, (tag, n)


def _tf_layout(a: np.ndarray) -> np.ndarray:
    """PyTorch's layout -> TensorFlow's: conv OIHW -> HWIO, dense (out, in) -> (in, out)."""
    return a.transpose(2, 3, 1, 0) if a.ndim == 4 else a.T if a.ndim == 2 else a


def _ddcgan_from_fixture(ref) -> tuple[DDcGANAuthorsModule, dict[str, str]]:
    """The authors' module with the fixture's fixed weights; and TF variable name -> our parameter name."""
    names = [str(n) for n in ref["names"]]
    shapes = [tuple(int(d) for d in str(s).split(",")) for s in ref["shapes"]]
    w = fixed_weights(names, shapes)
    g_names = [n for n in names if n.startswith("Generator")]
    moving = {f"{n.rsplit('/', 1)[0]}/moving_{k}": np.full(w[n].shape, float(k == "variance"), np.float32)
              for n in g_names if n.endswith("gamma") for k in ("mean", "variance")}  # fmt: skip
    convert = FAMILIES["ddcgan"].convert
    tags = convert({"": {n: np.full(_tf_layout(w[n]).shape, i + 1.0, np.float32) for i, n in enumerate(g_names)}
                    | moving})  # fmt: skip
    ours_of = {g_names[int(v.flatten()[0]) - 1]: k for k, v in tags.items() if k.endswith((".weight", ".bias"))}
    model = DDcGANGenerator(authors=True)
    model.load_state_dict(convert({"": {n: _tf_layout(w[n]) for n in g_names} | moving}))
    patch = ref["vis"].shape[1]
    module = DDcGANAuthorsModule(model, DDcGANLoss(), patch_size=patch, decay_steps=int(ref["n_batches"]))
    parts = {"conv1": "body.1", "conv2": "body.4", "conv3": "body.8", "b1/batch_normalization": "body.5",
             "b2/batch_normalization": "body.9", "flatten1/dense": "fc"}  # fmt: skip
    for tf_d, ours_d in (("Discriminator1", "d_vis"), ("Discriminator2", "d_ir")):
        for n in names:
            if n.startswith(tf_d + "/"):
                scope, var = n[len(tf_d) + 1 :].rsplit("/", 1)
                ours_of[n] = f"{ours_d}.{parts[scope]}.{'weight' if var in ('kernel', 'gamma') else 'bias'}"
    state = module.state_dict()
    for n, ours in ours_of.items():
        if ours.startswith(("d_vis.", "d_ir.")):
            state[ours] = torch.from_numpy(w[n])
    module.load_state_dict(state)
    module.solver_runs.fill_(int(ref["start"]))
    module.manual_backward = lambda loss: loss.backward()  # outside a Trainer
    return module.train(), {n: o if o.startswith(("d_vis", "d_ir")) else f"model.{o}" for n, o in ours_of.items()}


def test_ddcgan_matches_the_authors_training_step():
    """hanna-xu/DDcGAN train.py under TensorFlow: the generator's and both discriminators' losses, their gradients,
    one generator step (TF1 RMSProp) and the discriminators' first steps (gradient descent), at solver runs 37 and
    38 of the exponential decay (decay_steps 10): ``DDcGANAuthorsModule`` with ``DDcGANGenerator(authors=True)``.

    In float64 on both sides (the fixture's README says how their graph was run so): with a batch norm after every
    conv, float32 cannot resolve this generator's gradients to 1e-4 (ours in float32 sit up to 2e-3 from float64,
    TensorFlow's likewise)."""
    ref = np.load(FIX / "ddcgan_step.npz")
    assert str(ref["dtype"]) == "float64"
    names = [str(n) for n in ref["names"]]
    module, ours_of = _ddcgan_from_fixture(ref)
    module.double()
    vis = torch.from_numpy(ref["vis"]).permute(0, 3, 1, 2).double()
    ir = torch.from_numpy(ref["ir"]).permute(0, 3, 1, 2).double()
    assert abs(module.lr_now() / float(ref["learning_rate"]) - 1) < 1e-6

    t = module.g_terms(vis, ir)
    dv, di = module.d_losses(vis, ir)
    pairs = {"G_loss_GAN_D1": t["adv_vis"], "G_loss_GAN_D2": t["adv_ir"], "LOSS_IR": 16 * t["int"],
             "LOSS_VIS": t["grad"], "G_loss": t["total"], "D1_loss_real": dv["real"], "D1_loss_fake": dv["fake"],
             "D1_loss": dv["total"], "D2_loss_real": di["real"], "D2_loss_fake": di["fake"],
             "D2_loss": di["total"]}  # fmt: skip
    for k, ours in pairs.items():
        assert abs(float(ours) / float(ref[k]) - 1) < 1e-5, (k, float(ours), float(ref[k]))

    params = dict(module.named_parameters())
    total = {p: np.sqrt(sum(float(ref[f"grad_norm/{n}"]) ** 2 for n in names if n.startswith(p)))
             for p in ("Generator", "Discriminator1", "Discriminator2")}  # fmt: skip
    for loss, prefix in ((t["total"], "Generator"), (dv["total"], "Discriminator1"), (di["total"], "Discriminator2")):
        module.zero_grad()
        loss.backward(retain_graph=True)
        for i, n in enumerate(names):
            if n.startswith(prefix):
                g, norm = params[ours_of[n]].grad.numpy(), float(ref[f"grad_norm/{n}"])
                diff = rel_from_projections(project(i, g), ref[f"grad_proj/{n}"], norm)
                # a conv's bias before a batch norm has no effect, so its exact gradient is 0: rounding both sides
                assert diff < 1e-4 or norm < 1e-9 * total[prefix] > np.linalg.norm(g), (n, diff, norm)

    def check_after(m, prefixes) -> None:
        p = dict(m.named_parameters())
        for i, n in enumerate(names):
            if n.startswith(prefixes):
                got = project(i, p[ours_of[n]].detach().numpy())
                assert rel_from_projections(got, ref[f"after_proj/{n}"], float(ref[f"after_norm/{n}"])) < 1e-5, n

    opt_g, _, opt_dv, opt_di = module.configure_optimizers()
    module.solver_run(opt_g, module.g_terms(vis, ir)["total"], module.model)
    check_after(module, ("Generator",))
    module, _ = _ddcgan_from_fixture(ref)  # the discriminators step from the same weights
    module.double()
    opt_g, _, opt_dv, opt_di = module.configure_optimizers()
    module.solver_run(opt_dv, module.d_losses(vis, ir)[0]["total"], module.d_vis)
    module.solver_run(opt_di, module.d_losses(vis, ir)[1]["total"], module.d_ir)
    check_after(module, ("Discriminator1", "Discriminator2"))
    assert int(module.solver_runs) == int(ref["global_step_after_D"])  # one counter for every solver run
