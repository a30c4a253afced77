"""Benchmark the learned fusion networks: parameters, FLOPs, time and peak memory per pair, CPU and GPU.

    python scripts/bench_models.py                                  # every zoo method, 640x480, ours, CPU (+ GPU)
    python scripts/bench_models.py --official --official-code ~/official_code   # beside the authors' code
    python scripts/bench_models.py --models seafusion,lrrnet --sizes 1024x768 --repeats 5
    python scripts/bench_models.py --models densefuse --sizes 4096x3072 --tile 1024 --repeats 1   # large images

Modes:
- ``ours``: the network as ``rgbt fuse`` runs it by default (the family's settings for the authors' weights, the
  fast path: folded batch norms, fused kernels, channels-last maps; tiles above 1024 px);
- ``official``: as ``rgbt fuse --official`` runs it: the authors' arithmetic, bit for bit with their code (the
  network part of their test script; reading and saving excluded, as for the authors' column);
- ``authors``: the authors' own network code (``--official-code DIR``: one folder per family at the commit
  ``--official`` follows, and ``shims/`` for timm and torchvision stand-ins; see docs/zoo.md), called as their test
  script calls it. Never part of the project.
Ratios are the authors' time over ours. The modes of one method are timed in one process, one after the other in
each of ``--repeats`` rounds after a warm-up, so that a slower spell of the machine falls on all of them alike;
times are medians, with random weights (speed does not depend on them). Peak memory is measured for each mode in a
process of its own (the process's maximum resident set on CPU, ``torch.cuda.max_memory_allocated`` on GPU).
FLOPs come from torch's flop counter (2 per multiply-add) on the meta device.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


TF1_FAMILIES = {
    "u2fusion",
    "densefuse_tf",
    "sdnet",
    "stdfusionnet",
    "pmgi",
    "csf",
}  # the authors' code is TensorFlow 1: not importable beside torch here


def build(method: str, mode: str = "ours") -> torch.nn.Module:
    """Our network for ``method`` with random weights, as ``rgbt fuse`` builds it in ``mode``."""
    from fusion.methods.learned import AUTO_TILE, WHOLE
    from fusion.models import MODELS, Tiled
    from fusion.models.zoo import FAMILIES, ZOO

    m = ZOO[method]
    fam = FAMILIES.get(m.family)
    config = {**(fam.native if fam else {}), **m.config, **(fam.exact if mode == "official" and fam else {})}
    model = MODELS[m.family](**config).eval()
    return model if mode == "official" else Tiled(model, AUTO_TILE[m.family], 32, whole=WHOLE)


def official_call(model: torch.nn.Module, method: str):
    """What ``--official`` runs through the network: forward_raw (IFCNN: its three-channel forward)."""
    if method.startswith("ifcnn"):
        return lambda v, i: model.forward_rgb(v.expand(-1, 3, -1, -1), i.expand(-1, 3, -1, -1))
    return model.forward_raw


def authors(method: str, code: Path):
    """The authors' network for ``method`` (random weights) and how their test script calls it, on (1, 1, H, W) in
    [0, 1]. Imports from ``code/<family>`` (their repository) and ``code/shims``."""
    from fusion.models.zoo import ZOO

    fam = ZOO[method].family
    root = code / fam
    sys.path[:0] = [str(root), str(code / "shims")]
    if fam == "densefuse":
        net = importlib.import_module("net").DenseFuse_net(1, 1).eval()
        return lambda v, i: net.decoder(net.fusion(net.encoder(i * 255), net.encoder(v * 255)))[0]
    if fam == "seafusion":
        net = importlib.import_module("FusionNet").FusionNet(output=1).eval()
        return net
    if fam == "ifcnn":
        rule = {"max": 0, "sum": 1, "mean": 2}[ZOO[method].config["rule"]]
        net = importlib.import_module("model").myIFCNN(fuse_scheme=rule).eval()
        return lambda v, i: net(v.expand(-1, 3, -1, -1), i.expand(-1, 3, -1, -1))
    if fam == "tardal":
        net = importlib.import_module("modules.generator").Generator(dim=32, depth=3)
        net.train(ZOO[method].config.get("batch_stats", False))  # tardal.pt runs without --eval
        return lambda v, i: net(i, v).clip(0.0, 1.0)
    if fam == "didfuse":
        mod = importlib.import_module("DIDFuse")
        enc, dec = mod.AE_Encoder().eval(), mod.AE_Decoder().eval()

        def run(v, i):
            fi, fv = enc(i), enc(v)
            return dec(*(a + b for a, b in zip(fi, fv, strict=True)))

        return run
    if fam == "ydtr":
        net = importlib.import_module("Networks.net").MODEL(in_channel=1).eval()
        return lambda v, i: net(i, v)
    if fam == "datfuse":
        net = importlib.import_module("Networks.network").MODEL(in_channel=2).eval()
        return lambda v, i: net(torch.cat((i, v), 1))
    if fam == "lrrnet":
        net = importlib.import_module("net_lista").LRR_NET(3, 128, 1, 1, 4, "cat").eval()
        return lambda v, i: net(i * 255, v * 255)["fuse"]
    if fam == "reconet":
        net = importlib.import_module("archive.model").Fuser(loop_num=3, feather_num=64).eval()
        return lambda v, i: net([i, v])[0][-1]
    if fam == "cddfuse":
        mod = importlib.import_module("net")
        enc, dec = mod.Restormer_Encoder().eval(), mod.Restormer_Decoder().eval()
        base, detail = mod.BaseFeatureExtraction(dim=64, num_heads=8).eval(), mod.DetailFeatureExtraction(1).eval()

        def run(v, i):
            vb, vd, _ = enc(v)
            ib, id_, _ = enc(i)
            return dec(v, base(vb + ib), detail(vd + id_))[0]

        return run
    if fam == "swinfusion":
        mod = importlib.import_module("models.network_swinfusion1")
        net = mod.SwinFusion(upscale=1, in_chans=1, img_size=128, window_size=8, img_range=1.0, depths=[6, 6, 6, 6],
                             embed_dim=60, num_heads=[6, 6, 6, 6], mlp_ratio=2, upsampler=None,
                             resi_connection="1conv").eval()  # fmt: skip

        def run(v, i):
            h, w = v.shape[-2:]
            ph, pw = (h // 8 + 1) * 8 - h, (w // 8 + 1) * 8 - w
            pad = lambda x: torch.cat([x, x.flip(-1)[..., :pw]], -1)  # noqa: E731 (the script's symmetric padding)
            a, b = (pad(torch.cat([x, x.flip(-2)[..., :ph, :]], -2)) for x in (i, v))
            return net(a, b)[..., :h, :w]

        return run
    raise SystemExit(f"no adapter for the authors' {fam}")


def flops(method: str, h: int, w: int, mode: str = "ours") -> float:
    from torch.utils.flop_counter import FlopCounterMode

    # meta costs nothing; a network that reads a weight's value (DIDFuse's PReLU slopes) is counted on the CPU in
    # the official mode, whose plain convolutions the counter sees (the fast path's fused kernels it does not)
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = build(method, mode if device == "meta" else "official")
                vis, ir = torch.rand(1, 1, h, w), torch.rand(1, 1, h, w)
            fn = model if mode == "ours" and device == "meta" else official_call(model, method)
            with FlopCounterMode(display=False) as fc, torch.no_grad():
                fn(vis, ir)
            return fc.get_total_flops()
        except (RuntimeError, NotImplementedError):
            if device == "cpu":
                raise
    raise AssertionError("unreachable")


def runner(method: str, device: str, mode: str, tile: int, code: str):
    torch.manual_seed(0)
    if mode == "authors":
        return authors(method, Path(code))
    model = build(method, mode)
    if tile and mode == "ours":
        model.tile, model.whole = tile, 0
    model = model.to(device)
    return model if mode == "ours" else official_call(model, method)


def run_modes(method: str, device: str, h: int, w: int, repeats: int, tile: int, modes: list[str], code: str) -> dict:
    """Median seconds of each mode (called in a fresh process): one warm-up each, then ``repeats`` rounds that run
    the modes one after the other, so that a slower or faster spell of the machine falls on all of them alike."""
    fns = {m: runner(method, device, m, tile, code) for m in modes}
    vis, ir = torch.rand(1, 1, h, w, device=device), torch.rand(1, 1, h, w, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: dict[str, list[float]] = {m: [] for m in modes}
    with torch.no_grad():
        for i in range(repeats + 1):
            for m, fn in fns.items():
                sync()
                t = time.perf_counter()
                fn(vis, ir)
                sync()
                if i:  # the first round warms up allocators and kernels
                    times[m].append(time.perf_counter() - t)
    return {m: statistics.median(v) for m, v in times.items()}


def run_peak(method: str, device: str, h: int, w: int, tile: int, mode: str, code: str) -> float:
    """Peak memory of one mode alone (called in a fresh process): GiB, process maximum resident set on CPU."""
    fn = runner(method, device, mode, tile, code)
    vis, ir = torch.rand(1, 1, h, w, device=device), torch.rand(1, 1, h, w, device=device)
    with torch.no_grad():
        fn(vis, ir)
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    try:  # this process's own high-water mark: ru_maxrss would start at the parent's size at the fork
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 2**20  # KiB -> GiB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def child(args: list[str], a: argparse.Namespace) -> dict | float | str:
    cmd = [sys.executable, __file__, *args, "--repeats", str(a.repeats), "--tile", str(a.tile)]
    out = subprocess.run(cmd + ["--official-code", str(a.official_code or "")], capture_output=True, text=True)
    if out.returncode:
        return "failed: " + (out.stderr.strip().splitlines() or ["?"])[-1][:60]
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from fusion.models.zoo import ZOO

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(ZOO), help="comma-separated zoo methods (default: all)")
    p.add_argument("--sizes", default="640x480", help="comma-separated WIDTHxHEIGHT of the test pairs")
    p.add_argument("--official", action="store_true", help="also the official mode and the authors' code")
    p.add_argument(
        "--official-code", default=os.environ.get("RGBT_OFFICIAL_CODE"), help="the authors' code, per family"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median reported)")
    p.add_argument("--devices", default="auto", help="cpu, cuda or cpu,cuda (auto: cuda too when present)")
    p.add_argument("--tile", type=int, default=0, help="ours: fuse in tiles of this side (0: as rgbt fuse does)")
    p.add_argument("--time", nargs=3, metavar=("METHOD", "DEVICE", "MODES"), help=argparse.SUPPRESS)
    p.add_argument("--peak", nargs=3, metavar=("METHOD", "DEVICE", "MODE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes.split(",")]
    if a.time or a.peak:
        (w, h), code = sizes[0], a.official_code
        if a.time:
            m, d, modes = a.time
            print(json.dumps(run_modes(m, d, h, w, a.repeats, a.tile, modes.split(","), code)))
        else:
            print(json.dumps(run_peak(a.peak[0], a.peak[1], h, w, a.tile, a.peak[2], code)))
        return
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    if a.devices != "auto":
        devices = a.devices.split(",")
    modes = ["ours"] + (["official"] + (["authors"] if a.official_code else []) if a.official else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, grey pairs, batch 1")
    if "cuda" in devices:
        print(f"GPU: {torch.cuda.get_device_name()}")
    if a.official and not a.official_code:
        print("(no --official-code: the authors' code is not timed)")
    cols = "".join(f" | {d} {m} s" for d in devices for m in modes) + "".join(f" | {d} {m} GiB" for d in devices
                                                                              for m in modes)  # fmt: skip
    ratio = " | authors / official | authors / ours" if "authors" in modes else ""
    print(f"\n| method | size | parameters | GFLOPs{cols}{ratio} |")
    print("|---|---|---:|---:|" + "---:|" * (2 * len(devices) * len(modes) + (2 if ratio else 0)))
    from fusion.models.zoo import FAMILIES

    for method in a.models.split(","):
        # a family without an official mode (DDcGAN: TensorFlow 1 only) is timed in our mode alone; the authors'
        # TensorFlow 1 code runs in an environment of its own (docs/zoo.md says how it was timed)
        runs = modes if ZOO[method].family in FAMILIES else ["ours"]
        runs = [m for m in runs if not (m == "authors" and ZOO[method].family in TF1_FAMILIES)]
        for w, h in sizes:
            size = ["--sizes", f"{w}x{h}"]
            times = {d: child(["--time", method, d, ",".join(runs), *size], a) for d in devices}
            peaks = {(d, m): child(["--peak", method, d, m, *size], a) if m in runs else None
                     for d in devices for m in modes}  # fmt: skip
            fails = [f"{d}: {t}" for d, t in times.items() if isinstance(t, str)]
            fails += [f"{k}: {v}" for k, v in peaks.items() if isinstance(v, str)]
            t = [times[d].get(m) if isinstance(times[d], dict) else None for d in devices for m in modes]
            mem = [v if isinstance(v, float) else None for v in peaks.values()]
            row = f"| {method} | {w}x{h} | {ZOO[method].params:,} | {flops(method, h, w) / 1e9:.0f}"
            row += "".join(f" | {x:.3f}" if x is not None else " | -" for x in t)
            row += "".join(f" | {x:.2f}" if x is not None else " | -" for x in mem)
            if ratio:
                c = times["cpu"] if isinstance(times.get("cpu"), dict) else None
                ok = c and "authors" in c
                row += f" | {c['authors'] / c['official']:.2f}x | {c['authors'] / c['ours']:.2f}x" if ok else " | - | -"
            print(row + " |", flush=True)
            for f in fails:
                print(f"  {method} {f}", flush=True)
            if "official" not in runs:
                print(f"  {method}: no official mode (the authors' code is TensorFlow 1), ours only", flush=True)
            elif "authors" in modes and "authors" not in runs:
                print(f"  {method}: the authors' code is TensorFlow 1, timed apart (docs/zoo.md)", flush=True)


if __name__ == "__main__":
    main()
