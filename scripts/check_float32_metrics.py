"""How far standard's float32 metric paths are from float64 on real pairs; a markdown table.

    python scripts/check_float32_metrics.py [--data ../shared/data] [--pairs 5]

For the first ``--pairs`` pairs of TNO, MSRS and RoadScene test, three fusions each (average, maximum and a
rounded 0.3/0.7 mix), every metric that ``standard`` computes in float32 is also computed in float64 (the
published conventions' precision); prints the largest relative difference per metric.
"""

from __future__ import annotations

import argparse

import torch

from fusion.data import dataset_pairs, load_pair, resolve_data_root
from fusion.metrics import gradient, perceptual, structural
from fusion.metrics.conventions import STANDARD

FLOAT64 = {
    "VIF": structural.vif,
    "Qabf": gradient.qabf,
    "Nabf": gradient.nabf,
    "SSIM": lambda f, a, b: sum(structural.ssim_pair(f, a, b)) / 2,
    "MEF_SSIM": perceptual.mef_ssim,
    "Qcb": perceptual.qcb,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data")
    p.add_argument("--pairs", type=int, default=5)
    a = p.parse_args()
    root = resolve_data_root(a.data)
    worst = dict.fromkeys(FLOAT64, 0.0)
    n = 0
    for rel in ("tno", "msrs", "roadscene/test"):
        for pair in dataset_pairs(root / rel)[: a.pairs]:
            vis, ir = load_pair(pair, vis_grey=True)
            v, i = vis, ir
            v, i = v.double() * 255, i.double() * 255
            for f in ((v + i) / 2, torch.maximum(v, i), (0.3 * v + 0.7 * i).round()):
                n += 1
                for name, f64 in FLOAT64.items():
                    x32 = STANDARD.metrics[name][0](f, v, i).item()
                    x64 = f64(f, v, i).item()
                    worst[name] = max(worst[name], abs(x32 - x64) / max(abs(x64), 1e-12))
    print(f"{n} fused images; largest relative difference, float32 (standard) against float64")
    print("| metric | largest relative difference |\n|---|---:|")
    for name, d in worst.items():
        print(f"| {name} | {d:.1e} |")


if __name__ == "__main__":
    main()
