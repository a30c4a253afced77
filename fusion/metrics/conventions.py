"""Which definition each evaluation code uses for each metric.

A convention maps metric names (as papers print them) to ``fn(f, a, b) -> (B,)`` on grey levels, plus how
images are turned into those levels. See ``docs/metrics.md`` for the table of differences.

- ``standard``: one clean definition per metric: BT.601 luminance on 0-255 (not rounded), MI in bits,
  PSNR with peak 255, SSIM (L = 255) averaged over the two sources.
- ``vifb``: VIFB's MATLAB code (Zhang et al., CVPRW 2020).
- ``tang``: Linfeng Tang's MATLAB code (after 2023-03-03).
- ``tang2022``: the same code as the 2022 papers ran it (2022-05-02 until 2023-03-03): uint8 saturation in SD
  and VIF, SF and Qabf on images divided by 255 (:mod:`fusion.metrics.tang2022`).
- ``cddfuse``: CDDFuse's ``utils/Evaluator.py``.
- ``ivifzoo``: the TPAMI 2024 survey's ``Metric/eval_torch.py`` (RollingPlain/IVIF_ZOO; :mod:`fusion.metrics.ivifzoo`).

NMI, QNCIE, TE, Qy and MS_SSIM by their papers' definitions (:mod:`fusion.metrics.survey`) are asked for by name
(or ``--metrics all``) under the standard convention and the published conventions that lack them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch

from fusion.io import rgb_to_grey
from fusion.metrics import error, fmi, gradient, information, ivifzoo, perceptual, structural, survey, tang2022
from fusion.metrics._kernels import bgr2gray_opencv_float, rgb2gray_matlab, rgb2gray_pil

MetricFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _f_only(fn: Callable[[torch.Tensor], torch.Tensor]) -> MetricFn:
    return lambda f, a, b: fn(f)


def _sd(f: torch.Tensor) -> torch.Tensor:
    return f.flatten(1).std(dim=1, correction=0)


def _ssim(variant: str, reduce: str, dtype: torch.dtype = torch.float64) -> MetricFn:
    def fn(f, a, b):
        sa, sb = structural.ssim_pair(f, a, b, variant, dtype)
        return sa + sb if reduce == "sum" else 0.5 * (sa + sb)

    return fn


@dataclass(frozen=True)
class Convention:
    """A published evaluation code's input handling and metric definitions."""

    name: str
    grey: Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) levels -> (B, 1, H, W) levels
    rounded: bool  # whether images are uint8 levels (as read from files) or continuous
    metrics: dict[str, tuple[MetricFn, bool]]  # name -> (function, higher_is_better)
    per_channel: bool = False  # VIFB: a colour fused image is scored channel by channel
    # Computed only when asked for by name (slow): not part of the default set.
    extra: dict[str, tuple[MetricFn, bool]] = field(default_factory=dict)
    # Metrics computed together when more than one of them is asked for (they share filtering):
    # names -> fn(f, a, b) returning one (B,) tensor per name, equal to the separate functions' values.
    shared: dict[tuple[str, ...], Callable[..., tuple[torch.Tensor, ...]]] = field(default_factory=dict)

    @property
    def all_metrics(self) -> dict[str, tuple[MetricFn, bool]]:
        return {**self.metrics, **self.extra}


# Opt-in (slow) in both conventions that have it; the same algorithm as the tang code.
FMI = {
    "FMI_pixel": (partial(fmi.fmi, feature="pixel"), True),
    "FMI_dct": (partial(fmi.fmi, feature="dct"), True),
}
# The survey's added metrics by their papers' definitions (fusion.metrics.survey): on request (by name, or
# --metrics all) in the standard convention and in those of published codes that do not compute them.
SURVEY = {
    "NMI": (survey.nmi, True),
    "QNCIE": (survey.qncie, True),
    "TE": (survey.tsallis, True),
    "Qy": (survey.qy, True),
    "MS_SSIM": (survey.ms_ssim, True),
}

STANDARD = Convention(
    "standard",
    rgb_to_grey,  # BT.601 luminance, as YCbCr's Y
    False,
    {
        "EN": (_f_only(information.entropy), True),
        "SD": (_f_only(_sd), True),
        "SF": (_f_only(gradient.spatial_frequency), True),
        "AG": (_f_only(gradient.average_gradient), True),
        "EI": (_f_only(gradient.edge_intensity), True),
        "MI": (partial(information.mutual_information, variant="standard"), True),
        "CE": (information.cross_entropy, False),
        # float32 where the formula's constants dwarf its rounding (docs/metrics.md):
        # VIF, Qabf, Nabf, SSIM, MEF-SSIM, Qcb
        "SCD": (structural.scd, True),
        "CC": (structural.correlation, True),
        "VIF": (partial(structural.vif, dtype=torch.float32), True),
        "Qabf": (partial(gradient.qabf, dtype=torch.float32), True),
        "Nabf": (partial(gradient.nabf, dtype=torch.float32), False),
        "SSIM": (_ssim("wang", "mean", torch.float32), True),
        "MEF_SSIM": (partial(perceptual.mef_ssim, dtype=torch.float32), True),
        "Qcb": (partial(perceptual.qcb, dtype=torch.float32), True),
        "Qcv": (perceptual.qcv, False),
        "PSNR": (error.psnr, True),
        "MSE": (error.mse, False),
        "RMSE": (error.rmse, False),
    },
    extra={**FMI, **SURVEY},
    shared={
        ("MEF_SSIM", "SSIM"): partial(perceptual.mef_ssim_and_ssim, dtype=torch.float32),
        ("Qabf", "Nabf"): partial(gradient.qabf_and_nabf, dtype=torch.float32),
    },
)

VIFB = Convention(
    "vifb",
    rgb2gray_matlab,
    True,
    {
        "CE": (information.cross_entropy, False),
        "EN": (_f_only(partial(information.entropy, floor=True)), True),
        "MI": (partial(information.mutual_information, variant="vifb"), True),
        "PSNR": (partial(error.psnr, variant="vifb"), True),
        "AG": (_f_only(partial(gradient.average_gradient, variant="vifb")), True),
        "EI": (_f_only(gradient.edge_intensity), True),
        "Qabf": (gradient.qabf, True),
        "SD": (_f_only(_sd), True),
        "SF": (_f_only(partial(gradient.spatial_frequency, variant="vifb")), True),
        "RMSE": (error.vifb_mse, False),
        "SSIM": (_ssim("wang", "sum"), True),
        "Qcb": (perceptual.qcb, True),
        "Qcv": (perceptual.qcv, False),
    },
    per_channel=True,
    extra=SURVEY,
)

TANG = Convention(
    "tang",
    rgb2gray_matlab,
    True,
    {
        "EN": (_f_only(information.entropy), True),
        "SD": (_f_only(_sd), True),
        "SF": (_f_only(gradient.spatial_frequency), True),
        "AG": (_f_only(partial(gradient.average_gradient, variant="tang")), True),
        "MI": (partial(information.mutual_information, variant="tang"), True),
        "SCD": (structural.scd, True),
        "CC": (structural.correlation, True),
        "VIF": (structural.vif, True),  # MATLAB gives NaN for a flat source; we give 1 as cddfuse
        "Qabf": (gradient.qabf, True),
        # Nabf: correctly ordered; Nabf_published: the code's call, which scores the infrared image as the
        # fused one (sources: fused and visible).
        "Nabf": (gradient.nabf, False),
        "Nabf_published": (lambda f, a, b: gradient.nabf(b, f, a), False),
        "SSIM": (_ssim("matlab", "mean"), True),
        "MS_SSIM": (perceptual.mef_ssim, True),  # the code's "MS-SSIM" is MEF-SSIM
        "PSNR": (partial(error.psnr, variant="tang"), True),
        "MSE": (lambda f, a, b: error.mse(f, a, b) / 255.0**2, False),
    },
    extra={**FMI, **{k: v for k, v in SURVEY.items() if k != "MS_SSIM"}},  # its MS_SSIM is MEF-SSIM
)

TANG2022 = Convention(
    "tang2022",
    rgb2gray_matlab,
    True,
    {  # the default mode's 11 metrics, in the order the code writes them
        "EN": TANG.metrics["EN"],
        "MI": TANG.metrics["MI"],
        "SD": (_f_only(tang2022.sd), True),
        "SF": (_f_only(tang2022.sf), True),
        "MSE": TANG.metrics["MSE"],
        "PSNR": TANG.metrics["PSNR"],
        "VIF": (partial(structural.vif, uint8_products=True), True),
        "AG": TANG.metrics["AG"],
        "SCD": TANG.metrics["SCD"],
        "CC": TANG.metrics["CC"],
        "Qabf": (tang2022.qabf, True),
    },
    extra={"SSIM": (perceptual.mef_ssim, True), **FMI, **SURVEY},  # the code's non-default SSIM is MEF-SSIM
)

CDDFUSE = Convention(
    "cddfuse",
    bgr2gray_opencv_float,
    True,
    {
        "EN": (_f_only(information.entropy), True),
        "SD": (_f_only(_sd), True),
        "SF": (_f_only(gradient.spatial_frequency), True),
        "AG": (_f_only(gradient.average_gradient), True),
        "MI": (partial(information.mutual_information, variant="cddfuse"), True),
        "SCD": (structural.scd, True),
        "CC": (structural.correlation, True),
        "VIF": (structural.vif, True),
        "Qabf": (gradient.qabf, True),
        "SSIM": (_ssim("skimage", "sum"), True),
        "PSNR": (partial(error.psnr, variant="cddfuse"), True),
        "MSE": (error.mse, False),
    },
    extra=SURVEY,
)

_Z = ivifzoo.per_image
IVIFZOO = Convention(
    "ivifzoo",
    rgb2gray_pil,
    True,
    {  # the 21 metrics eval_torch.py reports, in its order
        "CE": (_Z(ivifzoo.ce), False),
        "NMI": (_Z(ivifzoo.nmi), True),
        "QNCIE": (_Z(ivifzoo.qncie), True),
        "TE": (_Z(ivifzoo.te), False),  # H(ir) + H(vis) - H(F): lower when F holds more information
        "EI": (_Z(ivifzoo.ei), True),
        "Qy": (_Z(ivifzoo.qy), True),
        "Qcb": (_Z(ivifzoo.qcb), True),
        "EN": (_Z(ivifzoo.en), True),
        "MI": (_Z(ivifzoo.mi), True),
        "SF": (_Z(ivifzoo.sf), True),
        "AG": (_Z(ivifzoo.ag), True),
        "SD": (_Z(ivifzoo.sd), True),
        "CC": (_Z(ivifzoo.cc), True),
        "SCD": (_Z(ivifzoo.scd), True),
        "VIF": (_Z(ivifzoo.vif), True),
        "MSE": (_Z(ivifzoo.mse), False),
        "PSNR": (_Z(ivifzoo.psnr), True),
        "Qabf": (_Z(ivifzoo.qabf), True),
        "Nabf": (_Z(ivifzoo.nabf), False),
        "SSIM": (_Z(ivifzoo.ssim), True),
        "MS_SSIM": (_Z(ivifzoo.ms_ssim), True),
    },
)

CONVENTIONS = {c.name: c for c in (STANDARD, VIFB, TANG, TANG2022, CDDFUSE, IVIFZOO)}
