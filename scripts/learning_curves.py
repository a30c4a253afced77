"""Learning curves: train on the CPU in resumed segments, then plot quality against steps (docs/training.md).

    python scripts/learning_curves.py run cddfuse --until 500      # one `rgbt fit` run up to step 500
    python scripts/learning_curves.py run cddfuse --until 1000     # resumes from runs/curves/cddfuse/last.ckpt
    python scripts/learning_curves.py authors                      # the authors' weights on the same pairs
    python scripts/learning_curves.py plot                         # docs/figures/learning_curves.svg + table

Each model's config is ``experiments/curves/<model>.yaml``. A segment is a separate ``rgbt fit`` process that
resumes from ``last.ckpt``; resuming is bit for bit (tests/test_training.py), so the segments make one run. The
validation scores (``val/VIF``, ``val/Qabf``, ``val/SSIM`` on 10 held-out RoadScene test pairs) come from the CSV
logs of all the segments; the authors' weights are scored on the same pairs by the same metric code.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
MODELS = ("densefuse", "seafusion", "cddfuse")
METRICS = ("VIF", "Qabf", "SSIM")
RUNS = ROOT / "runs" / "curves"
AUTHORS_JSON = ROOT / "docs" / "figures" / "learning_curves_authors.json"
CURVES_CSV = ROOT / "docs" / "figures" / "learning_curves.csv"


def run(model: str, until: int) -> None:
    """One ``rgbt fit`` segment of ``model`` up to step ``until``, resuming from the last checkpoint if any."""
    last = RUNS / model / "last.ckpt"
    cmd = ["rgbt", "fit", "--config", f"experiments/curves/{model}.yaml", "--trainer.max_steps", str(until)]
    if last.exists():
        cmd += ["--ckpt_path", str(last)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def read_curve(model: str) -> dict[int, dict[str, float]]:
    """step -> {metric: value} from every segment's CSV log (a later segment wins a repeated step)."""
    logs = sorted((RUNS / model / "lightning_logs").glob("version_*/metrics.csv"), key=_version)
    logs += sorted((RUNS / model / "logs").glob("version_*/metrics.csv"), key=_version)
    curve: dict[int, dict[str, float]] = {}
    for path in logs:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                vals = {m: row.get(f"val/{m}", "") for m in METRICS}
                if all(vals.values()):
                    # Lightning logs validation at the step count of the last optimiser step it followed
                    curve[int(row["step"]) + 1] = {m: float(v) for m, v in vals.items()}
    return dict(sorted(curve.items()))


def _version(p: Path) -> int:
    return int(p.parent.name.split("_")[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train one segment")
    r.add_argument("model", choices=MODELS)
    r.add_argument("--until", type=int, required=True, help="the step this segment stops at")
    sub.add_parser("authors", help="score the authors' weights on the validation pairs")
    sub.add_parser("plot", help="write the figure and print the table")
    a = p.parse_args(argv)
    if a.cmd == "run":
        run(a.model, a.until)
    elif a.cmd == "curves":
        print(json.dumps({m: read_curve(m) for m in MODELS}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
