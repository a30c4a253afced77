"""FusionGAN: a generative adversarial network for infrared and visible image fusion.

Ma, Yu, Liang, Li and Jiang, "FusionGAN: A generative adversarial network for infrared and visible image fusion",
Information Fusion 48, 2019.

Layout (the authors' TensorFlow 1 ``fusion_model``, checkpoint ``CGAN_120/CGAN.model-*``): the infrared and visible
images stacked (2 channels) through 'VALID' convs 5x5 2->256, 5x5 256->128, 3x3 128->64, 3x3 64->32, each with
batch normalisation and leaky ReLU ``max(x, 0.2 x)``, then a 1x1 conv 32->1 and tanh. The inputs are edge-padded by
6 pixels first, so the output has the input's size. 926,593 values in the generator (its checkpoints also hold the
spectral-norm vectors ``weights_SN/u`` of training, the discriminator and Adam's slots: not read; the test code
convolves with the stored kernels as they are).

The normalisations run as in PMGI (:mod:`fusion.models.pmgi`): the authors' test code builds them in training mode
with fresh variables and restores only the convolutions, so each map is normalised by its own statistics over the
image with gamma 1 and beta 0 (``norm="image"``, the default); ``norm="trained"`` uses the trained ones instead.
Images over 1024 px a side, fused in tiles, are normalised per tile.
Inputs are ``(level - 127.5) / 127.5``; the output ``x 127.5 + 127.5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion.errors import RgbtError
from fusion.models._fast import conv
from fusion.models._util import clamp01
from fusion.models.official import Family, add_batch_counters, has_keys
from fusion.models.pmgi import NORMS, ConvNorm
from fusion.models.sdnet import official as sdnet_official

PAD = 6  # the edge padding the 'VALID' convs consume: 2 + 2 + 1 + 1
WIDTHS = ((5, 256), (5, 128), (3, 64), (3, 32))  # (kernel, channels out) of the normalised layers


def valid_stack(cin: int) -> nn.ModuleList:
    """The four normalised 'VALID' layers of FusionGAN's and GANMcC's generators."""
    layers, c = [], cin
    for k, cout in WIDTHS:
        layers.append(ConvNorm(c, cout, k, padding=0))
        c = cout
    return nn.ModuleList(layers)


def run_stack(layers: nn.ModuleList, x: torch.Tensor, norm: str, fast: bool) -> torch.Tensor:
    for layer in layers:
        x = layer([x], norm, fast)
    return x


def edge_pad(x: torch.Tensor) -> torch.Tensor:
    """``np.pad(img, 6, 'edge')`` of the test scripts."""
    return F.pad(x, (PAD,) * 4, mode="replicate")


def last_conv(x: torch.Tensor, fuse: nn.Conv2d, fast: bool) -> torch.Tensor:
    if fast:
        return conv(x, fuse.weight, fuse.bias, act="tanh").contiguous()
    return torch.tanh(fuse(x))


class FusionGAN(nn.Module):
    """FusionGAN's generator: ``forward(vis, ir) -> fused`` on (B, 1, H, W) in [0, 1], any size.

    Args:
        norm: ``"image"`` (the authors' test code: each map on its own statistics, gamma 1, beta 0) or ``"trained"``.
        exact: the plain ops; otherwise (in eval mode) the convs run in oneDNN kernels on channels-last maps.
    """

    name = "fusiongan"
    unused = ("bn.weight", "bn.bias")  # gamma and beta: in the authors' file, not used by their test code

    def __init__(self, norm: str = "image", exact: bool = False):
        super().__init__()
        if norm not in NORMS:
            raise RgbtError(f"FusionGAN norm must be one of {', '.join(NORMS)}, not {norm!r}")
        self.norm, self.exact = norm, exact
        self.config = {"norm": norm, "exact": exact}
        self.layers = valid_stack(2)
        self.fuse = nn.Conv2d(32, 1, 1)

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The tanh output on [-1, 1], from (B, 1, H, W) inputs on [-1, 1] (edge-padded here)."""
        fast = not (self.exact or self.training)
        x = run_stack(self.layers, edge_pad(torch.cat([ir, vis], 1)), self.norm, fast)  # [ir, vi], as the script
        return last_conv(x, self.fuse, fast)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis * 2 - 1, ir * 2 - 1) / 2 + 0.5)


def convert_generator(tf: dict, model: nn.Module, paths: dict[str, str]) -> dict[str, torch.Tensor]:
    """Our state_dict from the ``fusion_model/`` variables; ``paths``: our stack -> the authors' scope suffix."""
    t = {k: torch.as_tensor(v) for k, v in tf.items() if k.startswith("fusion_model/")}
    state: dict[str, torch.Tensor] = {}
    for ours, sfx in paths.items():
        for i in range(len(WIDTHS)):
            scope, n = f"fusion_model/layer{i + 1}{sfx}", f"{i + 1}{sfx}"
            state[f"{ours}.{i}.conv.weight"] = t[f"{scope}/w{n}"].permute(3, 2, 0, 1).contiguous()
            state[f"{ours}.{i}.conv.bias"] = t[f"{scope}/b{n}"]
            for k, v in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                         ("running_var", "moving_variance")):  # fmt: skip
                key = f"{scope}/BatchNorm/{v}"
                if key not in t:  # a file saved before any step has them all; never used by the test scripts
                    raise RgbtError(f"the checkpoint lacks {key}")
                state[f"{ours}.{i}.bn.{k}"] = t[key]
    state["fuse.weight"] = t["fusion_model/layer5/w5"].permute(3, 2, 0, 1).contiguous()
    state["fuse.bias"] = t["fusion_model/layer5/b5"]
    return add_batch_counters(state, model)


def _detect(obj) -> str | None:
    one_path = has_keys(obj, "fusion_model/layer1/w1", "fusion_model/layer5/w5")
    return "" if one_path and not has_keys(obj, "fusion_model/layer1_vi/w1_vi") else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    return convert_generator(parts[""], FusionGAN(), {"layers": ""})


FAMILY = Family(
    name="fusiongan",
    model=FusionGAN,
    formats="FusionGAN's TensorFlow 1 checkpoint CGAN.model-* (.index + .data-*: fusion_model/layer1/w1 ...)",
    detect=_detect,
    convert=_convert,
    exact={"norm": "image"},
    # VIF-Benchmark FusionGAN.py reads, scales and saves as SDNet's test code (the edge padding is in forward_raw)
    official=sdnet_official,
)
