"""GANMcC: a GAN with multiclassification constraints for infrared and visible image fusion.

Ma, Zhang, Shao, Liang and Xu, "GANMcC: A Generative Adversarial Network With Multiclassification Constraints for
Infrared and Visible Image Fusion", IEEE Transactions on Instrumentation and Measurement 70, 2021.

Layout (the authors' TensorFlow 1 ``fusion_model``, checkpoint ``CGAN_120/CGAN.model-*``): two paths fed
``[ir, ir, vi]`` (gradient) and ``[vi, vi, ir]`` (contrast), each FusionGAN's four normalised 'VALID' layers
(:mod:`fusion.models.fusiongan`: 5x5 3->256, 5x5 256->128, 3x3 128->64, 3x3 64->32); the two 32-channel outputs
stacked twice ``[ir, vi, ir, vi]`` (128) into a 1x1 conv and tanh. Inputs edge-padded by 6, so the output keeps
the input's size. 1,866,049 values in the generator (``weights_SN/u``, the discriminator and Adam's slots not
read); normalisation as in FusionGAN (the image's own statistics in
the authors' test code). Inputs are ``(level - 127.5) / 127.5``; the output ``x 127.5 + 127.5``.
"""

from __future__ import annotations

import torch
from torch import nn

from fusion.errors import RgbtError
from fusion.models._util import clamp01
from fusion.models.fusiongan import convert_generator, edge_pad, last_conv, run_stack, valid_stack
from fusion.models.official import Family, has_keys
from fusion.models.pmgi import NORMS
from fusion.models.sdnet import official


class GANMcC(nn.Module):
    """GANMcC's generator: ``forward(vis, ir) -> fused`` on (B, 1, H, W) in [0, 1], any size.

    Args:
        norm: ``"image"`` (the authors' test code: each map on its own statistics, gamma 1, beta 0) or ``"trained"``.
        exact: the plain ops; otherwise (in eval mode) the convs run in oneDNN kernels on channels-last maps.
    """

    name = "ganmcc"
    unused = ("bn.weight", "bn.bias")  # gamma and beta: in the authors' file, not used by their test code

    def __init__(self, norm: str = "image", exact: bool = False):
        super().__init__()
        if norm not in NORMS:
            raise RgbtError(f"GANMcC norm must be one of {', '.join(NORMS)}, not {norm!r}")
        self.norm, self.exact = norm, exact
        self.config = {"norm": norm, "exact": exact}
        self.ir, self.vi = valid_stack(3), valid_stack(3)
        self.fuse = nn.Conv2d(128, 1, 1)

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The tanh output on [-1, 1], from (B, 1, H, W) inputs on [-1, 1] (edge-padded here)."""
        fast = not (self.exact or self.training)
        vis, ir = edge_pad(vis), edge_pad(ir)
        a = run_stack(self.ir, torch.cat([ir, ir, vis], 1), self.norm, fast)
        b = run_stack(self.vi, torch.cat([vis, vis, ir], 1), self.norm, fast)
        return last_conv(torch.cat([a, b, a, b], 1), self.fuse, fast)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis * 2 - 1, ir * 2 - 1) / 2 + 0.5)


def _detect(obj) -> str | None:
    return (
        ""
        if has_keys(obj, "fusion_model/layer1/w1", "fusion_model/layer1_vi/w1_vi", "fusion_model/layer4_vi/w4_vi")
        else None
    )


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    return convert_generator(parts[""], GANMcC(), {"ir": "", "vi": "_vi"})


FAMILY = Family(
    name="ganmcc",
    model=GANMcC,
    formats="GANMcC's TensorFlow 1 checkpoint CGAN.model-* (.index + .data-*: fusion_model/layer1_vi/w1_vi ...)",
    detect=_detect,
    convert=_convert,
    exact={"norm": "image"},
    official=official,  # the same script as FusionGAN's, but for the two paths' inputs (built in forward_raw)
)
