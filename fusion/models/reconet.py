"""ReCoNet: recurrent correction network for fast and efficient multi-modality image fusion (the fusion part).

Huang, Liu, Fan, Liu, Zhong and Luo, "Recurrent Correction Network for Fast and Efficient Multi-modality Image
Fusion", ECCV 2022. The fusion network of the paper (v0, ``archive/`` in dlut-dimt/ReCoNet), without the
micro-registration module.

Layout (the authors' ``archive/model.py`` ``Fuser(loop_num=3, feather_num=64)``): the fused estimate starts as
max(infrared, visible) and is corrected three times. Each round weights each source by an attention map (sigmoid of
a 3x3 conv over the channel-wise max and mean of [source, estimate], no bias), stacks [infrared weighted, estimate,
visible weighted], runs three 3x3 convs 3->64 with dilations 1, 2 and 3 (batch norm, ReLU), and a 3x3 conv
192->1 with batch norm and tanh gives the next estimate. 7,917 values in the authors' state_dict.

The fast path folds the batch norms, fuses activations into the convolutions and replaces the concatenations by
split convolutions added in their kernels (``exact=True``: the authors' arithmetic bit for bit).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fusion.models._fast import channels_last, conv, fold_bn
from fusion.models._util import clamp01
from fusion.models.official import Family, OfficialImage, grey_result, has_keys, to_input


class ReCoNet(nn.Module):
    """ReCoNet's fuser (grey / Y channel).

    Args:
        loops: correction rounds (the release: 3); dim: features per dilated branch (64).
        exact: the authors' arithmetic bit for bit; otherwise the fast path.

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1] (the last tanh clamped), any H, W.
    """

    name = "reconet"

    def __init__(self, loops: int = 3, dim: int = 64, exact: bool = False):
        super().__init__()
        self.loops, self.exact = loops, exact
        self.config = {"loops": loops, "dim": dim, "exact": exact}
        self.att_a_conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        self.att_b_conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        for d in (1, 2, 3):
            setattr(self, f"dil_conv_{d}", nn.Sequential(nn.Conv2d(3, dim, 3, 1, d, d), nn.BatchNorm2d(dim), nn.ReLU()))
        self.fus_conv = nn.Sequential(nn.Conv2d(3 * dim, 1, 3, padding=1), nn.BatchNorm2d(1), nn.Tanh())

    @staticmethod
    def _attention(att_conv: nn.Conv2d, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        t = torch.cat([x, f], dim=1)
        return torch.sigmoid(att_conv(torch.cat([torch.max(t, dim=1, keepdim=True)[0], torch.mean(t, 1, True)], 1)))

    def _round(self, a: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        cat = torch.cat([a * self._attention(self.att_a_conv, a, f), f, b * self._attention(self.att_b_conv, b, f)], 1)
        dil = torch.cat([getattr(self, f"dil_conv_{d}")(cat) for d in (1, 2, 3)], dim=1)
        return self.fus_conv(dil)

    def _round_fast(self, a: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        cat = channels_last(torch.cat([a * self._attention(self.att_a_conv, a, f), f,
                                       b * self._attention(self.att_b_conv, b, f)], 1))  # fmt: skip
        w, bias = fold_bn(self.fus_conv[0], self.fus_conv[1])
        out, c = None, 0
        for d in (1, 2, 3):  # fus_conv over [dil1, dil2, dil3] = the sum of its three slices
            seq = getattr(self, f"dil_conv_{d}")
            x = conv(cat, *fold_bn(seq[0], seq[1]), d, d, act="relu")
            n = x.shape[1]
            out = conv(x, w[:, c : c + n], bias if out is None else None, 1, add=out, act="tanh" if d == 3 else "none")
            c += n
        return out.contiguous()

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The last round's tanh output (the authors' ``im_f[-1]``), in [-1, 1]."""
        step = self._round if self.exact or self.training else self._round_fast
        f = torch.max(ir, vis)
        for _ in range(self.loops):
            f = step(ir, vis, f)
        return f

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis, ir))


def _detect(obj) -> str | None:
    return "" if has_keys(obj, "att_a_conv.weight", "dil_conv_1.0.weight", "fus_conv.0.weight") else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in parts[""].items()}


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """dlut-dimt/ReCoNet ``archive/fuse.py``: both images read by ``cv2.imread(p, IMREAD_GRAYSCALE)`` and divided
    by 255 in float64, then float32; ``net([ir, vis])``; the last estimate times 255 written by ``cv2.imwrite`` as a
    float image (OpenCV rounds half to even and saturates): a grey image."""
    from fusion.io import read_as

    ir, vis = to_input(read_as(ir_path, "cv2:grey")), to_input(read_as(vis_path, "cv2:grey"))
    return grey_result(model.forward_raw(vis, ir)[0, 0].numpy() * 255.0, "round")


FAMILY = Family(
    name="reconet",
    model=ReCoNet,
    formats="ReCoNet's archive/params.pth (a state_dict with att_a_conv.weight, dil_conv_1.0.weight)",
    detect=_detect,
    convert=_convert,
    official=official,
)
