"""DenseFuse, the authors' original TensorFlow release (hli1221/imagefusion_densefuse), on our DenseFuse.

Li and Wu, "DenseFuse: A Fusion Approach to Infrared and Visible Images", IEEE TIP 28(5), 2019.

The same network as :mod:`fusion.models.densefuse` (conv 1->16, a dense block of three convs, decoder
64->64->32->16->1, reflection padding, ReLU but after the last conv), as the TensorFlow code runs it:
- images enter on 0-255 (``scipy.misc.imread(mode='L')``, not divided);
- the dense block puts each new 16 maps *before* its input (``tf.concat([out, x], 3)``) where our encoder puts them
  after: :func:`_convert` reorders the input channels of the dense convs and of the decoder's first conv, so that
  the same weights compute the same sums;
- the two encodings are added (``content + style``), which the script's min-max stretch brings back to 0-255; our
  pipeline, which does not stretch, averages them.
74,193 weights in the checkpoint (``DeseFuse.ckpt``, with Adam's moments, which are not part of the network).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fusion.models.densefuse import DenseFuse
from fusion.models.official import Family, OfficialImage, has_keys, to_input, visible_chroma_rgb

GROWTH = 16


class DenseFuseTF(DenseFuse):
    """DenseFuse with the TensorFlow release's weights: 0-255 inputs, features added.

    Args:
        strategy: ``"sum"`` (the release's addition), ``"mean"`` or ``"l1"``.
        exact: NCHW convolutions (see :class:`~fusion.models.densefuse.DenseFuse`).

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1], any H, W >= 2.
    """

    name = "densefuse_tf"

    def __init__(self, strategy: str = "sum", exact: bool = False):
        super().__init__(strategy=strategy, official=False, exact=exact)
        self.scale = 255.0  # the release reads 0-255 levels and its decoder gives them back
        self.config = {"strategy": strategy, "exact": exact}


def _detect(obj) -> str | None:
    return (
        ""
        if has_keys(obj, "encoder/conv1_1/kernel", "encoder/dense_block_conv1/kernel", "decoder/conv2_4/kernel")
        else None
    )


def _blocks_reversed(w: torch.Tensor, blocks: int) -> torch.Tensor:
    """Input channels [b_k, ..., b_1, b_0] (TensorFlow's order) -> [b_0, b_1, ..., b_k] (ours), 16 each."""
    return torch.cat(list(reversed(w.split(GROWTH, dim=1)))[:blocks], dim=1)


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    tf = parts[""]

    def kernel(name: str) -> torch.Tensor:
        return torch.as_tensor(tf[name + "/kernel"]).permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW

    state = {"encoder.conv1.1.weight": kernel("encoder/conv1_1"), "encoder.conv1.1.bias": tf["encoder/conv1_1/bias"]}
    for i in range(3):
        w = kernel(f"encoder/dense_block_conv{i + 1}")
        state[f"encoder.dense.{i}.1.weight"] = _blocks_reversed(w, i + 1)
        state[f"encoder.dense.{i}.1.bias"] = tf[f"encoder/dense_block_conv{i + 1}/bias"]
    for i in range(4):
        w = kernel(f"decoder/conv2_{i + 1}")
        state[f"decoder.body.{i}.1.weight"] = _blocks_reversed(w, 4) if i == 0 else w
        state[f"decoder.body.{i}.1.bias"] = tf[f"decoder/conv2_{i + 1}/bias"]
    return {k: torch.as_tensor(v) for k, v in state.items()}


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """VIF-Benchmark ``DenseFuse/DenseFuse.py`` (``generate``, addition; the authors' own ``main.py`` runs the same
    graph): both images read with ``scipy.misc.imread(mode='L')`` as 0-255 floats, encoded, added, decoded; the
    output saved with ``scipy.misc.imsave`` (``bytescale``: min-max to 0-255, +0.5, truncated), then ``img2RGB``
    with the visible image's PIL YCbCr chroma."""
    from fusion.io import read_as

    ir, vis = to_input(read_as(ir_path, "pil:L")), to_input(read_as(vis_path, "pil:L"))
    out = model.forward_raw(vis, ir)[0, 0].numpy()  # float32, on 0-255
    return visible_chroma_rgb(out, vis_path)


FAMILY = Family(
    name="densefuse_tf",
    model=DenseFuseTF,
    formats="DenseFuse's TensorFlow 1 checkpoint DeseFuse.ckpt (.index + .data-*: encoder/conv1_1/kernel ...)",
    detect=_detect,
    convert=_convert,
    # the release adds the encodings and min-max stretches what its decoder gives (about the sum of the two images);
    # without the stretch, our pipeline averages them (the same network on half the features, in range)
    native={"strategy": "mean"},
    exact={"strategy": "sum"},  # TensorFlow rounds its own way: the fast kernels match it as closely as the plain ones
    official=official,
)
