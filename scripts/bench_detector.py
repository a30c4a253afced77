"""Benchmark the detector: training steps per second and inference images per second, CPU and GPU.

    python scripts/bench_detector.py                          # 320x256 and 640x480, widths 8 and 16
    python scripts/bench_detector.py --sizes 640x480 --widths 16 --batch 8 --repeats 10

A training step is forward, FCOS loss on synthetic boxes, backward and an AdamW step at batch ``--batch``.
Inference is timed for the network alone and for ``predict`` (decode and class-aware NMS included), at batch 1;
with random weights every location passes the score threshold, so ``predict`` shows the worst case (1,000 boxes
into NMS). Times are medians over ``--repeats`` runs after two warm-up runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from detection.coco import Target
from detection.loss import FCOSLoss
from detection.model import FCOS, TwoStreamFCOS


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(kind: str, width: int, w: int, h: int, batch: int, device: str, repeats: int) -> tuple[int, float, ...]:
    torch.manual_seed(0)
    model = (TwoStreamFCOS(3, 3, width) if kind == "two_stream" else FCOS(3, 3, width)).to(device)
    loss, opt = FCOSLoss(), torch.optim.AdamW(model.parameters(), 1e-3)
    c = model.in_channels
    x = torch.rand(batch, c, h, w, device=device)
    box = torch.tensor([[w * 0.2, h * 0.3, w * 0.35, h * 0.7], [w * 0.6, h * 0.5, w * 0.9, h * 0.8]], device=device)
    targets = [Target(box, torch.tensor([0, 2], device=device), (h, w)) for _ in range(batch)]

    def step():
        terms = loss(model(x), targets)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()

    model.train()
    t_train = timed(step, device, repeats)
    model.eval()
    one = x[:1]
    with torch.no_grad():
        t_fwd = timed(lambda: model(one), device, repeats)
    t_inf = timed(lambda: model.predict(one), device, repeats)
    return sum(p.numel() for p in model.parameters()), 1 / t_train, 1 / t_fwd, 1 / t_inf


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="320x256,640x480")
    p.add_argument("--widths", default="8,16")
    p.add_argument("--kinds", default="fcos,two_stream")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, training batch {a.batch}")
    print("| device | model | width | params | size | train steps/s | forward images/s | predict images/s |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for device in devices:
        for kind in a.kinds.split(","):
            for width in (int(v) for v in a.widths.split(",")):
                for size in a.sizes.split(","):
                    w, h = (int(v) for v in size.split("x"))
                    n, steps, fwd, ips = bench(kind, width, w, h, a.batch, device, a.repeats)
                    row = f"| {device} | {kind} | {width} | {n:,} | {w}x{h} | {steps:.2f} | {fwd:.1f} | {ips:.1f} |"
                    print(row, flush=True)


if __name__ == "__main__":
    main()
