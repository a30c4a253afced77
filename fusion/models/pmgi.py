"""PMGI: a unified image fusion network based on proportional maintenance of gradient and intensity.

Zhang, Xu, Xiao, Guo and Ma, "Rethinking the Image Fusion: A Fast Unified Image Fusion Network based on
Proportional Maintenance of Gradient and Intensity", AAAI 2020.

Layout (the authors' TensorFlow 1 ``fusion_model``, the infrared-visible model ``CGAN.model-1``), zero ('SAME')
padding, leaky ReLU ``max(x, 0.2 x)``, every conv but the last followed by batch normalisation:
- two paths, fed ``[ir, ir, vi]`` (gradient path) and ``[vi, vi, ir]`` (intensity path): a 5x5 conv 3->16, a 3x3
  conv 16->16, then twice a 1x1 conv of both paths' latest maps (32->16, the "pathwise transfer") and a 3x3 conv of
  the path's maps so far (48->16, then 64->16);
- the eight maps interleaved [ir1, vi1, ..., ir4, vi4] (128 channels), a 1x1 conv to one channel and tanh: the
  fused image on [-1, 1].
42,401 values in the checkpoint (weights, biases and each normalisation's beta, gamma, moving mean and variance).

How the normalisation runs: the authors' test code builds every ``tf.contrib.layers.batch_norm`` in its training
mode with fresh variables and restores only the convolutions, so each map is normalised by its own statistics over
the image with gamma 1 and beta 0; the trained gamma, beta and moving statistics are in the file, never used. That
is what every published PMGI result computed, and what ``norm="image"`` (the default) does. ``norm="trained"`` runs
the trained normalisation instead (moving statistics, trained gamma and beta), as the network was trained to be run.
With ``norm="image"`` the output depends on the whole window: tiles (images over 1024 px a side) are normalised each
with their own statistics.
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
from fusion.models.sdnet import official as sdnet_official

# our layer -> the authors' scope and variable suffix, for the infrared-led path ("ir") and the visible-led one
LAYERS = {"conv1": "1", "conv2": "2", "transfer2": "2_3", "conv3": "3", "transfer3": "3_4", "conv4": "4"}
NORMS = ("image", "trained")


class ConvNorm(nn.Module):
    """Conv (zero padding, 'SAME' by default; 0: 'VALID') of its inputs stacked along the channels, batch
    normalisation, leaky ReLU of 0.2. The layer of the TensorFlow 1 networks of Ma's group (PMGI, FusionGAN,
    GANMcC)."""

    def __init__(self, cin: int, cout: int, k: int, padding: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2 if padding is None else padding)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)

    def forward(self, parts: list[torch.Tensor], norm: str, fast: bool) -> torch.Tensor:
        if fast:  # the conv of the stack as a sum of convs of its parts: a channels-last torch.cat is a slow copy
            y = conv_parts(parts, self.conv.weight, self.conv.bias, self.conv.padding[0])
        else:
            y = self.conv(torch.cat(parts, 1))
        # "image": the test script's statistics of this image, gamma 1, beta 0; "trained": batch statistics in
        # training (updating the moving ones), the moving ones in eval
        y = image_norm(y, self.bn.eps, inplace=fast, per_image=not self.training) if norm == "image" else self.bn(y)
        return F.leaky_relu(y, 0.2, inplace=fast)


def conv_parts(
    parts: list[torch.Tensor],
    w: torch.Tensor,
    b: torch.Tensor | None,
    padding: int = 0,
    act: str = "none",
    pad_mode: str = "zeros",
) -> torch.Tensor:
    """``conv2d(cat(parts, 1), w, b)`` as one conv per part, each adding into the last (oneDNN kernels)."""
    y, c = None, 0
    for i, x in enumerate(parts):
        n = x.shape[1]
        last = i == len(parts) - 1
        y = conv(
            x, w[:, c : c + n], b if last else None, padding, act=act if last else "none", add=y, pad_mode=pad_mode
        )
        c += n
    return y


def image_norm(y: torch.Tensor, eps: float, inplace: bool = False, per_image: bool = True) -> torch.Tensor:
    """Batch normalisation on the batch's own statistics with gamma 1 and beta 0, in TensorFlow's fused kernel's
    order: ``(y - mean) * rsqrt(var + eps)``, the biased variance of the centred maps. (PyTorch's kernel computes
    ``y * a + b`` instead, which rounds apart from TensorFlow on a few more pixels of the stretched output.)
    ``per_image``: each image of the batch on its own statistics (the test script fuses one pair per batch)."""
    dims = (2, 3) if per_image else (0, 2, 3)
    mean = y.mean(dims, keepdim=True)
    c = y.sub_(mean) if inplace else y - mean
    rstd = torch.rsqrt(c.square().mean(dims, keepdim=True) + eps)
    return c.mul_(rstd) if inplace else c * rstd


def _path() -> nn.ModuleDict:
    return nn.ModuleDict(
        {"conv1": ConvNorm(3, 16, 5), "conv2": ConvNorm(16, 16, 3), "transfer2": ConvNorm(32, 16, 1),
         "conv3": ConvNorm(48, 16, 3), "transfer3": ConvNorm(32, 16, 1), "conv4": ConvNorm(64, 16, 3)}
    )  # fmt: skip


class PMGI(nn.Module):
    """PMGI's fusion network: ``forward(vis, ir) -> fused`` on (B, 1, H, W) in [0, 1], any size.

    Args:
        norm: ``"image"`` (the authors' test code: each map normalised by its own statistics over the batch, gamma 1,
            beta 0) or ``"trained"`` (standard batch normalisation: the moving statistics, gamma and beta in eval).
        exact: the plain ops; otherwise (in eval mode) the convs run in oneDNN kernels on channels-last maps (the
            same values up to float rounding).
    """

    name = "pmgi"
    unused = ("bn.weight", "bn.bias")  # gamma and beta: in the authors' file, not used by their test code

    def __init__(self, norm: str = "image", exact: bool = False):
        super().__init__()
        if norm not in NORMS:
            raise RgbtError(f"PMGI norm must be one of {', '.join(NORMS)}, not {norm!r}")
        self.norm, self.exact = norm, exact
        self.config = {"norm": norm, "exact": exact}
        self.ir, self.vi = _path(), _path()
        self.fuse = nn.Conv2d(128, 1, 1)

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The tanh output on [-1, 1], from (B, 1, H, W) inputs already on [-1, 1]."""
        fast = not (self.exact or self.training)
        a, b = self.ir, self.vi

        def both(layer: str, ir_in: list[torch.Tensor], vi_in: list[torch.Tensor]):
            return a[layer](ir_in, self.norm, fast), b[layer](vi_in, self.norm, fast)

        x_ir, x_vi = torch.cat([ir, ir, vis], 1), torch.cat([vis, vis, ir], 1)  # (B, 3, H, W) each
        ir1, vi1 = both("conv1", [x_ir], [x_vi])
        ir2, vi2 = both("conv2", [ir1], [vi1])
        ir23, vi23 = both("transfer2", [ir2, vi2], [ir2, vi2])  # the pathwise transfer: each path sees both
        ir3, vi3 = both("conv3", [ir1, ir2, ir23], [vi1, vi2, vi23])
        ir34, vi34 = both("transfer3", [ir3, vi3], [ir3, vi3])
        ir4, vi4 = both("conv4", [ir1, ir2, ir3, ir34], [vi1, vi2, vi3, vi34])
        maps = [ir1, vi1, ir2, vi2, ir3, vi3, ir4, vi4]  # 8 x (B, 16, H, W): the 128 channels the last conv sees
        if fast:
            return conv_parts(maps, self.fuse.weight, self.fuse.bias, act="tanh").contiguous()
        return torch.tanh(self.fuse(torch.cat(maps, 1)))

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis * 2 - 1, ir * 2 - 1) / 2 + 0.5)


def _detect(obj) -> str | None:
    return "" if has_keys(obj, "fusion_model/layer1/w1", "fusion_model/layer2_3_vi/w2_3_vi") else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    tf = {k: torch.as_tensor(v) for k, v in parts[""].items()}
    state: dict[str, torch.Tensor] = {}
    for path, sfx in (("ir", ""), ("vi", "_vi")):
        for ours, n in LAYERS.items():
            scope = f"fusion_model/layer{n}{sfx}"
            state[f"{path}.{ours}.conv.weight"] = tf[f"{scope}/w{n}{sfx}"].permute(3, 2, 0, 1).contiguous()
            state[f"{path}.{ours}.conv.bias"] = tf[f"{scope}/b{n}{sfx}"]
            for k, v in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                         ("running_var", "moving_variance")):  # fmt: skip
                state[f"{path}.{ours}.bn.{k}"] = tf[f"{scope}/BatchNorm/{v}"]
    state["fuse.weight"] = tf["fusion_model/layer5/w5"].permute(3, 2, 0, 1).contiguous()
    state["fuse.bias"] = tf["fusion_model/layer5/b5"]
    return add_batch_counters(state, PMGI())


FAMILY = Family(
    name="pmgi",
    model=PMGI,
    formats="PMGI's TensorFlow 1 checkpoint CGAN.model-1 (.index + .data-*: fusion_model/layer1/w1 ...)",
    detect=_detect,
    convert=_convert,
    exact={"norm": "image"},  # the script's normalisation; TensorFlow rounds its own way, fast kernels match as well
    official=sdnet_official,  # the same reading, scaling and saving as SDNet's test code (VIF-Benchmark PMGI.py)
)
