"""CSF: classification saliency-based fusion of visible and infrared images.

Xu, Zhang and Ma, "Classification Saliency-Based Rule for Visible and Infrared Image Fusion", IEEE Transactions on
Computational Imaging 7, 2021.

Layout (the authors' TensorFlow 1 ``networks.py``; every conv 5x5 on reflect-padded maps, leaky ReLU ``max(x, 0.2
x)``):
- encoder 1->16->24->24->24 and decoder 24->16->16->16->1 (tanh), the files ``ED.ckpt``;
- classifier (``EC.ckpt``, which also holds the encoder it was trained on, the same values as ``ED``'s): four convs
  24->32->64->32->2, each with batch normalisation (moving statistics, epsilon 1e-3) and a 2x2 max pool ('SAME'),
  then the mean over the map: one score per class (0: visible, 1: infrared).
The fusion rule (``generate.py``): the encoder's features of each image are weighted per value by a softmax of the
classifier's saliency, the absolute gradient of a class score with respect to the features, computed at an input
interpolated from the other image towards this one (the infrared score at ``0.9 v + 0.1 i``, the visible one at
``0.9 i + 0.1 v``, ``v`` the visible image shifted to the infrared mean). The authors' code builds ten such inputs
(``0.1 .. 1.0``) but differentiates the first one's score only, so the nine others contribute zeros to the mean:
the saliency is the first gradient divided by ten, and that is what this module computes. The infrared saliency is
shifted to the visible one's mean and the weights are ``softmax(s / 0.00015)`` of the two.
224,475 values in the two files: 185,587 in the encoder, decoder and classifier, and ``EC``'s copy of the encoder
(38,888, loaded, unused).
Inputs are ``(level / 255 - 0.5) x 2``; the output ``x / 2 + 0.5``.

The saliency depends on the whole window (the image means, and the classifier's mean over the map), so images
over 1024 px a side, fused in tiles, are weighted per tile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import conv
from fusion.models.official import Family, OfficialImage, has_keys, visible_chroma_rgb
from fusion.models.sdnet import _read_y

SAMPLES = 10  # the interpolated inputs of the authors' rule (only the first one's gradient is taken)
TEMPERATURE = 0.00015  # the softmax's c
ENCODER, DECODER, CLASSIFIER = (16, 24, 24, 24), (16, 16, 16, 1), (32, 64, 32, 2)
SCOPES = {"encoder": ("Encoder/encoder", ("conv1_1", "conv1_4", "conv1_6", "conv1_8")),
          "decoder": ("Decoder/decoder", ("conv1_1", "conv1_2", "conv1_3", "conv1_4")),
          "classifier": ("Classification/classification", ("conv1_6", "conv1_8", "conv1_9", "conv1_11"))}  # fmt: skip


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's ``max(x, 0.2 x)``, whose gradient at 0 is 1 (``F.leaky_relu``'s is 0.2)."""
    return torch.where(x >= 0, x, 0.2 * x)


def pad2(x: torch.Tensor) -> torch.Tensor:
    """The scripts' 2-pixel reflect padding; replicate on maps of 2 pixels or fewer, where reflection is undefined
    (the classifier's deepest maps of an image under 32 px, which the authors' code refuses)."""
    return F.pad(x, (2, 2, 2, 2), mode="reflect" if min(x.shape[-2:]) > 2 else "replicate")


def _convs(cin: int, widths: tuple[int, ...]) -> nn.ModuleList:
    return nn.ModuleList(nn.Conv2d(a, b, 5) for a, b in zip((cin, *widths[:-1]), widths, strict=True))


class CSF(nn.Module):
    """CSF's network and fusion rule: ``forward(vis, ir) -> fused`` on (B, 1, H, W) in [0, 1], any size.

    The rule differentiates the classifier, so ``forward`` runs autograd inside even under ``torch.no_grad()``.
    In training the weights of the rule are constants (the classifier gets no gradient).

    Args:
        exact: the plain ops; otherwise (in eval mode) the encoder and decoder convs run in oneDNN kernels on
            channels-last maps (the same values up to float rounding).
    """

    name = "csf"
    # EC's copy of the encoder (the script encodes with ED's); the classifier only weighs, through a constant rule
    unused = ("ec_encoder", "classifier")

    def __init__(self, exact: bool = False):
        super().__init__()
        self.exact = exact
        self.config = {"exact": exact}
        self.encoder, self.ec_encoder = _convs(1, ENCODER), _convs(1, ENCODER)
        self.decoder = _convs(24, DECODER)
        self.classifier = _convs(24, CLASSIFIER)
        self.classifier_bns = nn.ModuleList(nn.BatchNorm2d(c, eps=1e-3) for c in CLASSIFIER)

    def _run(self, x: torch.Tensor, layers: nn.ModuleList, last_tanh: bool) -> torch.Tensor:
        fast = not (self.exact or self.training or torch.is_grad_enabled())
        for i, layer in enumerate(layers):
            last = last_tanh and i == len(layers) - 1
            if fast:
                x = conv(x, layer.weight, layer.bias, 2, act="tanh" if last else "leaky_relu", slope=0.2,
                         pad_mode="reflect")  # fmt: skip
            else:
                x = layer(pad2(x))
                x = torch.tanh(x) if last else lrelu(x)
        return x.contiguous() if last_tanh else x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) on [-1, 1] -> (B, 24, H, W)."""
        return self._run(x, self.encoder, last_tanh=False)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, 24, H, W) features -> (B, 2) class scores (0: visible, 1: infrared)."""
        x = feats
        for layer, bn in zip(self.classifier, self.classifier_bns, strict=True):
            x = layer(pad2(x))
            x = lrelu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))
            x = F.max_pool2d(x, 2, ceil_mode=True)  # TensorFlow's 'SAME' pooling: a partial last window
        return x.mean((2, 3))

    def saliency(self, x: torch.Tensor, cls: int) -> torch.Tensor:
        """``|d score_cls / d features|`` at the encoding of ``x`` (B, 1, H, W), float64, (B, 24, H, W)."""
        with torch.enable_grad():
            feats = self.encode(x).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.classify(feats)[:, cls].sum(), feats)
        return g.abs().double()

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The decoder's tanh output on [-1, 1] from float32 inputs on [-1, 1]."""
        dims = (1, 2, 3)
        # the script's float32 expressions, in its order: the visible image shifted to the infrared mean
        shifted = vis - vis.mean(dims, keepdim=True) + ir.mean(dims, keepdim=True)
        to_ir = shifted + (ir - shifted) * 1 / SAMPLES  # the first of its ten interpolated inputs
        to_vis = ir + 1 / SAMPLES * (shifted - ir)
        s_ir = self.saliency(to_ir, 1) / SAMPLES  # float64: the other nine gradients are zeros in the script's mean
        s_vis = self.saliency(to_vis, 0) / SAMPLES
        s_ir = s_ir + s_vis.mean(dims, keepdim=True) - s_ir.mean(dims, keepdim=True)
        e_vis, e_ir = torch.exp(s_vis / TEMPERATURE), torch.exp(s_ir / TEMPERATURE)
        w_vis, w_ir = e_vis / (e_vis + e_ir), e_ir / (e_vis + e_ir)
        f_vis, f_ir = self.encode(vis), self.encode(ir)
        fused = (w_vis * f_vis.double() + w_ir * f_ir.double()).float()
        return self._run(fused, self.decoder, last_tanh=True)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        out = self.forward_raw(vis * 2 - 1, ir * 2 - 1) / 2 + 0.5
        return out + (out.clamp(0, 1) - out).detach()


def _detect(obj) -> str | None:
    if has_keys(obj, "Classification/classification/conv1_6/kernel"):
        return "EC"
    return "ED" if has_keys(obj, "Decoder/decoder/conv1_1/kernel", "Encoder/encoder/conv1_1/kernel") else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}

    def put(ours: str, tf: dict, part: str) -> None:
        scope, names = SCOPES[part]
        for i, n in enumerate(names):
            state[f"{ours}.{i}.weight"] = torch.as_tensor(tf[f"{scope}/{n}/kernel"]).permute(3, 2, 0, 1).contiguous()
            state[f"{ours}.{i}.bias"] = torch.as_tensor(tf[f"{scope}/{n}/bias"])

    put("encoder", parts["ED"], "encoder")
    put("decoder", parts["ED"], "decoder")
    put("ec_encoder", parts["EC"], "encoder")
    put("classifier", parts["EC"], "classifier")
    for i in range(len(CLASSIFIER)):
        scope = f"Classification/classification/b{i}/batch_normalization"
        for ours, tf in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                         ("running_var", "moving_variance")):  # fmt: skip
            state[f"classifier_bns.{i}.{ours}"] = torch.as_tensor(parts["EC"][f"{scope}/{tf}"])
        state[f"classifier_bns.{i}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    return state


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """VIF-Benchmark ``CSF/CSF.py`` (the authors' ``generate.py`` with ``img2RGB``): both images read as the Y of PIL's
    YCbCr (float32), ``(x / 255 - 0.5) x 2``; the rule as the script computes it (float32 images, float64 weights);
    the output ``x / 2 + 0.5`` saved with ``scipy.misc.imsave`` (min-max stretch), then the visible image's chroma."""
    vis, ir = (torch.from_numpy((_read_y(p) / np.float32(255) - np.float32(0.5)) * np.float32(2))[None, None]
               for p in (vis_path, ir_path))  # fmt: skip
    out = model.forward_raw(vis, ir)[0, 0].numpy() / np.float32(2) + np.float32(0.5)
    return visible_chroma_rgb(out, vis_path)


FAMILY = Family(
    name="csf",
    model=CSF,
    formats="CSF's TensorFlow 1 checkpoints EC.ckpt (encoder + classifier) and ED.ckpt (encoder + decoder)",
    detect=_detect,
    convert=_convert,
    parts=("EC", "ED"),
    exact={},  # TensorFlow rounds its own way: the fast kernels match it as closely as the plain ones
    official=official,
)
