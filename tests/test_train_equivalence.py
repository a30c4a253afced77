"""Our training steps against the authors' training code: loss terms, gradients and one optimiser step.

Each fixture (``fixtures/train_eq/<model>_step.npz``, README beside it) holds a fixed batch of real crops, the
weights before the step, the authors' loss terms, every parameter's gradient and the weights after one optimiser
step, as the authors' own training code computed them (run outside the project).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fusion.losses import ReconstructionLoss
from fusion.models import DenseFuse
from fusion.models.zoo import FAMILIES
from fusion.train import AutoencoderModule

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
