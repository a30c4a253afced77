"""The ``ivifzoo`` suite against the TPAMI 2024 survey's own evaluation code, same triples, same process and CPU.

    python scripts/bench_ivifzoo.py --survey-code DIR[:DIR...] [--data ROOT] [--pairs 3] [--threads N]

``--survey-code``: folders put in front of ``sys.path``, the first holding the survey's ``Metric/`` files
(``eval_torch.py``, ``Metric_torch.py``, ``Qabf.py``, ``Nabf.py``, ``ssim.py``, RollingPlain/IVIF_ZOO commit 2fc8473)
and the others whatever they import that this environment lacks (torchvision, scikit-learn, natsort, openpyxl,
tqdm). Their code stays outside the project. For each triple the survey's ``evaluation_one(ir, vi, fused)`` and
``rgbt evaluate``'s per-pair scoring (``fusion.evaluate.score_pair``, reading included) run one after the other,
so that both see the same machine load; the table gives seconds per triple, the speed-up and the largest relative
difference of the 21 values. Triples: the first ``--pairs`` pairs of VIFB with SeAFusion's published fused
images, and of TNO, RoadScene test and MSRS with the floor-average of the PIL-grey sources written to a
temporary folder (so any data root serves).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fusion.data import dataset_pairs, resolve_data_root
from fusion.errors import RgbtError
from fusion.evaluate import score_pair
from fusion.io import image_size
from fusion.metrics import metric_names
from fusion.metrics.reference import pil_grey

SETS = {"VIFB": "vifb", "TNO": "tno", "RoadScene": "roadscene/test", "MSRS": "msrs"}


def triples(root: Path, n: int, tmp: Path) -> list[tuple[str, object, Path]]:
    import cv2

    out = []
    for name, rel in SETS.items():
        if not (root / rel).is_dir():
            print(f"note: {root / rel} not found; {name} left out", file=sys.stderr)
            continue
        for pair in dataset_pairs(root / rel)[:n]:
            if name == "VIFB":
                fused = next((root / rel / "fused" / "SeAFusion").glob(pair.name + ".*"))
            else:
                a, b = pil_grey(pair.ir), pil_grey(pair.vis)
                fused = tmp / name / f"{pair.name}.png"
                fused.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(fused), torch.div(a + b, 2, rounding_mode="floor")[0, 0].numpy().astype(np.uint8))
            out.append((name, pair, fused))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--survey-code", required=True, help="folders to import the survey's eval_torch.py from")
    p.add_argument("--data")
    p.add_argument("--pairs", type=int, default=3, help="pairs per dataset (default 3)")
    p.add_argument("--threads", type=int, help="torch threads for both (default: torch's)")
    a = p.parse_args()
    sys.path[:0] = a.survey_code.split(":")
    try:
        import eval_torch  # the survey's module, from --survey-code
    except ImportError as e:
        msg = f"error: cannot import the survey's eval_torch.py from --survey-code ({e}); see --help"
        raise SystemExit(msg) from None
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        root = resolve_data_root(a.data)
    except RgbtError as e:
        raise SystemExit(f"error: {e}") from None
    names = metric_names("ivifzoo")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; seconds per triple (reading included)")
    print("| dataset | size | triples | survey code | ivifzoo | speed-up | largest relative difference |")
    print("|---|---|---:|---:|---:|---:|---|")
    totals = [0.0, 0.0]
    with tempfile.TemporaryDirectory() as tmp:
        rows: dict[str, list] = {}
        for name, pair, fused in triples(root, a.pairs, Path(tmp)):
            t = time.perf_counter()
            theirs = eval_torch.evaluation_one(str(pair.ir), str(pair.vis), str(fused))
            t_theirs = time.perf_counter() - t
            t = time.perf_counter()
            ours = score_pair(pair, {"m": {pair.name: fused}}, names, "ivifzoo")["m"]
            t_ours = time.perf_counter() - t
            worst = (0.0, "")
            for k, v in zip(names, theirs, strict=True):
                v = float(v)
                if v == v or ours[k] == ours[k]:
                    d = abs(ours[k] - v) / max(abs(v), 1e-12)
                    worst = max(worst, (d, k))
            r = rows.setdefault(name, [image_size(pair.ir), 0, 0.0, 0.0, (0.0, "")])
            r[1] += 1
            r[2] += t_theirs
            r[3] += t_ours
            r[4] = max(r[4], worst)
        for name, (size, n, t1, t2, (d, k)) in rows.items():
            totals[0] += t1
            totals[1] += t2
            cells = [name, f"{size[1]}x{size[0]}", n, f"{t1 / n:.2f}", f"{t2 / n:.2f}", f"{t1 / t2:.1f}x"]
            cells.append(f"{d:.1e} ({k})")
            print("| " + " | ".join(map(str, cells)) + " |")
    print(f"all: survey code {totals[0]:.1f} s, ivifzoo {totals[1]:.1f} s, {totals[0] / totals[1]:.1f}x")


if __name__ == "__main__":
    main()
