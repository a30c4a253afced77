"""Memory and time per training step of each config on this machine; a markdown table for docs/training.md.

    python scripts/bench_training.py [--configs densefuse,ddcgan,swinfusion,cddfuse] [--steps 4]
                                     [--batch swinfusion=2,cddfuse=2]

Each config runs ``rgbt fit`` for ``--steps`` optimiser steps (no validation) in a process of its own, with the
config's batch unless ``--batch`` overrides it; the table gives the peak resident memory of that process (from
the kernel, ``os.wait4``), the seconds per step after the first, and the activation estimate that ``rgbt fit``
checks on the CPU (``fusion/train/memory.py``: activations of one patch x batch x headroom).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(config: str, steps: int, batch: int | None, root: Path) -> tuple[float, str]:
    """(peak MB, error tail or "") of ``rgbt fit`` on ``config`` for ``steps`` steps."""
    cmd = [sys.executable, "-m", "fusion.cli", "fit", "--config", f"experiments/{config}.yaml"]
    cmd += ["--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps"]
    cmd += ["0", "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1"]
    cmd += ["--trainer.default_root_dir", str(root / config), "--data.num_workers", "0", "--trainer.logger"]
    cmd += ["pytorch_lightning.loggers.CSVLogger", "--trainer.logger.save_dir", str(root / config)]
    cmd += ["--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false"]
    if batch:
        cmd += ["--data.batch_size", str(batch)]
    env = {**os.environ, "WANDB_MODE": "disabled", "RGBT_SKIP_MEMORY_CHECK": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace").strip()
    return usage.ru_maxrss / 1024, err[-300:] if os.waitstatus_to_exitcode(status) else ""


def timed(config: str, steps: int, batch: int | None, root: Path) -> tuple[float, float | None, str]:
    """Peak MB and seconds per step (the difference between a ``steps`` run and a 1-step run)."""
    t = time.perf_counter()
    mb1, err = run(config, 1, batch, root / "one")
    t1 = time.perf_counter() - t
    if err:
        return mb1, None, err
    t = time.perf_counter()
    mb, err = run(config, steps, batch, root / "many")
    tn = time.perf_counter() - t
    return max(mb, mb1), (tn - t1) / max(1, steps - 1), err


def estimate_gb(config: str, batch: int | None) -> tuple[float, int, int]:
    import yaml
    from jsonargparse import ArgumentParser

    from fusion.train.memory import HEADROOM, activation_bytes

    cfg = yaml.safe_load(Path(f"experiments/{config}.yaml").read_text())
    spec = cfg["model"]["init_args"]["model"]
    parser = ArgumentParser()
    parser.add_argument("--m", type=object)
    net = parser.instantiate(parser.parse_object({"m": spec})).m
    patch, bs = cfg["data"].get("patch_size", 128), batch or cfg["data"]["batch_size"]
    return activation_bytes(net, patch) * bs * HEADROOM / 2**30, bs, patch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="densefuse,ddcgan,swinfusion,cddfuse")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", default="", help="config=batch overrides, comma-separated")
    a = p.parse_args()
    batches = {k: int(v) for k, v in (x.split("=") for x in a.batch.split(",") if x)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in a.configs.split(","):
            est, bs, patch = estimate_gb(c, batches.get(c))
            mb, sps, err = timed(c, a.steps, batches.get(c), Path(tmp))
            rows.append((c, bs, patch, mb / 1024, sps, est, err))
            print(f"  {rows[-1]}", file=sys.stderr)
    w = csv.writer(sys.stdout, delimiter="|", lineterminator="|\n")
    print("| config | batch | patch | peak GB | s/step | fit's estimate GB |\n|---|---:|---:|---:|---:|---:|")
    for c, bs, patch, gb, sps, est, _err in rows:
        w.writerow(["", c, bs, patch, f"{gb:.1f}", "killed/failed" if sps is None else f"{sps:.1f}", f"{est:.1f}"])


if __name__ == "__main__":
    main()
