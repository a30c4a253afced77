"""torchmetrics wrappers, for Lightning validation loops: ``FusionMetric("VIF")`` averages over images."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from fusion.metrics import compute_metrics, higher_is_better, metric_names


class FusionMetric(Metric):
    """Mean of one fusion metric over every image seen (``update(fused, vis, ir)``, ``compute()``).

    Args:
        name: metric name as papers print it (EN, SD, SF, AG, EI, MI, CE, SCD, CC, VIF, Qabf, SSIM, PSNR...).
        convention: whose definition to use (see :mod:`fusion.metrics.conventions`).

    Combine several with ``torchmetrics.MetricCollection``; it syncs across DDP processes like any Metric.
    """

    full_state_update = False

    def __init__(self, name: str, convention: str = "standard", **kwargs) -> None:
        super().__init__(**kwargs)
        if name not in metric_names(convention, extra=True):
            raise ValueError(f"unknown metric {name} for convention {convention}")
        self.name, self.convention = name, convention
        # torchmetrics keeps higher_is_better as a class constant: pick one of two module-level subclasses
        # (module-level so that the metric pickles, as DDP spawn requires)
        self.__class__ = HigherIsBetter if higher_is_better(name, convention) else LowerIsBetter
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> None:
        v = compute_metrics(fused.detach(), vis.detach(), ir.detach(), [self.name], self.convention)[self.name]
        self.total += v.sum().to(self.total.device)
        self.count += v.numel()

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1)


class HigherIsBetter(FusionMetric):
    higher_is_better = True


class LowerIsBetter(FusionMetric):
    higher_is_better = False


def fusion_metrics(names: list[str] | None = None, convention: str = "standard", prefix: str = "val/"):
    """A ``MetricCollection`` of :class:`FusionMetric` (default: every metric of the convention)."""
    from torchmetrics import MetricCollection

    names = metric_names(convention) if names is None else names
    return MetricCollection({n: FusionMetric(n, convention) for n in names}, prefix=prefix)
