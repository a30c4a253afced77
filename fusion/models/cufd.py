"""CUFD: an encoder-decoder network that separates common and unique features.

Xu, Gong, Tian, Huang and Ma, "CUFD: An encoder-decoder network for visible and infrared image fusion based on
common and unique feature decomposition", Computer Vision and Image Understanding 218, 2022.

Layout (the authors' TensorFlow 1 ``dense_net.py`` and its four coders; reflect padding, batch normalisation with
its moving statistics and epsilon 1e-3 after every conv but the last of each coder, ReLU):
- part 1 (``1part1_model.ckpt``): a multi-scale encoder, 3x3 1->32 then three times 1x1 32->128 and 3x3 128->32,
  whose four 32-channel outputs ``f1..f4`` are the scales; a decoder of the four stacked (128) 3x3 128->64->32->16->1;
- part 2 (``part2_model.ckpt``): one encoder shared by the four scales, from the two sources' features stacked (64)
  to 128 channels in (0, 1): 5x5 64->32, two dense blocks of three (1x1 to 128, 3x3 to 32; the second and third
  stack their input), a 1x1 transfer 96->32 between them and a 3x3 96->128 output; the first 32 channels are the
  visible and infrared common features, the last 64 their unique ones. Its decoder (the same blocks, a 1x1 96->32
  output) turns the fused common and unique features back into a scale's features. ``part2`` also holds copies of
  part 1's convolutions (loaded, unused: the script takes part 1's from ``1part1_model``).
The fusion rule (``fusion.py`` and ``generate.py``): common features weighted by their magnitudes
``|c1| / (|c1| + |c2| + 1e-9)``, unique ones by the larger magnitude; each scale's decoded features plus the
larger-magnitude source feature; part 1's decoder. 1,178,274 values in the two files (RMSProp's slots excluded).
Inputs are each image min-max normalised to [0, 1]; the output ``tanh(x) / 2 + 0.5``, min-max stretched as the
authors' ``imsave`` does (``forward``: their raw output spans about a fifth of the range).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import conv, fold_bn
from fusion.models.official import Family, OfficialImage, has_keys, visible_chroma_rgb
from fusion.models.sdnet import _read_y

EPS = 1e-9  # the rule's epsilon (fusion.py)
M_ENCODER = ("conv1_1", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv4_1", "conv4_2")
M_DECODER = ("conv2_1", "conv2_2", "conv2_3", "conv2_4")
BLOCK = [f"conv{i}_{j}" for i in (1, 2, 3) for j in (1, 2)]  # a dense block's 1x1 and 3x3 convs, three times
S_CODER = ("conv1_1", *(f"dense_block1_{n}" for n in BLOCK), "transfer_layer1", *(f"dense_block2_{n}" for n in BLOCK),
           "output_layer")  # fmt: skip


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Each image of (B, 1, H, W) to [0, 1]: ``(x - min) / (max - min)``, as the script does (a flat image gives NaN
    there; here it gives 0)."""
    lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(torch.finfo(x.dtype).tiny)


class ConvBN(nn.Module):
    """Conv (reflect padding ``pad``), batch normalisation (moving statistics, eps 1e-3) or none, then ReLU or none."""

    def __init__(self, cin: int, cout: int, k: int, pad: int, bn: bool = True, relu: bool = True):
        super().__init__()
        self.pad, self.relu = pad, relu
        self.conv = nn.Conv2d(cin, cout, k)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3) if bn else None

    def forward(self, x: torch.Tensor, fast: bool) -> torch.Tensor:
        if fast:  # the batch norm folded into the conv, its ReLU in the same oneDNN kernel
            w, b = fold_bn(self.conv, self.bn) if self.bn is not None else (self.conv.weight, self.conv.bias)
            return conv(x, w, b, self.pad, act="relu" if self.relu else "none", pad_mode="reflect")
        y = self.conv(F.pad(x, (self.pad,) * 4, mode="reflect") if self.pad else x)
        if self.bn is not None:
            y = self.bn(y)
        return F.relu(y) if self.relu else y


class MEncoder(nn.Module):
    """Part 1's encoder: (B, 1, H, W) -> four (B, 32, H, W) scales."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([ConvBN(1, 32, 3, 1)] + [ConvBN(32, 128, 1, 0) if i % 2 else ConvBN(128, 32, 3, 1)
                                                             for i in range(1, 7)])  # fmt: skip

    def forward(self, x: torch.Tensor, fast: bool) -> list[torch.Tensor]:
        outs = [self.layers[0](x, fast)]
        for i in (1, 3, 5):
            outs.append(self.layers[i + 1](self.layers[i](outs[-1], fast), fast))
        return outs


class SCoder(nn.Module):
    """Part 2's encoder (``out=128``: 3x3 output) or decoder (``out=32``: 1x1 output), (B, 64, H, W) in, values in
    (0, 1) out. The authors apply each block's 1x1 conv inside the next layer, after its reflect padding: the same
    values as padding after it."""

    def __init__(self, out: int):
        super().__init__()
        blocks = []
        for cin in (32, 32, 64):  # a dense block: 1x1 to 128, 3x3 to 32 (+ the input stacked, but the first)
            blocks += [ConvBN(cin, 128, 1, 0, bn=False, relu=False), ConvBN(128, 32, 3, 1)]
        self.layers = nn.ModuleList(
            [ConvBN(64, 32, 5, 2), *blocks, ConvBN(96, 32, 1, 0), *(ConvBN(c.conv.in_channels, c.conv.out_channels,
             c.conv.kernel_size[0], c.pad, c.bn is not None, c.relu) for c in blocks),
             ConvBN(96, out, 3 if out == 128 else 1, 1 if out == 128 else 0, bn=False, relu=False)]
        )  # fmt: skip

    def forward(self, x: torch.Tensor, fast: bool) -> torch.Tensor:
        L = self.layers
        x = L[0](x, fast)
        for start in (1, 8):  # the two dense blocks, the transfer layer between them
            for k in range(3):
                y = L[start + 2 * k + 1](L[start + 2 * k](x, fast), fast)
                x = y if k == 0 else torch.cat([y, x], 1)
            if start == 1:
                x = L[7](x, fast)
        y = L[14](x, fast)
        return torch.tanh(y) / 2 + 0.5


class CUFD(nn.Module):
    """CUFD: ``forward(vis, ir) -> fused`` on (B, 1, H, W) in [0, 1], any size.

    Args:
        exact: the plain ops (conv, batch norm, ReLU apart); otherwise (in eval mode) each conv with its folded
            batch norm and ReLU in one oneDNN kernel on channels-last maps (the same values up to float rounding).
    """

    name = "cufd"
    unused = ("part2_copy",)  # part 1's convolutions as saved in part2_model.ckpt

    def __init__(self, exact: bool = False):
        super().__init__()
        self.exact = exact
        self.config = {"exact": exact}
        self.m_encoder = MEncoder()
        self.m_decoder = nn.ModuleList(
            [ConvBN(128, 64, 3, 1), ConvBN(64, 32, 3, 1), ConvBN(32, 16, 3, 1), ConvBN(16, 1, 3, 1, False, False)]
        )
        self.s_encoder, self.s_decoder = SCoder(128), SCoder(32)
        copy = nn.ModuleDict()
        for name, m in (("m_encoder", self.m_encoder.layers), ("m_decoder", self.m_decoder)):
            copy[name] = nn.ModuleList(
                nn.Conv2d(c.conv.in_channels, c.conv.out_channels, c.conv.kernel_size) for c in m
            )
        self.part2_copy = copy

    # the script min-max normalises each source and its imsave stretches the output (which spans about a fifth of
    # [0, 1]: 145-194 of 255 on TNO): image-wide steps, which tiling (fusion.models.tiling) runs on the whole image
    # around the tiles of forward_raw
    def prepare(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return minmax(vis), minmax(ir)

    def finish(self, out: torch.Tensor) -> torch.Tensor:
        out = minmax(out)
        return out + (out.clamp(0, 1) - out).detach()

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """``tanh(x) / 2 + 0.5`` of part 1's decoder, from (B, 1, H, W) inputs already min-max normalised."""
        fast = not (self.exact or self.training)
        f_vis, f_ir = self.m_encoder(vis, fast), self.m_encoder(ir, fast)
        scales = []
        for f1, f2 in zip(f_vis, f_ir, strict=True):
            cu = self.s_encoder(torch.cat([f1, f2], 1), fast)
            c1, c2, u1, u2 = cu.split(32, 1)
            w = c1.abs() / (c1.abs() + c2.abs() + EPS)
            common = w * c1 + (1 - w) * c2
            unique = torch.where(u1.abs() > u2.abs(), u1, u2)
            scales.append(
                self.s_decoder(torch.cat([common, unique], 1), fast) + torch.where(f1.abs() > f2.abs(), f1, f2)
            )
        x = torch.cat(scales, 1)
        for layer in self.m_decoder:
            x = layer(x, fast)
        return (torch.tanh(x) / 2 + 0.5).contiguous()

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.finish(self.forward_raw(*self.prepare(vis, ir)))


def _detect(obj) -> str | None:
    if has_keys(obj, "s_encoder/conv1_1/kernel", "s_decoder/output_layer/kernel"):
        return "part2"
    return (
        "part1"
        if has_keys(obj, "m_encoder/conv1_1/kernel", "DenseFuseNet/m_encoder/b0/batch_normalization/beta")
        else None
    )


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}

    def put(ours: str, tf: dict, scope: str, bn_scope: str | None, index: int, conv_only: bool = False) -> None:
        state[f"{ours}.weight"] = torch.as_tensor(tf[f"{scope}/kernel"]).permute(3, 2, 0, 1).contiguous()
        state[f"{ours}.bias"] = torch.as_tensor(tf[f"{scope}/bias"])
        if bn_scope is None or conv_only:
            return
        base = ours.removesuffix(".conv")
        for k, v in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                     ("running_var", "moving_variance")):  # fmt: skip
            state[f"{base}.bn.{k}"] = torch.as_tensor(tf[f"{bn_scope}/b{index}/batch_normalization/{v}"])
        state[f"{base}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)

    p1, p2 = parts["part1"], parts["part2"]
    for i, n in enumerate(M_ENCODER):
        put(f"m_encoder.layers.{i}.conv", p1, f"m_encoder/{n}", "DenseFuseNet/m_encoder", i)
        put(f"part2_copy.m_encoder.{i}", p2, f"m_encoder/{n}", None, i)
    for i, n in enumerate(M_DECODER):
        put(f"m_decoder.{i}.conv", p1, f"m_decoder/{n}", "DenseFuseNet/m_decoder" if i < 3 else None, i)
        put(f"part2_copy.m_decoder.{i}", p2, f"m_decoder/{n}", None, i)
    for coder in ("s_encoder", "s_decoder"):
        for i, n in enumerate(S_CODER):
            # the batch norms are named after the layer that applies them: a block's 3x3 conv (b2, b4, ...), not its
            # 1x1 (the authors apply that inside the next layer); the output layer has none
            has_bn = i not in (1, 3, 5, 8, 10, 12, 14)
            put(f"{coder}.layers.{i}.conv", p2, f"{coder}/{n}", f"DenseFuseNet/{coder}" if has_bn else None, i)
    return state


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """VIF-Benchmark ``CUFD/CUFD.py`` (the authors' ``generate.py`` with ``img2RGB``): both images read as the Y of
    PIL's YCbCr, ``/ 255`` in float32, min-max normalised; the rule as the script computes it (float32); the output
    saved with ``scipy.misc.imsave`` (min-max stretch), then the visible image's chroma."""
    vis, ir = (torch.from_numpy(_read_y(p) / np.float32(255))[None, None] for p in (vis_path, ir_path))
    out = model.forward_raw(*model.prepare(vis, ir))[0, 0].numpy()
    return visible_chroma_rgb(out, vis_path)


FAMILY = Family(
    name="cufd",
    model=CUFD,
    formats="CUFD's TensorFlow 1 checkpoints 1part1_model.ckpt and part2_model.ckpt (.index + .data-*)",
    detect=_detect,
    convert=_convert,
    parts=("part1", "part2"),
    exact={},  # TensorFlow rounds its own way: the fast kernels match it as closely as the plain ones
    official=official,
)
