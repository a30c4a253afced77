"""Fused inference kernels for the networks' fast paths (``exact=False``, eval mode).

On a CPU, oneDNN runs a convolution with its activation, or with a tensor added to its output, in one pass over
memory (the kernels ``torch.compile`` emits, called directly here): for the small convolutional fusion networks the
separate activation and addition passes take a third of the time. Elsewhere (CUDA, autograd, a torch build without
oneDNN) the same functions fall back to plain ops. Both give the same values up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# activation name -> (oneDNN post-op, its scalars, the plain function, in place on a fresh tensor)
_ACTS = {
    "none": ("none", lambda s: [], lambda x, s: x),
    "relu": ("relu", lambda s: [], lambda x, s: x.relu_()),
    "leaky_relu": ("leaky_relu", lambda s: [s], lambda x, s: F.leaky_relu(x, s, inplace=True)),
    "tanh": ("tanh", lambda s: [], lambda x, s: x.tanh_()),
    "sigmoid": ("sigmoid", lambda s: [], lambda x, s: x.sigmoid_()),
}


_FUSED = {"available": torch.backends.mkldnn.is_available()}


def _fusable(x: torch.Tensor, w: torch.Tensor) -> bool:
    if not _FUSED["available"] or x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))


def conv(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None = None,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    act: str = "none",
    slope: float = 0.0,
    add: torch.Tensor | None = None,
    pad_mode: str = "zeros",
    keep_layout: bool = False,
) -> torch.Tensor:
    """``act(conv2d(pad(x), w, b) + add)`` with stride 1; one kernel on a CPU where oneDNN has it.

    Args:
        act: ``none``, ``relu``, ``leaky_relu`` (negative ``slope``), ``tanh`` or ``sigmoid``.
        add: a tensor of the output's shape added before the activation.
        pad_mode: ``zeros``, ``replicate`` or ``reflect`` padding of ``padding`` pixels. The other modes do not copy
            the map into a padded one (a pass over memory as long as a small conv): the conv runs zero-padded and
            only the ``padding`` border rows and columns are recomputed from padded strips.
        keep_layout: a one-channel input gives an NCHW output (otherwise channels-last, as the fast paths want).
    """
    if x.shape[1] == 1 and groups == 1 and w.shape[0] >= 16 and add is None and not keep_layout and _fusable(x, w):
        return _few_channels(x, w, b, padding, dilation, act, slope, pad_mode)
    if 1 < x.shape[1] <= 3 and not keep_layout:  # an NCHW image stack: oneDNN keeps the layout it is given
        x = channels_last(x)
    if pad_mode != "zeros" and padding and not _fusable(x, w):  # autograd: the border trick writes in place
        y = _conv(F.pad(x, (padding,) * 4, mode=pad_mode), w, b, 0, dilation, groups, act, slope, add)
    elif pad_mode != "zeros" and padding:
        y = _border_padded(x, w, b, padding, dilation, groups, act, slope, add, pad_mode)
    else:
        y = _conv(x, w, b, padding, dilation, groups, act, slope, add)
    # a 1-channel map is "contiguous" in both layouts and the conv keeps NCHW: its output goes channels-last here
    return channels_last(y) if x.shape[1] == 1 and w.shape[0] > 1 and not keep_layout else y


def _few_channels(x, w, b, p, dilation, act, slope, pad_mode) -> torch.Tensor:
    """A conv from one channel to many as one matrix product over the input's k x k neighbourhoods (im2col), written
    straight into channels-last memory: oneDNN's kernels for a single input channel are slow, and their NCHW output
    would need a copy to channels-last. (From 2 or 3 channels oneDNN on channels-last maps is 3-15x faster.)"""
    k = w.shape[-1]
    if p:
        x = F.pad(x, (p,) * 4, mode="constant" if pad_mode == "zeros" else pad_mode)
    n, _, h, wd = x.shape
    h, wd = h - dilation * (k - 1), wd - dilation * (k - 1)
    cols = F.unfold(x, k, dilation=dilation).transpose(1, 2)  # (N, HW, C k k)
    wt = w.reshape(w.shape[0], -1).t()
    y = torch.matmul(cols, wt) if b is None else torch.baddbmm(b.view(1, 1, -1), cols, wt.expand(n, -1, -1))
    y = y.view(n, h, wd, -1).permute(0, 3, 1, 2)  # a channels-last (N, C, H, W) view
    return _ACTS[act][2](y, slope)


def _border_padded(x, w, b, p, dilation, groups, act, slope, add, mode) -> torch.Tensor:
    h, wd = x.shape[-2:]
    if dilation != 1 or w.shape[-1] != 2 * p + 1 or h <= 2 * p or wd <= 2 * p:  # tiny maps: pad them whole
        return _conv(F.pad(x, (p,) * 4, mode=mode), w, b, 0, dilation, groups, act, slope, add)
    y = _conv(x, w, b, p, 1, groups, act, slope, add)
    strips = (  # (input strip, its padding, output region)
        (x[..., : 2 * p, :], (p, p, p, 0), (slice(0, p), slice(None))),
        (x[..., -2 * p :, :], (p, p, 0, p), (slice(h - p, h), slice(None))),
        (x[..., :, : 2 * p], (p, 0, p, p), (slice(None), slice(0, p))),
        (x[..., :, -2 * p :], (0, p, p, p), (slice(None), slice(wd - p, wd))),
    )
    for xs, pad, (rows, cols) in strips:
        a = None if add is None else add[..., rows, cols]
        y[..., rows, cols] = _conv(F.pad(xs, pad, mode=mode), w, b, 0, 1, groups, act, slope, a)
    return y


def _conv(x, w, b, padding, dilation, groups, act, slope, add) -> torch.Tensor:
    name, scalars, plain = _ACTS[act]
    if _fusable(x, w):
        p, d = [padding, padding], [dilation, dilation]
        try:
            if add is None:
                return torch.ops.mkldnn._convolution_pointwise(x, w, b, p, [1, 1], d, groups, name, scalars(slope), "")
            y = torch.ops.mkldnn._convolution_pointwise.binary(x, add, w, b, p, [1, 1], d, groups, "add", None, None,
                                                               [], None)  # fmt: skip
            return y if act == "none" else plain(y, slope)
        except (RuntimeError, AttributeError, NotImplementedError):  # a build without these kernels: plain ops
            _FUSED["available"] = False
    y = F.conv2d(x, w, b, padding=padding, dilation=dilation, groups=groups)
    if add is not None:
        y = y + add
    return plain(y, slope)


def linear(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, act: str = "none", add: torch.Tensor | None = None
):
    """``act(F.linear(x, w, b) + add)`` on (N, C) rows, ``act`` ``none`` or ``gelu`` (erf); one oneDNN kernel on a CPU
    where it has one (GELU's pass over a wide hidden layer costs as much as the matrix product)."""
    if _fusable(x, w) and (act == "none" or add is None):
        try:
            if add is not None:
                return torch.ops.mkldnn._linear_pointwise.binary(x, add, w, b, "add")
            return torch.ops.mkldnn._linear_pointwise(x, w, b, act, [], "none")
        except (RuntimeError, AttributeError, NotImplementedError):
            _FUSED["available"] = False
    y = F.linear(x, w, b)
    if add is not None:
        y = y + add
    return F.gelu(y) if act == "gelu" else y


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of ``bn(conv(x))`` as one conv, with the batch norm's running statistics (eval mode)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * scale.view(-1, *([1] * (conv.weight.ndim - 1)))
    b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return w, (b - bn.running_mean) * scale + bn.bias


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)
