"""Time every fusion method per image at common sizes, CPU (and GPU when present); prints a markdown table.

python scripts/bench_fusion.py [--sizes 640x480,1024x768] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fusion.color import fuse_color
from fusion.methods import available_methods, build_method


def bench(method: str, h: int, w: int, device: str, repeat: int) -> float:
    """Median milliseconds for one colour visible + thermal image of h x w."""
    g = torch.Generator().manual_seed(0)
    vis, ir = torch.rand(1, 3, h, w, generator=g).to(device), torch.rand(1, 1, h, w, generator=g).to(device)
    model = build_method(method).to(device)
    times = []
    with torch.no_grad():
        for i in range(repeat + 1):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fuse_color(model, vis, ir)
            if device == "cuda":
                torch.cuda.synchronize()
            if i:  # the first run warms caches up
                times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="640x480,1024x768")
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; ms per colour pair (median)")
    cols = [f"{d} {w}x{h}" for d in devices for w, h in sizes]
    print("| method | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for m in available_methods():
        cells = [f"{bench(m, h, w, d, a.repeat):.1f}" for d in devices for w, h in sizes]
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
