"""Benchmark the learned fusion networks: parameters, FLOPs, time and peak memory per image, CPU and GPU.

    python scripts/bench_models.py                      # every model, 640x480, CPU (and GPU when present)
    python scripts/bench_models.py --models densefuse --size 1024x768 --repeats 5
    python scripts/bench_models.py --models densefuse --size 4096x3072 --tile 1024 --repeats 1   # large images

FLOPs come from torch's flop counter (2 per multiply-add, attention included) on the meta device. Each
(model, device) runs in its own process so that peak memory is that model's alone: the process's maximum
resident set on CPU, ``torch.cuda.max_memory_allocated`` on GPU. Times are the median of ``--repeats`` runs after
one warm-up, with random weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def build(name: str) -> torch.nn.Module:
    from fusion.models import MODELS

    return MODELS[name]().eval()


def flops(name: str, h: int, w: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build(name)
        vis, ir = torch.rand(1, 1, h, w), torch.rand(1, 1, h, w)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(vis, ir)
    return fc.get_total_flops()


def run_one(name: str, device: str, h: int, w: int, repeats: int, tile: int = 0) -> dict:
    """Time one model on one device (called in a fresh process); ``tile`` > 0 fuses in tiles of that side."""
    from fusion.models import Tiled

    torch.manual_seed(0)
    model = build(name).to(device)
    model = Tiled(model, tile) if tile else model
    vis, ir = torch.rand(1, 1, h, w, device=device), torch.rand(1, 1, h, w, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            sync()
            t = time.perf_counter()
            model(vis, ir)
            sync()
            if i:  # the first run warms up allocators and kernels
                times.append(time.perf_counter() - t)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"ms": 1000 * statistics.median(times), "peak_gib": peak}


def main() -> None:
    from fusion.models import MODELS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the test pair")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per model (median reported)")
    p.add_argument("--devices", default="auto", help="cpu, cuda or cpu,cuda (auto: cuda too when present)")
    p.add_argument("--tile", type=int, default=0, help="fuse in tiles of this side (0: whole image), e.g. 1024")
    p.add_argument("--one", nargs=2, metavar=("MODEL", "DEVICE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    if a.one:
        print(json.dumps(run_one(a.one[0], a.one[1], h, w, a.repeats, a.tile)))
        return
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    if a.devices != "auto":
        devices = a.devices.split(",")
    tiling = f", tiles of {a.tile} px (32 px context)" if a.tile else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {w}x{h} grey pair, batch 1{tiling}")
    if "cuda" in devices:
        print(f"GPU: {torch.cuda.get_device_name()}")
    cols = "".join(f" | {d} ms | {d} peak GiB" for d in devices)
    print(f"\n| model | parameters | GFLOPs{cols} |")
    print("|---|---:|---:|" + "---:|---:|" * len(devices))
    for name in a.models.split(","):
        params = sum(q.numel() for q in build(name).parameters())
        row = f"| {name} | {params:,} | {flops(name, h, w) / 1e9:.0f}"
        for d in devices:
            cmd = [sys.executable, __file__, "--one", name, d, "--size", a.size, "--repeats", str(a.repeats)]
            cmd += ["--tile", str(a.tile)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                row += " | failed | " + out.stderr.strip().splitlines()[-1][:40]
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            row += f" | {r['ms']:.0f} | {r['peak_gib']:.2f}"
        print(row + " |", flush=True)


if __name__ == "__main__":
    main()
