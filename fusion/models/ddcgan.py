"""DDcGAN: a dual-discriminator conditional GAN for infrared and visible image fusion.

Ma, Xu, Jiang, Mei and Zhang, "DDcGAN: A Dual-Discriminator Conditional Generative Adversarial Network for
Multi-Resolution Image Fusion", IEEE TIP 29, 2020.

Generator: the two sources stacked as 2 channels -> 3x3 conv to 48 channels, then a dense block of four 3x3 convs
(48 channels each, every input the concatenation of all earlier outputs: 240 channels), and a decoder
240 -> 240 -> 128 -> 64 -> 32 -> 1. Every conv uses reflection padding, batch norm and ReLU except the last, whose
output goes through ``tanh / 2 + 0.5``. 1,097,665 parameters, as in the official code.

Discriminators: three stride-2 3x3 convs (16, 32, 64 channels; batch norm on the last two; leaky ReLU) and a dense
layer to one probability (``tanh / 2 + 0.5``). The dense layer's size follows the training patch (84 in the paper).

Our own training differs from the official TF code on purpose: batch norm runs in eval mode at test time (the
official code keeps training mode, so its output depends on the batch), and a decoder conv it applies twice is
applied once. ``authors=True`` builds the network as the authors' code runs it, for their checkpoints (the
same-resolution release, ``model/model.ckpt``): each dense layer's output stacked before its input, the first
decoder conv applied twice (without, then with its batch norm), every batch norm on the image's own statistics with
the trained gamma and beta (epsilon 1e-3). Only the same-resolution variant is built (the multi-resolution one
feeds IR at 1/4 size). The authors' ``generate.py`` reads both images with ``scipy.misc.imread`` (grey files only),
``/ 255``, and saves the output with ``scipy.misc.imsave`` (min-max stretch); :func:`official` does the same.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models.official import Family, OfficialImage, has_keys, near_boundary, scipy_bytescale
from fusion.models.pmgi import conv_parts


def _conv_bn(cin: int, cout: int, eps: float = 1e-5) -> nn.Sequential:
    return nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), nn.BatchNorm2d(cout, eps=eps), nn.ReLU(inplace=True)
    )


def image_bn(x: torch.Tensor, bn: nn.BatchNorm2d, inplace: bool = False, batch: bool = False) -> torch.Tensor:
    """TensorFlow's batch norm in training mode on one image per batch: each image's own statistics, the trained
    gamma and beta, in the fused kernel's order ``(x - mean) * (rsqrt(var + eps) * gamma) + beta``. ``inplace``
    (inference): the variance in one pass (``var_mean``) and the normalisation written over ``x``. ``batch``: the
    whole batch's statistics, as the authors' training graph computes them for its batches of patches."""
    gamma, beta = bn.weight.view(1, -1, 1, 1), bn.bias.view(1, -1, 1, 1)
    dims = (0, 2, 3) if batch else (2, 3)
    if inplace:
        var, mean = torch.var_mean(x, dims, correction=0, keepdim=True)
        return x.sub_(mean).mul_(torch.rsqrt(var + bn.eps) * gamma).add_(beta)
    mean = x.mean(dims, keepdim=True)
    c = x - mean
    scale = torch.rsqrt(c.square().mean(dims, keepdim=True) + bn.eps) * gamma
    return c * scale + beta


class DDcGANGenerator(nn.Module):
    """DDcGAN generator.

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1], any H, W >= 2.
    """

    name = "ddcgan"

    def __init__(
        self,
        width: int = 48,
        dense_layers: int = 4,
        decoder: tuple[int, ...] = (240, 128, 64, 32),
        authors: bool = False,
    ):
        super().__init__()
        self.authors = authors
        self.config = {"width": width, "dense_layers": dense_layers, "decoder": list(decoder), "authors": authors}
        eps = 1e-3 if authors else 1e-5  # tf.layers.batch_normalization's default
        self.stem = _conv_bn(2, width, eps)
        self.dense = nn.ModuleList(_conv_bn(width * (i + 1), width, eps) for i in range(dense_layers))
        chans = [width * (dense_layers + 1), *decoder]
        self.decoder = nn.Sequential(*(_conv_bn(a, b, eps) for a, b in zip(chans[:-1], chans[1:], strict=True)))
        self.head = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(chans[-1], 1, 3))

    def _layer(self, seq: nn.Sequential, x: torch.Tensor | list[torch.Tensor], bn: bool = True) -> torch.Tensor:
        """One reflect-padded conv, batch norm and ReLU; the authors' way (image statistics) with ``authors``.
        ``x``: a map, or (authors) the parts of a dense stack, convolved part by part without concatenating them
        (a channels-last ``torch.cat`` is a slow copy) in eval mode."""
        if not self.authors:
            return seq(x)
        parts = x if isinstance(x, list) else [x]
        fast = not (self.training or torch.is_grad_enabled())
        if fast:  # oneDNN kernels on channels-last maps, the normalisation in place
            y = conv_parts(parts, seq[1].weight, seq[1].bias, 1, pad_mode="reflect")
        else:
            y = seq[1](F.pad(torch.cat(parts, 1), (1, 1, 1, 1), mode="reflect"))
        # training: the batch's statistics (the authors' training graph); inference: each image's (their test, B = 1)
        return F.relu(image_bn(y, seq[2], inplace=fast, batch=self.training) if bn else y, inplace=fast)

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """``tanh / 2 + 0.5`` of the head, (B, 1, H, W) in [0, 1] from both sources on [0, 1]."""
        x = self._layer(self.stem, torch.cat([vis, ir], 1))  # (B, 48, H, W)
        if self.authors:  # the dense stack kept as parts, newest first (the authors' channel order)
            parts = [x]
            for seq in self.dense:
                parts.insert(0, self._layer(seq, parts))
            x = self._layer(self.decoder[1], self._layer(self.decoder[0], self._layer(self.decoder[0], parts, False)))
            for seq in self.decoder[2:]:
                x = self._layer(seq, x)
            return (torch.tanh(self.head(x)) / 2 + 0.5).contiguous()
        for conv in self.dense:
            x = torch.cat([x, conv(x)], 1)  # (B, 48 * k, H, W)
        return torch.tanh(self.head(self.decoder(x))) / 2 + 0.5

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.forward_raw(vis, ir)


class DDcGANDiscriminator(nn.Module):
    """Tells a real source image from a fused one: (B, 1, P, P) in [0, 1] -> (B, 1) probability of "real".

    Args:
        patch_size: side of the training patches (fixes the dense layer's input size).
        authors: the authors' discriminator (``Discriminator.py``): reflection padding, ReLU, batch norm epsilon
            1e-3, the dense layer on the channels-last flattening; ours: zero padding and leaky ReLU.
    """

    def __init__(self, patch_size: int = 84, channels: tuple[int, ...] = (16, 32, 64), authors: bool = False):
        super().__init__()
        self.authors = authors
        layers: list[nn.Module] = []
        cin = 1
        for i, c in enumerate(channels):
            if authors:
                layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, c, 3, stride=2)]
            else:
                layers += [nn.Conv2d(cin, c, 3, stride=2, padding=1)]
            layers += [nn.BatchNorm2d(c, eps=1e-3 if authors else 1e-5)] if i else []
            layers += [nn.ReLU(inplace=True) if authors else nn.LeakyReLU(0.2, inplace=True)]
            cin = c
        self.body = nn.Sequential(*layers)
        side = patch_size
        for _ in channels:
            side = math.ceil(side / 2)  # "same" padding, stride 2
        self.patch_size = patch_size
        self.fc = nn.Linear(cin * side * side, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.patch_size, self.patch_size):
            raise ValueError(f"discriminator expects {self.patch_size}x{self.patch_size} patches, got {x.shape[-2:]}")
        f = self.body(x)
        f = f.permute(0, 2, 3, 1) if self.authors else f  # TensorFlow flattens (H, W, C)
        return torch.tanh(self.fc(f.flatten(1))) / 2 + 0.5


def _detect(obj) -> str | None:
    keys = (
        "Generator/encoder/conv1_1/kernel",
        "Generator_1/decoder/conv2_1_1/kernel",
        "Generator/encoder/b0/batch_normalization/gamma",
    )  # U2Fusion's scopes are the same but for these
    return "" if has_keys(obj, *keys) else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    tf = {k: torch.as_tensor(v) for k, v in parts[""].items()}
    state: dict[str, torch.Tensor] = {}

    def put(ours: str, scope: str, bn: str | None) -> None:
        state[f"{ours}.1.weight"] = tf[f"{scope}/kernel"].permute(3, 2, 0, 1).contiguous()
        state[f"{ours}.1.bias"] = tf[f"{scope}/bias"]
        if bn is None:
            return
        for k, v in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                     ("running_var", "moving_variance")):  # fmt: skip
            state[f"{ours}.2.{k}"] = tf[f"{bn}/batch_normalization/{v}"]
        state[f"{ours}.2.num_batches_tracked"] = torch.zeros((), dtype=torch.long)

    put("stem", "Generator/encoder/conv1_1", "Generator/encoder/b0")
    for i in range(4):
        put(f"dense.{i}", f"Generator/encoder/dense_block_conv{i + 1}", f"Generator/encoder/b{i + 1}")
    # the two decoder layers the authors both scoped 'conv2_1' (TensorFlow made the second 'conv2_1_1')
    for i, scope in enumerate(("conv2_1", "conv2_1_1", "conv2_2", "conv2_3")):
        put(f"decoder.{i}", f"Generator_1/decoder/{scope}", f"Generator/decoder/b{i}")
    state["head.1.weight"] = tf["Generator_1/decoder/conv2_4/kernel"].permute(3, 2, 0, 1).contiguous()
    state["head.1.bias"] = tf["Generator_1/decoder/conv2_4/bias"]
    return state


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """hanna-xu/DDcGAN ``same-resolution vis-ir image fusion/generate.py``: both images read by
    ``scipy.misc.imread`` as stored (the script takes grey files only: a colour file is read as PIL's ``L``, as
    the crops it was tested on were converted), ``/ 255`` in float64 then float32; the output saved with
    ``scipy.misc.imsave`` (min-max stretch): a grey image."""
    from fusion.io import read_as

    vis, ir = (torch.from_numpy(read_as(p, "pil:L").astype(np.float64) / 255.0).float()[None, None]
               for p in (vis_path, ir_path))  # fmt: skip
    levels = scipy_bytescale(model.forward_raw(vis, ir)[0, 0].numpy())
    return OfficialImage(levels.astype(np.uint8), near_boundary(levels, "trunc"))


FAMILY = Family(
    name="ddcgan",
    model=DDcGANGenerator,
    formats="DDcGAN's TensorFlow 1 checkpoint model.ckpt (.index + .data-*: Generator/encoder/conv1_1/kernel ...)",
    detect=_detect,
    convert=_convert,
    native={"authors": True},
    exact={},
    official_needs={"authors": True},
    official=official,
)
