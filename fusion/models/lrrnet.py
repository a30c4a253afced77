"""LRRNet: a novel representation learning guided fusion network for infrared and visible images.

Li, Xu, Wu and Kittler, "LRRNet: A Novel Representation Learning Guided Fusion Network for Infrared and Visible
Images", IEEE TPAMI 45(9), 2023.

Layout (the authors' ``net_lista.py``, ``LRR_NET(s=3, n=128, channel=1, stride=1, num_block=4, 'cat')``): each
source has its own learned low-rank decomposition (``GetLS_Net``), an unrolled LISTA of four blocks on 256 channels:

    z = soft(W0 x, lam);  repeat 4x:  z = soft(lam_z z + Wt(x - Wd z), lam)    (soft: per-channel soft threshold)

whose first 128 channels are the low-rank part and the last 128 the sparse part. A decoder maps each of the four
parts to one channel (3x3 conv), fuses the low-rank pair and the sparse pair with a 3x3 conv on their concatenation,
and adds them. Every conv is reflection-padded. 49,204 values in the authors' state_dict.

Input and output scale: the network's output spans about a quarter of the range of its inputs, and the authors'
test script min-max normalises each source and stretches each output; ``forward`` does the same (image-wide
steps: tiles of a large image are normalised and stretched together, :meth:`LRRNet.prepare`, :meth:`LRRNet.finish`).

Speed: the 256-channel maps make the network bound by memory traffic, not arithmetic. The fast path
(:meth:`Decomposition.fast`) makes about a third of the authors' passes over them: convolutions to and from one
channel as matrix products, lam_z folded into a running scale, the soft threshold in place (``exact=True``: the
authors' arithmetic bit for bit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._util import clamp01
from fusion.models.official import Family, OfficialImage, grey_result, has_keys

EPSILON = 1e-5  # the authors' utils.py (normalize_tensor, save_image)


class ConvLayer(nn.Module):
    """Reflection-padded conv (the authors' ``ConvLayer``, key ``conv2d``)."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.conv2d = nn.Conv2d(cin, cout, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"))


def soft_threshold(r: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """The authors' ``eta_l1``: sign(r) * max(|r| - lam, 0) with a per-channel lam of shape (1, C)."""
    return torch.sign(r) * torch.clamp(torch.abs(r) - lam.view(1, -1, 1, 1), 0)


class LRRBlock(nn.Module):
    def __init__(self, n: int, c: int = 1):
        super().__init__()
        self.conv_Wdz = ConvLayer(n, c)
        self.conv_Wdtz = ConvLayer(c, n)

    def forward(self, x, z, lam, lam_z) -> torch.Tensor:
        return soft_threshold(lam_z * z + self.conv_Wdtz(x - self.conv_Wdz(z)), lam)


class Decomposition(nn.Module):
    """``GetLS_Net``: (B, 1, H, W) -> (low-rank, sparse), (B, n, H, W) each."""

    def __init__(self, n: int = 128, blocks: int = 4, c: int = 1):
        super().__init__()
        self.conv_W00 = ConvLayer(c, 2 * n)
        self.lamj = nn.Parameter(torch.rand(1, 2 * n))
        self.lamz = nn.Parameter(torch.rand(1, 1))
        for i in range(blocks):
            self.add_module(f"lrrblock{i}", LRRBlock(2 * n, c))
        self.n, self.blocks = n, blocks

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = soft_threshold(self.conv_W00(x), self.lamj)
        for i in range(self.blocks):
            z = getattr(self, f"lrrblock{i}")(x, z, self.lamj, self.lamz)
        return z[:, : self.n], z[:, self.n :]

    def fast(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(u, s) with z = s u, the same iteration with fewer passes over the 2n-channel maps, which bound its speed:
        each conv to or from one channel is one matrix product (:func:`_from_one`, :func:`_to_one`), lam_z z + Wt(.)
        is one product added to u (the scale s = lam_z^k carries lam_z), and the soft threshold runs in place."""
        u = _from_one(x, self.conv_W00.conv2d)
        s = 1.0
        _soft_(u, self.lamj.view(-1))
        for i in range(self.blocks):
            blk = getattr(self, f"lrrblock{i}")
            m = x - _to_one(u, blk.conv_Wdz.conv2d, s)
            s = s * float(self.lamz)  # lam_z s u + Wt(m) = s' (u + Wt(m) / s')
            u = _from_one(m, blk.conv_Wdtz.conv2d, 1.0 / s, add=u)
            _soft_(u, self.lamj.view(-1) / s)
        return u, s


def _planes(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 9, H*W): the 3x3 neighbourhoods of a reflection-padded one-channel map (im2col)."""
    b, _, h, w = x.shape
    return F.unfold(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3).view(b, 9, h * w)


def _from_one(x: torch.Tensor, conv2d: nn.Conv2d, scale: float = 1.0, add: torch.Tensor | None = None) -> torch.Tensor:
    """``scale * conv2d(reflect_pad(x)) (+ add)`` for a conv 1 -> C, as one (C, 10) x (10, HW) product per image
    (the bias a tenth column), written straight into NCHW memory."""
    b, _, h, w = x.shape
    cols = torch.cat([_planes(x), x.new_ones(b, 1, h * w)], 1)  # (B, 10, HW)
    wb = torch.cat([conv2d.weight.view(conv2d.out_channels, 9), conv2d.bias.view(-1, 1)], 1) * scale
    if add is None:
        return torch.matmul(wb, cols).view(b, -1, h, w)
    out = add.view(b, -1, h * w)
    for i in range(b):
        out[i].addmm_(wb, cols[i])
    return add


def _to_one(u: torch.Tensor, conv2d: nn.Conv2d, scale: float = 1.0) -> torch.Tensor:
    """``conv2d(reflect_pad(scale * u))`` for a conv C -> 1: the nine (1, C) channel contractions as one (9, C) x (C,
    HW) product (one pass over u), then the nine planes, reflection-padded, shifted and added."""
    b, c, h, w = u.shape
    p = torch.matmul(conv2d.weight.view(c, 9).t() * scale, u.view(b, c, h * w)).view(b, 9, h, w)
    p = F.pad(p, (1, 1, 1, 1), mode="reflect")  # padding commutes with a per-pixel contraction
    out = conv2d.bias.view(1, 1, 1, 1).expand(b, 1, h, w).clone()
    for k in range(9):
        dy, dx = divmod(k, 3)
        out += p[:, k : k + 1, dy : dy + h, dx : dx + w]
    return out


def _soft_(r: torch.Tensor, lam: torch.Tensor) -> None:
    """:func:`soft_threshold` in place on (B, C, H, W): r - clamp(r, -lam, lam) where lam >= 0, and
    r + sign(r) |lam| on the channels where lam < 0 (the released files have one)."""
    neg = torch.nonzero(lam < 0).flatten().tolist()
    keep = r[:, neg].clone() if neg else None
    lp = lam.clamp_min(0).view(1, -1, 1, 1)
    r.sub_(torch.maximum(torch.minimum(r, lp), -lp))
    if neg:
        r[:, neg] = keep + torch.sign(keep) * lam[neg].abs().view(1, -1, 1, 1)


class LRRNet(nn.Module):
    """LRRNet (grey / Y channel).

    Args:
        n, blocks: channels of each part and unrolled blocks (the released model: 128, 4).
        exact: the authors' arithmetic bit for bit; otherwise the fast path (same function up to float rounding).

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1] (stretched), any H, W >= 2.
    """

    name = "lrrnet"

    def __init__(self, n: int = 128, blocks: int = 4, exact: bool = False):
        super().__init__()
        self.exact = exact
        self.config = {"n": n, "blocks": blocks, "exact": exact}
        self.get_ls1 = Decomposition(n, blocks)  # infrared
        self.get_ls2 = Decomposition(n, blocks)  # visible
        self.decoder = _Decoder(n)

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The decoder's output, unclamped (the authors' ``out['fuse']``)."""
        d = self.decoder
        if self.exact or self.training:
            xl, xs = self.get_ls1(ir)
            yl, ys = self.get_ls2(vis)
            low = d.conv_ReL(torch.cat([d.conv_ReZx(xl), d.conv_ReZy(yl)], 1))
            high = d.conv_ReH(torch.cat([d.conv_ReUx(xs), d.conv_ReUy(ys)], 1))
            return low + high
        n = self.get_ls1.n
        parts = []
        for net, conv_l, conv_s, x in ((self.get_ls1, d.conv_ReZx, d.conv_ReUx, ir), (self.get_ls2, d.conv_ReZy,
                                                                                      d.conv_ReUy, vis)):  # fmt: skip
            u, s = net.fast(x)
            parts.append((_to_one(u[:, :n], conv_l.conv2d, s), _to_one(u[:, n:], conv_s.conv2d, s)))
            del u
        (xl, xs), (yl, ys) = parts
        return d.conv_ReL(torch.cat([xl, yl], 1)) + d.conv_ReH(torch.cat([xs, ys], 1))

    # the authors' network expects each source min-max normalised and its output is stretched: both are image-wide
    # steps, which tiling (fusion.models.tiling) runs around the tiles of forward_raw
    def prepare(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return normalise(vis), normalise(ir)

    def finish(self, out: torch.Tensor) -> torch.Tensor:
        return clamp01(normalise(out))

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.finish(self.forward_raw(*self.prepare(vis, ir)))


class _Decoder(nn.Module):
    """``Decoder_simple`` with the ``cat`` fusion: four 3x3 convs n->1, two 3x3 convs 2->1."""

    def __init__(self, n: int = 128):
        super().__init__()
        for k in ("conv_ReZx", "conv_ReUx", "conv_ReZy", "conv_ReUy"):
            setattr(self, k, ConvLayer(n, 1))
        self.conv_ReL = ConvLayer(2, 1)
        self.conv_ReH = ConvLayer(2, 1)


def normalise(t: torch.Tensor) -> torch.Tensor:
    """The authors' ``normalize_tensor``: each image min-max scaled, (t - min) / (max - min + 1e-5)."""
    flat = t.view(t.shape[0], -1)
    lo, hi = flat.min(1)[0].view(-1, 1, 1, 1), flat.max(1)[0].view(-1, 1, 1, 1)
    return (t - lo) / (hi - lo + EPSILON)


def _detect(obj) -> str | None:
    return (
        ""
        if has_keys(obj, "get_ls1.lamj", "get_ls1.conv_W00.conv2d.weight", "decoder.conv_ReL.conv2d.weight")
        else None
    )


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in parts[""].items()}


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """hli1221/imagefusion-LRRNet ``testing_fusion_lrr.py``: both images read by ``cv2.imread(p,
    IMREAD_GRAYSCALE)`` as float 0-255, each min-max normalised (``normalize_tensor``), ``model(ir, vis)``; the
    output min-max stretched, (x - min) / (max - min + 1e-5) * 255, truncated to uint8 (the GPU branch of
    ``save_image``, which does not clamp): a grey PNG."""
    from fusion.io import read_as

    ir = torch.from_numpy(read_as(ir_path, "cv2:grey")[None, None].astype(np.float32))
    vis = torch.from_numpy(read_as(vis_path, "cv2:grey")[None, None].astype(np.float32))
    img = model.forward_raw(normalise(vis), normalise(ir))[0].numpy()
    img = (img - np.min(img)) / (np.max(img) - np.min(img) + EPSILON)
    return grey_result((img * 255)[0], "trunc")


FAMILY = Family(
    name="lrrnet",
    model=LRRNet,
    formats="LRRNet's final_lrr_net_..._block_4.model (a state_dict with get_ls1.lamj, get_ls1.conv_W00.conv2d.weight)",
    detect=_detect,
    convert=_convert,
    official=official,
)
