"""SeAFusion: a semantic-aware real-time infrared and visible image fusion network.

Tang, Yuan and Ma, "Image fusion in the loop of high-level vision tasks: A semantic-aware real-time infrared and
visible image fusion network", Information Fusion 82, 2022.

Layout (the authors' ``FusionNet``): per source, a 3x3 conv 1->16 and two gradient residual dense blocks (GRDB,
16->32->48): a two-conv dense path (3x3, leaky ReLU 0.2) reduced by a 1x1 conv, plus a Sobel path (|Sx| + |Sy| of
the block input, depth-wise and fixed) lifted by a 1x1 conv, summed under leaky ReLU 0.1. The two 48-channel
encodings are concatenated and decoded by 3x3 convs 96->64->32->16 (leaky ReLU 0.2) and 16->1 (tanh / 2 + 0.5).
167,113 values in the authors' state_dict: the decoder builds batch norms that its forward never applies, and the
Sobel kernels are saved too; all load here, and the batch norms stay unused as in the authors' code.

Our fast path (``exact=False``) computes the same function without concatenations and with fused convolution
kernels on channels-last maps (:mod:`fusion.models._fast`); ``exact=True`` keeps the authors' arithmetic bit for
bit. The authors' test script (``official``) is VIF-Benchmark's ``SeAFusion/SeAFusion.py``,
written by SeAFusion's first author, which released these weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import channels_last, conv
from fusion.models.official import Family, OfficialImage, has_keys, near_boundary, to_input

SOBEL = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])


class _Conv(nn.Module):
    """3x3 (or 1x1) conv under the authors' module name (``conv``); ``bn`` when their layer builds one."""

    def __init__(self, cin: int, cout: int, k: int = 3, bn: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        if bn:
            self.bn = nn.BatchNorm2d(cout)  # built, saved, never applied (as the authors' ConvBn* layers)


class _Sobel(nn.Module):
    """Depth-wise Sobel kernels, saved in the authors' file: (C, 1, 3, 3) each. Fixed (buffers) unless
    ``trainable``: the authors' ``Sobelxy`` are ``nn.Conv2d`` weights, which their training updates with the rest."""

    def __init__(self, channels: int, trainable: bool = False):
        super().__init__()
        kx, ky = SOBEL.expand(channels, 1, 3, 3).clone(), SOBEL.t().expand(channels, 1, 3, 3).clone()
        if trainable:
            self.x, self.y = nn.Parameter(kx), nn.Parameter(ky)
        else:
            self.register_buffer("x", kx)
            self.register_buffer("y", ky)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(x, self.x, padding=1, groups=c).abs() + F.conv2d(x, self.y, padding=1, groups=c).abs()


def _conv_lrelu(c: nn.Conv2d, x: torch.Tensor, slope: float) -> torch.Tensor:
    return conv(x, c.weight, c.bias, c.padding[0], act="leaky_relu", slope=slope, keep_layout=True)


class _Dense(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = _Conv(c, c)
        self.conv2 = _Conv(2 * c, c)


class GRDB(nn.Module):
    """Gradient residual dense block: (B, C, H, W) -> (B, C_out, H, W)."""

    def __init__(self, cin: int, cout: int, train_sobel: bool = False):
        super().__init__()
        self.dense = _Dense(cin)
        self.convdown = _Conv(3 * cin, cout, 1)
        self.sobelconv = _Sobel(cin, train_sobel)
        self.convup = _Conv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv + leaky ReLU and conv + sum fused into one oneDNN kernel each: bit for bit the authors' separate ops
        d = torch.cat((x, _conv_lrelu(self.dense.conv1.conv, x, 0.2)), 1)
        d = torch.cat((d, _conv_lrelu(self.dense.conv2.conv, d, 0.2)), 1)
        up, down = self.convup.conv, self.convdown.conv
        s = conv(self.sobelconv(x), up.weight, up.bias, add=conv(d, down.weight, down.bias, keep_layout=True))
        return F.leaky_relu(s, 0.1, inplace=True)


class SeAFusion(nn.Module):
    """SeAFusion's fusion network (grey / Y channel).

    Args:
        exact: the authors' arithmetic; otherwise the fast path, the same function up to float rounding.
        train_sobel: the gradient blocks' Sobel kernels are trained, as the authors' training does (their
            ``Sobelxy`` are conv weights); by default they stay the fixed Sobel operator the paper describes.

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in (0, 1), any H, W.
    """

    name = "seafusion"
    unused = ("bn.",)  # the decoder's batch norms: saved by the authors, never applied

    def __init__(self, exact: bool = False, train_sobel: bool = False):
        super().__init__()
        self.exact = exact
        self.config = {"exact": exact, "train_sobel": train_sobel}
        ch = (16, 32, 48)
        for src in ("vis", "inf"):
            setattr(self, f"{src}_conv", _Conv(1, ch[0]))
            setattr(self, f"{src}_rgbd1", GRDB(ch[0], ch[1], train_sobel))
            setattr(self, f"{src}_rgbd2", GRDB(ch[1], ch[2], train_sobel))
        self.decode4 = _Conv(2 * ch[2], 2 * ch[1], bn=True)
        self.decode3 = _Conv(2 * ch[1], 2 * ch[0], bn=True)
        self.decode2 = _Conv(2 * ch[0], ch[0], bn=True)
        self.decode1 = _Conv(ch[0], 1, bn=True)

    def _encode(self, src: str, x: torch.Tensor) -> torch.Tensor:
        x = _conv_lrelu(getattr(self, f"{src}_conv").conv, x, 0.2)
        return getattr(self, f"{src}_rgbd2")(getattr(self, f"{src}_rgbd1")(x))

    def _decode(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.decode4, self.decode3, self.decode2):
            x = _conv_lrelu(layer.conv, x, 0.2)
        return torch.tanh(self.decode1.conv(x)) / 2 + 0.5

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The network's output (already in [0, 1]), as :meth:`forward`."""
        return self.forward(vis, ir)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        if self.exact or self.training:
            return self._decode(torch.cat((self._encode("vis", vis), self._encode("inf", ir)), 1))
        return self._fast(vis, ir)

    def _fast(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """Both encoders as one grouped network (channels [visible | infrared] at every layer), convolutions with
        their activations fused (:mod:`fusion.models._fast`), channels-last maps."""
        x = channels_last(torch.cat((vis, ir), 1))
        x = conv(x, *_pair(self.vis_conv.conv, self.inf_conv.conv), 1, groups=2, act="leaky_relu", slope=0.2)
        for blk in ("rgbd1", "rgbd2"):
            x = _grdb_pair(getattr(self, f"vis_{blk}"), getattr(self, f"inf_{blk}"), x)
        for layer in (self.decode4, self.decode3, self.decode2):
            x = conv(x, layer.conv.weight, layer.conv.bias, 1, act="leaky_relu", slope=0.2)
        x = conv(x, self.decode1.conv.weight, self.decode1.conv.bias, 1, act="tanh")
        return (x / 2 + 0.5).contiguous()


def _pair(a: nn.Conv2d, b: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of one grouped conv running ``a`` on the first channel group and ``b`` on the second."""
    return torch.cat((a.weight, b.weight)), torch.cat((a.bias, b.bias))


def _grdb_pair(v: GRDB, i: GRDB, x: torch.Tensor) -> torch.Tensor:
    """The visible and infrared blocks on x = [xv | xi] as grouped convs; returns [out_v | out_i]."""
    c = v.dense.conv1.conv.in_channels
    # |Sx| + |Sy| then a 1x1 conv = one depth-wise conv giving (Sx, Sy) per channel, abs, and the 1x1 conv doubled
    sob = torch.stack((torch.cat((v.sobelconv.x, i.sobelconv.x)), torch.cat((v.sobelconv.y, i.sobelconv.y))), 1)
    g = conv(x, sob.flatten(0, 1), None, 1, groups=2 * c).abs_()
    wu, bu = _pair(v.convup.conv, i.convup.conv)
    w, b = _pair(v.convdown.conv, i.convdown.conv)
    up = conv(g, wu.repeat_interleave(2, 1), bu + b, groups=2)
    del g  # maps are freed as soon as they are used: a 640x480 pair holds up to 200 channels at once here
    d1 = conv(x, *_pair(v.dense.conv1.conv, i.dense.conv1.conv), 1, groups=2, act="leaky_relu", slope=0.2)
    xd = torch.cat((x[:, :c], d1[:, :c], x[:, c:], d1[:, c:]), 1)  # each group's dense input: [x, d1]
    del x, d1
    d2 = conv(xd, *_pair(v.dense.conv2.conv, i.dense.conv2.conv), 1, groups=2, act="leaky_relu", slope=0.2)
    d = torch.cat((xd[:, : 2 * c], d2[:, :c], xd[:, 2 * c :], d2[:, c:]), 1)  # [x, d1, d2] per group
    del xd, d2
    return conv(d, w, None, groups=2, add=up, act="leaky_relu", slope=0.1)


def _detect(obj) -> str | None:
    return (
        "" if has_keys(obj, "vis_conv.conv.weight", "inf_rgbd2.sobelconv.convx.weight", "decode1.bn.weight") else None
    )


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    state = {}
    for k, v in parts[""].items():
        k = k.removeprefix("module.").replace("sobelconv.convx.weight", "sobelconv.x")
        state[k.replace("sobelconv.convy.weight", "sobelconv.y")] = v
    return state


def _rgb2ycrcb(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VIF-Benchmark ``SeAFusion/utils.py`` ``RGB2YCrCb``: Y, Cb, Cr of (B, 3, H, W) in [0, 1], each clamped."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr, cb = (r - y) * 0.713 + 0.5, (b - y) * 0.564 + 0.5
    return y.clamp(0.0, 1.0), cb.clamp(0.0, 1.0), cr.clamp(0.0, 1.0)


def _ycbcr2rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """VIF-Benchmark ``YCbCr2RGB``: one (N, 3) x (3, 3) product on (Y, Cr, Cb) rows, then clamp to [0, 1]."""
    ycrcb = torch.cat([y, cr, cb], dim=1)
    b, c, h, w = ycrcb.shape
    flat = ycrcb.transpose(1, 3).transpose(1, 2).reshape(-1, 3)
    mat = torch.tensor([[1.0, 1.0, 1.0], [1.403, -0.714, 0.0], [0.0, -0.344, 1.773]])
    out = (flat + torch.tensor([0.0 / 255, -0.5, -0.5])).mm(mat)
    return out.reshape(b, h, w, c).transpose(1, 3).transpose(2, 3).clamp(0, 1.0)


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """VIF-Benchmark ``SeAFusion/SeAFusion.py``: visible read as RGB and infrared as grey by PIL, ``to_tensor``;
    the fused Y with the visible Cb and Cr back to RGB; ``tensor2img(is_norm=True)``: the RGB image min-max
    stretched as a whole, times 255, truncated to uint8; saved as RGB (also for a grey visible image)."""
    from fusion.io import read_as

    vis, ir = to_input(read_as(vis_path, "pil:RGB")), to_input(read_as(ir_path, "pil:L"))
    y, cb, cr = _rgb2ycrcb(vis)
    img = _ycbcr2rgb(model(y, ir), cb, cr)[0].numpy()  # (3, H, W) float32
    img = (img - np.min(img)) / (np.max(img) - np.min(img))
    levels = np.transpose(img, (1, 2, 0)) * 255.0
    return OfficialImage(levels.astype(np.uint8), near_boundary(levels, "trunc").any(-1))


FAMILY = Family(
    name="seafusion",
    model=SeAFusion,
    formats="SeAFusion.pth (a state_dict with vis_conv.conv.weight and inf_rgbd2.sobelconv.convx.weight)",
    detect=_detect,
    convert=_convert,
    official=official,
)
