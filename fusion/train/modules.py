"""The three training procedures, one LightningModule each.

- :class:`FusionModule`: any fusion network trained end to end on patch pairs with an unsupervised objective
  (:class:`fusion.losses.FusionLoss`); SwinFusion, and DenseFuse's optional decoder fine-tuning (``trainable``).
- :class:`AutoencoderModule`: DenseFuse stage 1, reconstruct single images (pixel + lambda * (1 - SSIM)).
- :class:`GANFusionModule`: DDcGAN, a generator against two discriminators with manual optimisation.

The network, the loss and their weights come from the YAML config (``class_path`` / ``init_args``).
"""

from __future__ import annotations

import torch
from torch import nn

from fusion.losses import CDDFuseLoss, DDcGANLoss, FusionLoss, ReconstructionLoss, adversarial_loss
from fusion.models import DDcGANDiscriminator
from fusion.train.base import FusionTask


def adam_with_milestones(params, lr: float, milestones: list[int] | None, gamma: float):
    """Adam, with the learning rate multiplied by ``gamma`` at each step in ``milestones`` (none: constant)."""
    opt = torch.optim.Adam(params, lr=lr)
    if not milestones:
        return opt
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class FusionModule(FusionTask):
    """Train ``model`` so that ``loss(model(vis, ir), vis, ir)["total"]`` falls.

    Args:
        model: a fusion network (see :mod:`fusion.models`).
        loss: the objective; default SwinFusion's weights.
        lr: Adam learning rate.
        trainable: train only the parameters under this attribute (e.g. ``"decoder"``); None: all.
        lr_milestones, lr_gamma: MultiStepLR schedule over optimiser steps (empty: constant).
        raw_output: score the network's unclamped output (``model.forward_raw``), as SwinFusion's training code
            does (its loss sees values outside [0, 1], and their gradients); default: ``model(vis, ir)``, clamped.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None = None,
        lr: float = 2e-4,
        trainable: str | None = None,
        lr_milestones: list[int] | None = None,
        lr_gamma: float = 0.5,
        raw_output: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["model", "loss"])
        self.model, self.loss = model, loss if loss is not None else FusionLoss()
        if raw_output and not hasattr(model, "forward_raw"):
            raise ValueError(f"raw_output: {type(model).__name__} has no forward_raw (its unclamped output)")
        if trainable is not None:
            keep = getattr(model, trainable).parameters()
            model.requires_grad_(False)
            for p in keep:
                p.requires_grad_(True)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        net = self.model.forward_raw if self.hparams.raw_output else self.model
        terms = self.loss(net(batch["vis"], batch["ir"]), batch["vis"], batch["ir"])
        self.log_terms(terms)
        return terms["total"]

    def configure_optimizers(self):
        h = self.hparams
        return adam_with_milestones([p for p in self.model.parameters() if p.requires_grad], h.lr, h.lr_milestones,
                                    h.lr_gamma)  # fmt: skip


class AutoencoderModule(FusionTask):
    """DenseFuse stage 1: the encoder-decoder learns to reconstruct single grey images.

    Each training batch's visible and infrared patches are both used, as separate images. Validation fuses the
    pairs with the model's strategy, so ``val/`` metrics are comparable with the other procedures.

    Args:
        model: a network with ``reconstruct(x)`` (DenseFuse).
        loss: default ``ReconstructionLoss(ssim_weight=100)`` (the released model's lambda).
        lr: Adam learning rate (1e-4 in the paper).
        input_scale: the images' scale in training: 1 (ours, [0, 1]) or 255 (the authors' release trains on
            0-255 images, which its weights expect).
    """

    def __init__(
        self, model: nn.Module, loss: nn.Module | None = None, lr: float = 1e-4, input_scale: float = 1.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["model", "loss"])
        self.model, self.loss = model, loss if loss is not None else ReconstructionLoss()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = torch.cat([batch["vis"], batch["ir"]]) * self.hparams.input_scale
        terms = self.loss(self.model.reconstruct(x), x)
        self.log_terms(terms)
        return terms["total"]

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr)


class GANFusionModule(FusionTask):
    """DDcGAN training: G fuses, D_vis tells visible from fused, D_ir tells infrared from fused.

    Manual optimisation with the official schedule's hygiene: the discriminators see detached fused images, each
    network has its own optimiser (RMSProp for G, SGD for the Ds, as in the official code), the generator's
    weights are clipped, and the step counts adapt to the balance: the Ds repeat while their loss exceeds
    ``d_high`` (at most ``max_d_steps``), and G repeats while the Ds' loss is below ``d_low`` or G's above
    ``g_high`` (at most ``max_g_steps``). ``train/d_steps``, ``train/g_steps`` and ``train/balance`` (mean D
    probability on fused images) are logged.

    Args:
        model: the generator (:class:`fusion.models.DDcGANGenerator`).
        loss: generator objective (:class:`fusion.losses.DDcGANLoss`).
        patch_size: training patch side (sizes the discriminators' dense layers).
        lr_g, lr_d: learning rates; both decay by ``lr_decay`` per epoch.
        content_warmup: steps with the content term only before the adversarial game starts (0: none).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None = None,
        patch_size: int = 84,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        lr_decay: float = 0.9,
        clip: float = 8.0,
        d_high: float = 1.7,
        d_low: float = 1.4,
        g_high: float = 200.0,
        max_d_steps: int = 20,
        max_g_steps: int = 20,
        content_warmup: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["model", "loss"])
        self.automatic_optimization = False
        self.model, self.loss = model, loss if loss is not None else DDcGANLoss()
        self.d_vis, self.d_ir = DDcGANDiscriminator(patch_size), DDcGANDiscriminator(patch_size)
        # batches trained so far (global_step counts optimiser steps, which vary per batch here); saved and resumed
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))

    def _d_loss(self, vis, ir, fused) -> torch.Tensor:
        fused = fused.detach()
        l_vis = adversarial_loss(self.d_vis(vis), True) + adversarial_loss(self.d_vis(fused), False)
        l_ir = adversarial_loss(self.d_ir(ir), True) + adversarial_loss(self.d_ir(fused), False)
        return l_vis + l_ir

    def _g_terms(self, vis, ir) -> dict[str, torch.Tensor]:
        fused = self.model(vis, ir)
        return self.loss(fused, vis, ir, self.d_vis(fused), self.d_ir(fused)) | {"fused": fused}

    def _g_step(self, opt, vis, ir, adversarial: bool) -> dict[str, torch.Tensor]:
        terms = self._g_terms(vis, ir)
        total = terms["total"] if adversarial else self.loss.content_weight * terms["content"]
        opt.zero_grad()
        self.manual_backward(total)
        opt.step()
        with torch.no_grad():
            for p in self.model.parameters():
                p.clamp_(-self.hparams.clip, self.hparams.clip)
        return terms

    def training_step(self, batch: dict, batch_idx: int) -> None:
        h = self.hparams
        vis, ir = batch["vis"], batch["ir"]
        opt_g, opt_d = self.optimizers()
        self.batches_seen += 1
        if self.batches_seen <= h.content_warmup:
            terms = self._g_step(opt_g, vis, ir, adversarial=False)
            self.log_terms({k: v for k, v in terms.items() if k != "fused"})
            return
        with torch.no_grad():
            fused = self.model(vis, ir)
        d_steps = 0
        while True:  # discriminators: at least once, again while they still lose
            d_loss = self._d_loss(vis, ir, fused)
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()
            d_steps += 1
            if d_loss.item() <= h.d_high or d_steps >= h.max_d_steps:
                break
        g_steps = 0
        while True:  # generator: at least once, again while the Ds win or its loss is high
            terms = self._g_step(opt_g, vis, ir, adversarial=True)
            g_steps += 1
            with torch.no_grad():
                d_loss = self._d_loss(vis, ir, terms["fused"])
            if not (d_loss.item() < h.d_low or terms["total"].item() > h.g_high) or g_steps >= h.max_g_steps:
                break
        fused = terms.pop("fused")
        with torch.no_grad():
            balance = (self.d_vis(fused) + self.d_ir(fused)).mean() / 2
        self.log_terms(terms)
        self.log_dict({"train/d_loss": d_loss, "train/d_steps": float(d_steps), "train/g_steps": float(g_steps)})
        self.log("train/balance", balance)

    def on_train_epoch_end(self) -> None:
        for sched in self.lr_schedulers():
            sched.step()

    def configure_optimizers(self):
        h = self.hparams
        opt_g = torch.optim.RMSprop(self.model.parameters(), lr=h.lr_g)
        opt_d = torch.optim.SGD([*self.d_vis.parameters(), *self.d_ir.parameters()], lr=h.lr_d)
        scheds = [torch.optim.lr_scheduler.ExponentialLR(o, h.lr_decay) for o in (opt_g, opt_d)]
        return [opt_g, opt_d], scheds


class CDDFuseModule(FusionTask):
    """CDDFuse's two-phase training: an autoencoder with decomposed features, then fusion (Zhao et al., CVPR 2023).

    For the first ``phase1_steps`` optimiser steps the shared encoder and the decoder reconstruct each source
    (:meth:`fusion.losses.CDDFuseLoss.phase1`); afterwards the base and detail fusion layers join and the whole
    network is trained to fuse (:meth:`~fusion.losses.CDDFuseLoss.phase2`). ``train/phase`` is logged. The
    official code clips each part's gradient norm at 0.01 (``trainer.gradient_clip_val`` in the config) and halves
    the learning rate every 20 epochs (``lr_milestones``/``lr_gamma`` here, in steps).

    Args:
        model: a :class:`fusion.models.CDDFuse`.
        loss: a :class:`fusion.losses.CDDFuseLoss`.
        phase1_steps: steps of the reconstruction phase (official: 40 of 120 epochs).
        lr: Adam learning rate (official 1e-4).
        lr_milestones, lr_gamma: the learning rate times ``lr_gamma`` at each of these optimiser steps.
        authors_schedule: the authors' ``train.py`` in two respects, both off by default: each part (encoder,
            decoder, base and detail fusion layers) has its gradient norm clipped at ``trainer.gradient_clip_val``
            separately, not the whole network's; and the fusion layers' learning rate starts its own schedule
            with phase II (their StepLRs step only then), so milestones up to ``phase1_steps`` leave it alone.
    """

    parts = ("encoder", "decoder", "base_fuse", "detail_fuse")  # the authors' four modules and optimisers

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None = None,
        phase1_steps: int = 1000,
        lr: float = 1e-4,
        lr_milestones: list[int] | None = None,
        lr_gamma: float = 0.5,
        authors_schedule: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["model", "loss"])
        self.model, self.loss = model, loss if loss is not None else CDDFuseLoss()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        vis, ir = batch["vis"], batch["ir"]
        if self.global_step < self.hparams.phase1_steps:
            b = vis.shape[0]
            rec, base, detail = self.model.reconstruct(torch.cat([vis, ir]))  # each source is its own residual
            feats = {"vis_base": base[:b], "ir_base": base[b:], "vis_detail": detail[:b], "ir_detail": detail[b:]}
            terms = self.loss.phase1(vis, ir, rec[:b], rec[b:], feats)
            phase = 1.0
        else:
            out = self.model.fuse(vis, ir)
            terms = self.loss.phase2(out["fused"], vis, ir, out)
            phase = 2.0
        self.log_terms(terms)
        self.log("train/phase", phase)
        return terms["total"]

    def configure_optimizers(self):
        h = self.hparams
        if not h.authors_schedule:
            return adam_with_milestones(self.model.parameters(), h.lr, h.lr_milestones, h.lr_gamma)
        # one Adam over two groups is the authors' four Adams: its state and step are per parameter
        fusers = [p for n in self.parts[2:] for p in getattr(self.model, n).parameters()]
        ids = {id(p) for p in fusers}
        opt = torch.optim.Adam(
            [{"params": [p for p in self.model.parameters() if id(p) not in ids]}, {"params": fusers}], lr=h.lr
        )
        milestones = sorted(h.lr_milestones or [])
        late = [m for m in milestones if m > h.phase1_steps]

        def factor(ms: list[int]):  # and their floor: a learning rate that falls to 1e-6 stays there
            return lambda step: max(h.lr_gamma ** sum(step >= m for m in ms), 1e-6 / h.lr)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, [factor(milestones), factor(late)])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if not (self.hparams.authors_schedule and gradient_clip_val):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        for name in self.parts:  # nn.utils.clip_grad_norm_ per part, as train.py does after backward
            torch.nn.utils.clip_grad_norm_(getattr(self.model, name).parameters(), gradient_clip_val)
