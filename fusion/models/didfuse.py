"""DIDFuse: deep image decomposition for infrared and visible image fusion.

Zhao, Xu, Zhang, Liu, Zhang and Li, "DIDFuse: Deep Image Decomposition for Infrared and Visible Image Fusion",
IJCAI 2020.

Layout (the authors' ``DIDFuse.py``), 64 channels throughout, every conv 3x3 with batch norm:
- encoder: reflection-padded conv 1->64 and PReLU (feature 1), conv 64->64 and PReLU (feature 2), then two heads on
  feature 2, each a conv 64->64 with tanh: the background (base) and the detail maps;
- decoder: conv on [base, detail] 128->64 (PReLU), conv on [that, feature 2] 128->64 (PReLU), reflection-padded conv
  on [that, feature 1] 128->1, batch norm and sigmoid.
At test time the four maps of the two sources are added (the authors' ``Sum``; their code also has ``Average`` and an
l1-norm rule) and decoded. The authors publish the encoder and the decoder as two files, each ``{"weight":
state_dict, "epoch": ...}``: 112,454 + 149,258 values.

Our fast path folds the batch norms into the convolutions, runs both sources through the encoder as one batch and
fuses the activations into the convolutions (:mod:`fusion.models._fast`); ``exact=True`` keeps the authors'
arithmetic bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import conv, fold_bn
from fusion.models.official import Family, OfficialImage, has_keys, near_boundary, to_input, unwrap

RULES = ("sum", "average", "l1")


def _layer(cin: int, cout: int, act: nn.Module, reflect: bool = False) -> nn.Sequential:
    """[reflection pad,] 3x3 conv, batch norm, activation: the authors' ``CovN`` body (index names kept)."""
    pad = [nn.ReflectionPad2d(1)] if reflect else []
    return nn.Sequential(*pad, nn.Conv2d(cin, cout, 3, padding=0 if reflect else 1), nn.BatchNorm2d(cout), act)


class _Cov(nn.Module):
    """The authors' ``CovN`` wrapper, so that their keys (``cov1.cov1.1.weight``) load unchanged."""

    def __init__(self, n: int, body: nn.Sequential):
        super().__init__()
        setattr(self, f"cov{n}", body)
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"cov{self.n}")(x)

    @property
    def body(self) -> nn.Sequential:
        return getattr(self, f"cov{self.n}")


class Encoder(nn.Module):
    """(B, 1, H, W) -> (feature 1, feature 2, base, detail), each (B, 64, H, W)."""

    def __init__(self, c: int = 64):
        super().__init__()
        self.cov1 = _Cov(1, _layer(1, c, nn.PReLU(), reflect=True))
        self.cov2 = _Cov(2, _layer(c, c, nn.PReLU()))
        self.cov3 = _Cov(3, _layer(c, c, nn.Tanh()))
        self.cov4 = _Cov(4, _layer(c, c, nn.Tanh()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f1 = self.cov1(x)
        f2 = self.cov2(f1)
        return f1, f2, self.cov3(f2), self.cov4(f2)


class Decoder(nn.Module):
    """(feature 1, feature 2, base, detail) -> (B, 1, H, W) in (0, 1)."""

    def __init__(self, c: int = 64):
        super().__init__()
        self.cov5 = _Cov(5, _layer(2 * c, c, nn.PReLU()))
        self.cov6 = _Cov(6, _layer(2 * c, c, nn.PReLU()))
        self.cov7 = _Cov(7, _layer(2 * c, 1, nn.Sigmoid(), reflect=True))

    def forward(self, f1, f2, base, detail) -> torch.Tensor:
        out = self.cov5(torch.cat([base, detail], 1))
        out = self.cov6(torch.cat([out, f2], 1))
        return self.cov7(torch.cat([out, f1], 1))


def l1_weighted(a: torch.Tensor, b: torch.Tensor, r: int = 1) -> torch.Tensor:
    """The authors' ``l1_addition``: each map weighted by its share of the local (2r+1)^2 mean of |features|
    summed over channels (their all-ones kernel over every input channel)."""
    k = torch.ones(a.shape[1], a.shape[1], 2 * r + 1, 2 * r + 1, dtype=a.dtype, device=a.device) / (2 * r + 1) ** 2
    act_a, act_b = F.conv2d(a.abs(), k, padding=r), F.conv2d(b.abs(), k, padding=r)
    return act_a / (act_a + act_b) * a + act_b / (act_a + act_b) * b


class DIDFuse(nn.Module):
    """DIDFuse: one encoder for both sources, feature maps added, one decoder.

    Args:
        rule: how the two sources' maps combine: ``"sum"`` (the authors' test script), ``"average"`` or ``"l1"``.
        exact: the authors' arithmetic bit for bit; otherwise the fast path (same function up to float rounding).

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in (0, 1), any H, W >= 2.
    """

    name = "didfuse"

    def __init__(self, rule: str = "sum", exact: bool = False):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"DIDFuse rule must be one of {RULES}, got {rule!r}")
        self.rule, self.exact = rule, exact
        self.config = {"rule": rule, "exact": exact}
        self.encoder = Encoder()
        self.decoder = Decoder()

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.rule == "sum":
            return a + b
        return (a + b) / 2 if self.rule == "average" else l1_weighted(a, b)

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The network's output (already in [0, 1]), as :meth:`forward`."""
        return self.forward(vis, ir)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        if self.exact or self.training:
            fi, fv = self.encoder(ir), self.encoder(vis)  # the authors' order: infrared first
            f1, f2, base, detail = (self.combine(i, v) for i, v in zip(fi, fv, strict=True))
            return self.decoder(f1, f2, base, detail)
        return self._fast(vis, ir)

    def _fast(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        b = vis.shape[0]
        x = torch.cat([ir, vis])
        e = self.encoder
        f1 = conv(x, *fold_bn(e.cov1.body[1], e.cov1.body[2]), 1, **_prelu(e.cov1.body[3]), pad_mode="reflect")
        f2 = conv(f1, *fold_bn(e.cov2.body[0], e.cov2.body[1]), 1, **_prelu(e.cov2.body[2]))
        base = conv(f2, *fold_bn(e.cov3.body[0], e.cov3.body[1]), 1, act="tanh")
        detail = conv(f2, *fold_bn(e.cov4.body[0], e.cov4.body[1]), 1, act="tanh")
        f1, f2, base, detail = (self.combine(t[:b], t[b:]) for t in (f1, f2, base, detail))
        d = self.decoder
        out = _split_conv(d.cov5.body, [base, detail], 1, **_prelu(d.cov5.body[2]))
        out = _split_conv(d.cov6.body, [out, f2], 1, **_prelu(d.cov6.body[2]))
        w, bias = fold_bn(d.cov7.body[1], d.cov7.body[2])
        c = out.shape[1]
        y = conv(out, w[:, :c], bias, 1, pad_mode="reflect")
        return conv(f1, w[:, c:], None, 1, add=y, act="sigmoid", pad_mode="reflect").contiguous()


def _prelu(act: nn.PReLU) -> dict:
    """A one-parameter PReLU is a leaky ReLU whose slope is that parameter: fused into the conv."""
    assert act.weight.numel() == 1, "the authors' PReLUs have one parameter"
    return {"act": "leaky_relu", "slope": float(act.weight.detach())}


def _split_conv(body: nn.Sequential, parts: list[torch.Tensor], padding: int, **act) -> torch.Tensor:
    """act(conv + folded batch norm) over the concatenation of ``parts``, one conv per part added in the kernels."""
    w, bias = fold_bn(body[0], body[1])
    out, start = None, 0
    for i, p in enumerate(parts):
        c = p.shape[1]
        last = act if i == len(parts) - 1 else {}
        out = conv(p, w[:, start : start + c], bias if out is None else None, padding, add=out, **last)
        start += c
    return out


def _detect(obj) -> str | None:
    sd = unwrap(obj, "weight")
    if has_keys(sd, "cov1.cov1.1.weight", "cov4.cov4.0.weight"):
        return "encoder"
    if has_keys(sd, "cov5.cov5.0.weight", "cov7.cov7.1.weight"):
        return "decoder"
    return None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    state = {}
    for part in ("encoder", "decoder"):
        for k, v in unwrap(parts[part], "weight").items():
            state[f"{part}.{k.removeprefix('module.')}"] = v
    return state


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """Zhaozixiang1228/IVIF-DIDFuse ``test.py`` (``Sum``): ``np.array(Image.open(p), 'float32') / 255`` for both
    images, the sigmoid output saved by scikit-image's ``imsave`` of the time (imageio 2's float conversion:
    ``uint8(x * 255 + 0.499999999)`` in float64): a grey PNG. The script reads one channel; a colour image is read as
    PIL's ``convert('L')`` gives it (the grey image the script needs)."""
    from fusion.io import read_as

    ir, vis = to_input(read_as(ir_path, "pil:L")), to_input(read_as(vis_path, "pil:L"))
    out = model(vis, ir)[0, 0].numpy()
    levels = out.astype(np.float64) * 255 + 0.499999999
    return OfficialImage(levels.astype(np.uint8), near_boundary(levels, "trunc"))


FAMILY = Family(
    name="didfuse",
    model=DIDFuse,
    formats="Encoder_weight_IJCAI.pkl and Decoder_weight_IJCAI.pkl (each {'weight': state_dict}, keys "
    "cov1.cov1.1.weight ... and cov5.cov5.0.weight ...)",
    detect=_detect,
    convert=_convert,
    parts=("encoder", "decoder"),
    official=official,
)
