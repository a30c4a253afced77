"""DDcGAN trained as the authors' ``train.py`` trains it (hanna-xu/DDcGAN, same-resolution release).

What it does that :class:`fusion.train.GANFusionModule` (our procedure) does not:

- batches alternate: on even batches the two discriminators step (D_vis, then D_ir), on odd ones the generator;
- then the step counts adapt per network: D_vis again while its loss exceeds ``d_high``, then D_ir while its own
  does (at most ``max_steps`` runs each, counting the first); on G's batches, G on the adversarial term alone
  (a second RMSProp with its own state, their ``G_GAN_solver``) while either D's loss is below ``d_low``, then on
  the whole objective while it exceeds ``g_high``;
- the optimisers are TensorFlow 1's: RMSProp (:class:`fusion.train.optim.TFRMSprop`) for G, plain gradient descent
  for each D; every solver run advances one shared counter ``k`` and runs at ``lr * lr_decay ** (k / decay_steps)``
  (``tf.train.exponential_decay``, not stair-cased; ``decay_steps`` is an epoch's batches);
- every network's weights are clipped to +-``clip`` after each of its steps; the discriminators' losses are
  ``-mean(log(D(real) + 1e-8)) - mean(log(1 - D(F) + 1e-8))``.

The generator should be ``DDcGANGenerator(authors=True)`` (their layer order; batch norm on the batch's statistics
in training) and the discriminators are ``DDcGANDiscriminator(authors=True)``.
"""

from __future__ import annotations

import torch
from torch import nn

from fusion.losses import DDcGANLoss
from fusion.models.ddcgan import DDcGANDiscriminator
from fusion.train.base import FusionTask
from fusion.train.optim import TFRMSprop

EPS = 1e-8


def d_terms(d: nn.Module, real: torch.Tensor, fused: torch.Tensor) -> dict[str, torch.Tensor]:
    """One discriminator's loss as the authors write it: ``{"real", "fake", "total"}``."""
    real_t = -torch.log(d(real) + EPS).mean()
    fake_t = -torch.log(1.0 - d(fused) + EPS).mean()
    return {"real": real_t, "fake": fake_t, "total": real_t + fake_t}


class DDcGANAuthorsModule(FusionTask):
    """DDcGAN's training procedure as the authors' code runs it (see the module docstring).

    Args:
        model: the generator (``DDcGANGenerator(authors=True)``).
        loss: the generator's objective (``DDcGANLoss()``: ``-log D_v(F) - log D_i(F) + 0.6 content``).
        patch_size: training patch side (sizes the discriminators' dense layers).
        lr, lr_decay: ``lr * lr_decay ** (k / decay_steps)`` at solver run ``k``.
        decay_steps: the decay's period in solver runs (None: the training loader's batches per epoch, as theirs).
        clip: weight clipping bound; d_high, d_low, g_high, max_steps: the adaptive step counts' thresholds.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None = None,
        patch_size: int = 84,
        lr: float = 2e-4,
        lr_decay: float = 0.9,
        decay_steps: int | None = None,
        clip: float = 8.0,
        d_high: float = 1.7,
        d_low: float = 1.4,
        g_high: float = 200.0,
        max_steps: int = 20,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["model", "loss"])
        self.automatic_optimization = False
        self.model, self.loss = model, loss if loss is not None else DDcGANLoss()
        self.d_vis = DDcGANDiscriminator(patch_size, authors=True)
        self.d_ir = DDcGANDiscriminator(patch_size, authors=True)
        self.register_buffer("solver_runs", torch.zeros((), dtype=torch.long))  # their global step, resumed

    def lr_now(self) -> float:
        h = self.hparams
        steps = h.decay_steps or self.trainer.num_training_batches
        return h.lr * h.lr_decay ** (int(self.solver_runs) / steps)

    def solver_run(self, opt: torch.optim.Optimizer, loss: torch.Tensor, net: nn.Module) -> None:
        """One of their ``sess.run([solver, clip])``: a step at the current rate, the clip, the counter."""
        for g in opt.param_groups:
            g["lr"] = self.lr_now()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        with torch.no_grad():
            for p in net.parameters():
                p.clamp_(-self.hparams.clip, self.hparams.clip)
        self.solver_runs += 1

    def g_terms(self, vis: torch.Tensor, ir: torch.Tensor) -> dict[str, torch.Tensor]:
        fused = self.model(vis, ir)
        return self.loss(fused, vis, ir, self.d_vis(fused), self.d_ir(fused))

    def d_losses(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[dict, dict]:
        with torch.no_grad():
            fused = self.model(vis, ir)
        return d_terms(self.d_vis, vis, fused), d_terms(self.d_ir, ir, fused)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        h = self.hparams
        vis, ir = batch["vis"], batch["ir"]
        opt_g, opt_gan, opt_dv, opt_di = self.optimizers()
        if batch_idx % 2 == 0:  # the discriminators' batch
            self.solver_run(opt_dv, self.d_losses(vis, ir)[0]["total"], self.d_vis)
            self.solver_run(opt_di, self.d_losses(vis, ir)[1]["total"], self.d_ir)
            runs = [1, 1]
            dv, di = self.d_losses(vis, ir)
            while dv["total"].item() > h.d_high and runs[0] < h.max_steps:
                self.solver_run(opt_dv, self.d_losses(vis, ir)[0]["total"], self.d_vis)
                dv, runs[0] = self.d_losses(vis, ir)[0], runs[0] + 1
            while di["total"].item() > h.d_high and runs[1] < h.max_steps:
                self.solver_run(opt_di, self.d_losses(vis, ir)[1]["total"], self.d_ir)
                (dv, di), runs[1] = self.d_losses(vis, ir), runs[1] + 1
            self.log_dict({"train/d_vis_steps": float(runs[0]), "train/d_ir_steps": float(runs[1])})
        else:  # the generator's batch
            self.solver_run(opt_g, self.g_terms(vis, ir)["total"], self.model)
            g_runs = 1
            terms, (dv, di) = self.g_terms(vis, ir), self.d_losses(vis, ir)
            while (dv["total"].item() < h.d_low or di["total"].item() < h.d_low) and g_runs < h.max_steps:
                self.solver_run(opt_gan, terms["adv_vis"] + terms["adv_ir"], self.model)
                terms, (dv, di), g_runs = self.g_terms(vis, ir), self.d_losses(vis, ir), g_runs + 1
            while terms["total"].item() > h.g_high and g_runs < h.max_steps:
                self.solver_run(opt_g, terms["total"], self.model)
                terms, g_runs = self.g_terms(vis, ir), g_runs + 1
            self.log_terms(terms)
            self.log("train/g_steps", float(g_runs))
        self.log_dict({"train/d_vis_loss": dv["total"], "train/d_ir_loss": di["total"], "train/lr": self.lr_now()})

    def configure_optimizers(self):
        lr = self.hparams.lr
        g = list(self.model.parameters())
        # two RMSProps on G as theirs (G_solver, G_GAN_solver: separate mean squares), one descent per D
        return [TFRMSprop(g, lr), TFRMSprop(g, lr), torch.optim.SGD(self.d_vis.parameters(), lr),
                torch.optim.SGD(self.d_ir.parameters(), lr)]  # fmt: skip
