"""DDcGAN: a dual-discriminator conditional GAN for infrared and visible image fusion.

Ma, Xu, Jiang, Mei and Zhang, "DDcGAN: A Dual-Discriminator Conditional Generative Adversarial Network for
Multi-Resolution Image Fusion", IEEE TIP 29, 2020.

Generator: the two sources stacked as 2 channels -> 3x3 conv to 48 channels, then a dense block of four 3x3 convs
(48 channels each, every input the concatenation of all earlier outputs: 240 channels), and a decoder
240 -> 240 -> 128 -> 64 -> 32 -> 1. Every conv uses reflection padding, batch norm and ReLU except the last, whose
output goes through ``tanh / 2 + 0.5``. 1,097,665 parameters, as in the official code.

Discriminators: three stride-2 3x3 convs (16, 32, 64 channels; batch norm on the last two; leaky ReLU) and a dense
layer to one probability (``tanh / 2 + 0.5``). The dense layer's size follows the training patch (84 in the paper).

Deliberate differences from the official TF code: batch norm runs in eval mode at test time (the official code
keeps training mode, so its output depends on the batch), and a decoder conv it applies twice is applied once.
Only the same-resolution variant is built (the multi-resolution one feeds IR at 1/4 size).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DDcGANGenerator(nn.Module):
    """DDcGAN generator.

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1], any H, W >= 2.
    """

    name = "ddcgan"

    def __init__(self, width: int = 48, dense_layers: int = 4, decoder: tuple[int, ...] = (240, 128, 64, 32)):
        super().__init__()
        self.config = {"width": width, "dense_layers": dense_layers, "decoder": list(decoder)}
        self.stem = _conv_bn(2, width)
        self.dense = nn.ModuleList(_conv_bn(width * (i + 1), width) for i in range(dense_layers))
        chans = [width * (dense_layers + 1), *decoder]
        self.decoder = nn.Sequential(*(_conv_bn(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)))
        self.head = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(chans[-1], 1, 3))

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        x = self.stem(torch.cat([vis, ir], 1))  # (B, 48, H, W)
        for conv in self.dense:
            x = torch.cat([x, conv(x)], 1)  # (B, 48 * k, H, W)
        return torch.tanh(self.head(self.decoder(x))) / 2 + 0.5


class DDcGANDiscriminator(nn.Module):
    """Tells a real source image from a fused one: (B, 1, P, P) in [0, 1] -> (B, 1) probability of "real".

    Args:
        patch_size: side of the training patches (fixes the dense layer's input size).
    """

    def __init__(self, patch_size: int = 84, channels: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(cin, c, 3, stride=2, padding=1)]
            layers += [nn.BatchNorm2d(c)] if i else []
            layers += [nn.LeakyReLU(0.2, inplace=True)]
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
        return torch.tanh(self.fc(self.body(x).flatten(1))) / 2 + 0.5
