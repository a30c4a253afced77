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


def authors(weights: str | None) -> dict:
    """Score the authors' weights on each curve's validation pairs, through the same validation code (a
    ``FusionModule`` around the network and ``Trainer.validate``); a model whose authors' weights are not found
    (``--weights``, ``$RGBT_WEIGHTS``, the data root's ``official_weights``) is recorded as such."""
    import pytorch_lightning as pl
    import yaml

    from fusion.datamodule import FusionDataModule
    from fusion.methods import build_method
    from fusion.models.zoo import find_weights
    from fusion.train import FusionModule

    out = {}
    for model in MODELS:
        found = find_weights(model, weights)
        if found is None or found.kind != "authors":
            out[model] = {"weights": None}
            print(f"{model}: the authors' weights not found (--weights DIR); no line for them", flush=True)
            continue
        cfg = yaml.safe_load((ROOT / "experiments" / "curves" / f"{model}.yaml").read_text())
        net = build_method(model, weights=weights)
        module = FusionModule(net, val_metrics=list(METRICS))
        trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
        scores = trainer.validate(module, FusionDataModule(**cfg["data"]), verbose=False)[0]
        out[model] = {"weights": found.describe(), **{m: scores[f"val/{m}"] for m in METRICS}}
        print(model, out[model], flush=True)
    _write(AUTHORS_JSON, json.dumps(out, indent=1) + "\n")
    return out


def _write(path: Path, text: str) -> None:
    from fusion.io import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode())


COLOURS = {"densefuse": "#1f77b4", "seafusion": "#2ca02c", "cddfuse": "#d62728"}


def svg(curves: dict, lines: dict, width: int = 300, height: int = 220) -> str:
    """One panel per metric: each model's validation score against steps (solid), the authors' weights on the
    same pairs (dashed, same colour). Plain SVG, no plotting library."""
    pad_l, pad_r, pad_t, pad_b = 46, 10, 24, 34
    xmax = max((max(c) for c in curves.values() if c), default=1)
    parts = []
    for k, metric in enumerate(METRICS):
        ys = [v[metric] for c in curves.values() for v in c.values()]
        ys += [a[metric] for a in lines.values() if a.get("weights")]
        lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        lo, hi = lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9)
        ox = k * width

        def x(step: float, ox: int = ox) -> float:
            return ox + pad_l + (width - pad_l - pad_r) * step / xmax

        def y(v: float, lo: float = lo, hi: float = hi) -> float:
            return pad_t + (height - pad_t - pad_b) * (1 - (v - lo) / (hi - lo))

        parts.append(f'<text x="{ox + width / 2}" y="15" text-anchor="middle" font-size="13">val/{metric}</text>')
        parts.append(f'<rect x="{x(0)}" y="{pad_t}" width="{width - pad_l - pad_r}" height="{height - pad_t - pad_b}" '
                     'fill="none" stroke="#888"/>')  # fmt: skip
        for i in range(5):
            v = lo + (hi - lo) * i / 4
            parts.append(f'<text x="{x(0) - 4}" y="{y(v) + 4}" text-anchor="end" font-size="10">{v:.3f}</text>')
            s = xmax * i / 4
            parts.append(
                f'<text x="{x(s)}" y="{height - pad_b + 14}" text-anchor="middle" font-size="10">{s:.0f}</text>'
            )
        parts.append(f'<text x="{x(xmax / 2)}" y="{height - 4}" text-anchor="middle" font-size="11">step</text>')
        for model, c in curves.items():
            colour = COLOURS.get(model, "#000")
            if c:
                pts = " ".join(f"{x(st):.1f},{y(v[metric]):.1f}" for st, v in c.items())
                parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
            a = lines.get(model, {})
            if a.get("weights"):
                parts.append(f'<line x1="{x(0)}" x2="{x(xmax)}" y1="{y(a[metric]):.1f}" y2="{y(a[metric]):.1f}" '
                             f'stroke="{colour}" stroke-dasharray="5,4"/>')  # fmt: skip
    legend = []
    for i, model in enumerate(curves):
        colour, lx = COLOURS.get(model, "#000"), 10 + i * 260
        legend.append(
            f'<line x1="{lx}" x2="{lx + 24}" y1="{height + 12}" y2="{height + 12}" stroke="{colour}" '
            f'stroke-width="1.8"/><text x="{lx + 30}" y="{height + 16}" font-size="11">{model} (ours)</text>'
        )
        legend.append(
            f'<line x1="{lx + 110}" x2="{lx + 134}" y1="{height + 12}" y2="{height + 12}" stroke="{colour}" '
            f'stroke-dasharray="5,4"/><text x="{lx + 140}" y="{height + 16}" font-size="11">authors</text>'
        )
    w, h = width * len(METRICS), height + 26
    body = "\n".join(parts + legend)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'font-family="sans-serif">\n<rect width="{w}" height="{h}" fill="white"/>\n{body}\n</svg>\n')  # fmt: skip


def plot() -> str:
    """Write docs/figures/learning_curves.{svg,csv}; return the markdown table (first, best and last scores)."""
    curves = {m: read_curve(m) for m in MODELS}
    if not any(curves.values()):  # keep the committed figure rather than draw empty panels over it
        raise SystemExit(f"learning_curves.py: no validation scores under {RUNS}; train first: "
                         "python scripts/learning_curves.py run MODEL --until STEPS")  # fmt: skip
    lines = json.loads(AUTHORS_JSON.read_text()) if AUTHORS_JSON.is_file() else {}
    _write(CURVES_CSV.with_suffix(".svg"), svg(curves, lines))
    rows = ["model,step," + ",".join(METRICS)]
    rows += [f"{m},{st}," + ",".join(f"{v[k]:.4f}" for k in METRICS) for m, c in curves.items() for st, v in c.items()]
    _write(CURVES_CSV, "\n".join(rows) + "\n")
    table = ["| model | steps | " + " | ".join(f"{k} first / best / last | {k} authors" for k in METRICS) + " |",
             "|---|---:|" + "---:|---:|" * len(METRICS)]  # fmt: skip
    for m, c in curves.items():
        if not c:
            continue
        first, last = c[min(c)], c[max(c)]
        cells = []
        for k in METRICS:
            best = max(v[k] for v in c.values())
            a = lines.get(m, {})
            cells += [f"{first[k]:.3f} / {best:.3f} / {last[k]:.3f}", f"{a[k]:.3f}" if a.get("weights") else "n/a"]
        table.append(f"| {m} | {max(c)} | " + " | ".join(cells) + " |")
    return "\n".join(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train one segment")
    r.add_argument("model", choices=MODELS)
    r.add_argument("--until", type=int, required=True, help="the step this segment stops at")
    au = sub.add_parser("authors", help="score the authors' weights on the validation pairs")
    au.add_argument("--weights", help="a folder of the authors' weight files (default: the usual search)")
    sub.add_parser("plot", help="write the figure and print the table")
    a = p.parse_args(argv)
    if a.cmd == "run":
        run(a.model, a.until)
    elif a.cmd == "authors":
        authors(a.weights)
    else:
        print(plot())
    return 0


if __name__ == "__main__":
    sys.exit(main())
