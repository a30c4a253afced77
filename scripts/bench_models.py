"""Benchmark the learned fusion networks: parameters, FLOPs, time and peak memory per image, CPU and GPU.

    python scripts/bench_models.py                      # every model, 640x480, CPU (and GPU when present)
    python scripts/bench_models.py --official --sizes 640x480,1280x1024   # official modes beside the official code
    python scripts/bench_models.py --models densefuse --sizes 1024x768 --repeats 5
    python scripts/bench_models.py --models densefuse --sizes 4096x3072 --tile 1024 --repeats 1   # large images

Modes (``--official`` adds the last two for densefuse, swinfusion and cddfuse):
- ``ours``: the network as ``rgbt fuse`` runs it by default;
- ``official``: as ``rgbt fuse --official`` runs it: the official test script's scaling, padding and arithmetic
  (DenseFuse and CDDFuse bit for bit, so the PNGs equal the official ones; SwinFusion within 2e-6);
- ``official-fast``: the same computation with channels-last feature maps (DenseFuse): outputs within float
  rounding of the official ones (raw rtol 1e-5), not bit for bit. CDDFuse's ``ours`` is already this: the
  official computation with channels-last maps (its official script adds only a per-image min-max stretch).
The ``official code`` column is the official implementation's time on this machine at 640x480
(``shared/docs/method-notes.md``: 2 cores, quiet machine); the ratio is official time / ours. Neighbouring load
slows every run, so compare figures taken in one quiet run.

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

# the official implementations on this machine, 640x480 pair, CPU, 2 cores: seconds, peak GB (method-notes.md)
OFFICIAL_640x480 = {"densefuse": (0.68, 0.8), "cddfuse": (38.4, 2.1), "swinfusion": (52.5, 2.7)}
MODES = {
    "ours": {},
    "official": {"densefuse": {"strategy": "mean", "official": True}, "swinfusion": {"official": True},
                 "cddfuse": {"exact": True}},
    "official-fast": {"densefuse": {"strategy": "mean", "official": True, "exact": False}},
}  # fmt: skip


def build(name: str, mode: str = "ours") -> torch.nn.Module:
    from fusion.models import MODELS

    return MODELS[name](**MODES[mode].get(name, {})).eval()


def modes_for(name: str, official: bool) -> list[str]:
    return ["ours"] + [m for m in ("official", "official-fast") if official and name in MODES[m]]


def flops(name: str, h: int, w: int, mode: str = "ours") -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build(name, mode)
        vis, ir = torch.rand(1, 1, h, w), torch.rand(1, 1, h, w)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model.forward_raw(vis, ir) if mode != "ours" else model(vis, ir)
    return fc.get_total_flops()


def run_one(name: str, device: str, h: int, w: int, repeats: int, tile: int = 0, mode: str = "ours") -> dict:
    """Time one model on one device (called in a fresh process); ``tile`` > 0 fuses in tiles of that side."""
    from fusion.models import Tiled

    torch.manual_seed(0)
    model = build(name, mode).to(device)
    model = Tiled(model, tile) if tile and mode == "ours" else model
    fn = model if mode == "ours" else model.forward_raw  # official modes: what rgbt fuse --official runs
    vis, ir = torch.rand(1, 1, h, w, device=device), torch.rand(1, 1, h, w, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            sync()
            t = time.perf_counter()
            fn(vis, ir)
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
    p.add_argument("--sizes", default="640x480", help="comma-separated WIDTHxHEIGHT of the test pairs")
    p.add_argument("--official", action="store_true", help="also time the official modes, beside the official code")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per model (median reported)")
    p.add_argument("--devices", default="auto", help="cpu, cuda or cpu,cuda (auto: cuda too when present)")
    p.add_argument("--tile", type=int, default=0, help="fuse in tiles of this side (0: whole image), e.g. 1024")
    p.add_argument("--one", nargs=3, metavar=("MODEL", "DEVICE", "MODE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes.split(",")]
    if a.one:
        w, h = sizes[0]
        print(json.dumps(run_one(a.one[0], a.one[1], h, w, a.repeats, a.tile, a.one[2])))
        return
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    if a.devices != "auto":
        devices = a.devices.split(",")
    tiling = f", tiles of {a.tile} px (32 px context)" if a.tile else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, grey pairs, batch 1{tiling}")
    if "cuda" in devices:
        print(f"GPU: {torch.cuda.get_device_name()}")
    cols = "".join(f" | {d} s | {d} peak GiB" for d in devices)
    print(f"\n| model | mode | size | parameters | GFLOPs{cols} | official code s | official / ours |")
    print("|---|---|---|---:|---:|" + "---:|---:|" * len(devices) + "---:|---:|")
    for name in a.models.split(","):
        params = sum(q.numel() for q in build(name).parameters())
        for w, h in sizes:
            for mode in modes_for(name, a.official):
                row = f"| {name} | {mode} | {w}x{h} | {params:,} | {flops(name, h, w, mode) / 1e9:.0f}"
                cpu_s = None
                for d in devices:
                    cmd = [sys.executable, __file__, "--one", name, d, mode, "--sizes", f"{w}x{h}"]
                    cmd += ["--repeats", str(a.repeats), "--tile", str(a.tile)]
                    out = subprocess.run(cmd, capture_output=True, text=True)
                    if out.returncode:
                        row += " | failed | " + out.stderr.strip().splitlines()[-1][:40]
                        continue
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    cpu_s = r["ms"] / 1000 if d == "cpu" else cpu_s
                    row += f" | {r['ms'] / 1000:.3f} | {r['peak_gib']:.2f}"
                ref = OFFICIAL_640x480.get(name) if (w, h) == (640, 480) and mode != "ours" else None
                ratio = f"{ref[0] / cpu_s:.2f}x" if ref and cpu_s else "-"
                print(row + f" | {ref[0] if ref else '-'} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
