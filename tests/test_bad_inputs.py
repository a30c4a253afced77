"""One table of bad inputs: every case exits 2 with one stderr line that names the problem, no traceback, and
leaves every file as it was (nothing written, nothing changed, no input overwritten).

Each case builds its inputs in a fresh folder, runs ``rgbt`` in-process with the C-level stderr captured (so
library messages such as libpng's count), and compares a snapshot of the whole folder before and after.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion.cli import main as rgbt
from tests.conftest import synth_pair


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _setup(root: Path) -> dict[str, Path]:
    """Two pairs in set/ir and set/vi, a folder of fused images, a weight file."""
    ir, vi = root / "set" / "ir", root / "set" / "vi"
    ir.mkdir(parents=True)
    vi.mkdir()
    for i, (h, w) in enumerate([(40, 56), (48, 40)]):
        v, t = synth_pair(h, w, i)
        cv2.imwrite(str(ir / f"p{i}.png"), t)
        cv2.imwrite(str(vi / f"p{i}.png"), v)
    fused = root / "fused" / "average"
    fused.mkdir(parents=True)
    for i in range(2):
        (fused / f"p{i}.png").write_bytes((ir / f"p{i}.png").read_bytes())
    return {"ir": ir, "vi": vi, "fused": fused.parent, "out": root / "out", "root": root}


def _fuse(p, *extra, method="average"):
    return ["fuse", "--method", method, "--ir", str(p["ir"]), "--vis", str(p["vi"]), "--out", str(p["out"]), *extra]


def _eval(p, *extra):
    return ["evaluate", "--fused", str(p["fused"]), "--ir", str(p["ir"]), "--vis", str(p["vi"]), "--metrics", "EN",
            *extra]  # fmt: skip


def _weights(p) -> Path:
    from fusion.models import DenseFuse, save_weights

    return save_weights(DenseFuse(), p["root"] / "w" / "densefuse.pt")


def _evil(p) -> Path:
    path = p["root"] / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"fusion_model": {"name": "densefuse"}, "state_dict": _Payload(str(p["root"] / "pwned"))}, f, 2)
    return path


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _exp(p, raw: str | None = None, **over) -> list[str]:
    """An experiment file over the two pairs of set/ (YAML text ``raw``, or the base with ``over``)."""
    base = {"name": "t", "metrics": ["EN"], "datasets": [{"name": "S", "path": str(p["root"] / "set")}],
            "methods": ["average"], "wandb": {"mode": "disabled"}}  # fmt: skip
    f = p["root"] / "e.yaml"
    f.write_text(raw if raw is not None else yaml.safe_dump({**base, **over}))
    return ["experiment", "run", str(f), "--out", str(p["out"]), "--devices", "1"]


def _pub_csv(p, text: str) -> str:
    (p["root"] / "pub.csv").write_text(text)
    return str(p["root"] / "pub.csv")


def _npz(arr) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, disp=arr)
    return buf.getvalue()


def _flow(p, data: bytes) -> list[str]:
    """One warped pair (p0) and its ground-truth displacement file ``data``."""
    flow = p["root"] / "flow"
    flow.mkdir()
    _write(flow / "p0.npz", data)
    return ["register", "eval", "--flow", str(flow), "--ir", str(p["ir"]), "--vis", str(p["vi"])]


def _fused_set(p, a0, a1) -> list[str]:
    """An experiment scoring a folder of images fused elsewhere (a0, a1 for p0, p1) beside average."""
    d = p["root"] / "elsewhere"
    d.mkdir()
    cv2.imwrite(str(d / "p0.png"), a0)
    cv2.imwrite(str(d / "p1.png"), a1)
    return _exp(p, methods=["average", {"name": "E", "fused": str(d)}])


def _own_weights(p) -> Path:
    """A user's own network saved as rgbt saves weights: its class path in the file."""
    from fusion.models import save_weights

    class Mine(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)

    return save_weights(Mine(), p["root"] / "w" / "mine.pt")


def _nan_weights(p) -> Path:
    from fusion.models import DenseFuse, save_weights

    net = DenseFuse()
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    return save_weights(net, p["root"] / "w" / "nan.pt")


def _odd_weights(p, dtype) -> Path:
    """DenseFuse's weight file with its first tensor cast to ``dtype`` (int8, complex)."""
    from fusion.models import DenseFuse, model_spec

    net = DenseFuse()
    state = net.state_dict()
    k = next(iter(state))
    state[k] = state[k].to(dtype)
    path = p["root"] / "w" / f"odd_{str(dtype).split('.')[-1]}.pt"
    path.parent.mkdir(exist_ok=True)
    torch.save({"fusion_model": model_spec(net), "state_dict": state, "meta": {}}, path)
    return path


REG = "direction: IR -> RGB\nmodel: affine\nsource_size: [40, 56]\ntarget_size: [40, 56]\n"

IDH = "H: [[1,0,0],[0,1,0],[0,0,1]]\n"


def _reg_apply(p, text: str, *extra) -> list[str]:
    _write(p["root"] / "r.yaml", text.encode())
    return ["register", "apply", "--reg", str(p["root"] / "r.yaml"), "--ir", str(p["ir"]), "--vis", str(p["vi"]),
            "--out", str(p["out"]), *extra]  # fmt: skip


def _calib(p, *extra) -> list[str]:
    return ["calibrate", "--board", "chessboard:9x6:25", "--cam1", str(p["ir"] / "*.png"), *extra]


def _bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


PTS_HEADER = b"source_x,source_y,target_x,target_y\n"
COLLINEAR = b"0,0,1,1\n10,10,11,11\n20,20,21,21\n30,30,31,31\n"

# case id -> (prepare(paths) -> argv, text the one line must contain)
CASES = {
    # fuse: inputs
    "fuse_unpaired": (lambda p: ((p["vi"] / "p1.png").rename(p["vi"] / "zz.png"), _fuse(p))[1], "no partner"),
    "fuse_missing_folder": (lambda p: _fuse({**p, "vi": p["root"] / "nope"}), "nope"),
    "fuse_empty_folder": (lambda p: [f.unlink() for f in p["vi"].iterdir()] and _fuse(p), "vi"),
    "fuse_size_mismatch": (lambda p: cv2.imwrite(str(p["vi"] / "p1.png"), np.zeros((9, 9), np.uint8)) and _fuse(p),
                           "p1.png"),
    "fuse_truncated_png": (lambda p: _write(p["ir"] / "p1.png", (p["ir"] / "p1.png").read_bytes()[:60]) or _fuse(p),
                           "p1.png"),
    "fuse_garbage_bytes": (lambda p: _write(p["ir"] / "p1.png", b"\x00garbage" * 40) or _fuse(p), "p1.png"),
    "fuse_empty_file": (lambda p: _write(p["ir"] / "p0.png", b"") or _fuse(p), "p0.png"),
    "fuse_huge_header": (lambda p: _write(p["ir"] / "p1.png", _png_header_only(100000, 100000)) or _fuse(p),
                         "p1.png"),
    "fuse_16bit_second_pair": (lambda p: cv2.imwrite(str(p["ir"] / "p1.png"), np.full((48, 40), 900, np.uint16))
                               and _fuse(p), "--norm16"),
    "fuse_unknown_method": (lambda p: _fuse(p, method="magic"), "magic"),
    "fuse_out_is_file": (lambda p: _write(p["out"], b"mine") or _fuse(p), "out"),
    "fuse_out_parent_is_file": (lambda p: _write(p["root"] / "f", b"x") or _fuse({**p, "out": p["root"] / "f" / "o"}),
                                "f"),
    "fuse_out_is_ir": (lambda p: _fuse({**p, "out": p["ir"]}), "overlaps"),
    "fuse_out_is_ir_overwrite": (lambda p: _fuse({**p, "out": p["ir"]}, "--overwrite"), "overlaps"),
    "fuse_out_inside_vis": (lambda p: _fuse({**p, "out": p["vi"] / "fused"}), "overlaps"),
    "fuse_out_contains_inputs": (lambda p: _fuse({**p, "out": p["root"] / "set"}), "overlaps"),
    "fuse_ir_equals_vis": (lambda p: _fuse({**p, "vi": p["ir"]}), "same folder"),
    "fuse_out_unwritable": (lambda p: _fuse({**p, "out": Path("/proc/rgbt_test_out")}), "rgbt_test_out"),
    "fuse_bad_norm16": (lambda p: _fuse(p, "--norm16", "sideways"), "sideways"),
    "fuse_norm16_lo_above_hi": (lambda p: _fuse(p, "--norm16", "fixed:9:1"), "LO"),
    "fuse_negative_tile": (lambda p: _fuse(p, "--tile", "-5", method="densefuse"), "--tile -5"),
    "fuse_tile_1": (lambda p: _fuse(p, "--tile", "1", method="densefuse"), "--tile 1"),
    "fuse_tile_not_a_number": (lambda p: _fuse(p, "--tile", "big"), "big"),
    "fuse_bogus_device": (lambda p: _fuse(p, "--device", "bogus"), "bogus"),
    "fuse_cuda_without_gpu": (lambda p: _fuse(p, "--device", "cuda:7"), "cuda:7"),
    "fuse_bits_12": (lambda p: _fuse(p, "--bits", "12"), "12"),
    "fuse_misspelt_flag": (lambda p: _fuse(p, "--overwrit"), "--overwrit"),
    "fuse_flag_prefix": (lambda p: _fuse(p, "--over"), "--over"),
    "fuse_missing_ckpt": (lambda p: _fuse(p, "--ckpt", str(p["root"] / "none.pt"), method="densefuse"), "none.pt"),
    "fuse_garbage_ckpt": (lambda p: _write(p["root"] / "g.pt", b"garbage") or
                          _fuse(p, "--ckpt", str(p["root"] / "g.pt"), method="densefuse"), "g.pt"),
    "fuse_ckpt_wrong_model": (lambda p: _fuse(p, "--ckpt", str(_weights(p)), method="swinfusion"), "densefuse"),
    "fuse_ckpt_for_classical": (lambda p: _fuse(p, "--ckpt", str(_weights(p))), "learned"),
    "fuse_official_classical": (lambda p: _fuse(p, "--official"), "learned"),
    "fuse_official_16bit_out": (lambda p: _fuse(p, "--official", "--bits", "16", method="densefuse"), "8-bit"),
    "fuse_malicious_ckpt": (lambda p: _fuse(p, "--ckpt", str(_evil(p)), method="densefuse"), "never unpickled"),
    # evaluate
    "eval_csv_exists": (lambda p: _write(p["root"] / "s.csv", b"mine") or _eval(p, "--csv", str(p["root"] / "s.csv")),
                        "--overwrite"),
    "eval_csv_is_folder": (lambda p: _eval(p, "--csv", str(p["fused"]), "--overwrite"), "folder"),
    "eval_csv_unwritable": (lambda p: _eval(p, "--csv", "/proc/rgbt_scores.csv"), "rgbt_scores.csv"),
    "eval_ambiguous_layout": (lambda p: _write(p["fused"] / "p0.png", (p["ir"] / "p0.png").read_bytes()) or _eval(p),
                              "method folders"),
    "eval_missing_fused": (lambda p: _eval({**p, "fused": p["root"] / "nope"}), "nope"),
    "eval_unknown_metric": (lambda p: _eval(p)[:-1] + ["EN,Magic"], "Magic"),
    "eval_unknown_convention": (lambda p: _eval(p, "--convention", "matlab"), "matlab"),
    "eval_corrupt_fused": (lambda p: _write(p["fused"] / "average" / "p1.png", b"junk") or _eval(p), "p1.png"),
    # export, fit, detect, demo
    "export_missing_ckpt": (lambda p: ["export", "--ckpt", str(p["root"] / "x.ckpt"), "--out", str(p["out"])],
                            "x.ckpt"),
    "export_out_exists": (lambda p: _write(p["root"] / "o.pt", b"mine") or
                          ["export", "--ckpt", str(_weights(p)), "--out", str(p["root"] / "o.pt")], "--overwrite"),
    "export_malicious": (lambda p: ["export", "--ckpt", str(_evil(p)), "--out", str(p["out"])], "never unpickled"),
    "fit_missing_config": (lambda p: ["fit", "--config", str(p["root"] / "none.yaml")], "none.yaml"),
    "fit_misspelt_key": (lambda p: ["fit", "--config", "experiments/densefuse.yaml", "--trainer.max_step", "3"],
                         "max_step"),
    "detect_fit_missing_config": (lambda p: ["detect", "fit", "--config", str(p["root"] / "none.yaml")], "none.yaml"),
    "demo_missing_config": (lambda p: ["demo", "--config", str(p["root"] / "none.yaml"), "--out", str(p["out"])],
                            "none.yaml"),
    "register_apply_reg_is_folder": (lambda p: ["register", "apply", "--reg", str(p["root"]), "--ir", str(p["ir"]),
                                                "--vis", str(p["vi"]), "--out", str(p["out"])], "folder"),
    "calibrate_bad_board": (lambda p: ["calibrate", "--board", "hexagon:9x6:25", "--cam1", str(p["ir"] / "*.png"),
                                       "--out", str(p["root"] / "rig.yaml")], "hexagon"),
    "demo_limit_0": (lambda p: ["demo", "--limit", "0", "--out", str(p["out"])], "--limit 0"),
    "demo_limit_negative": (lambda p: ["demo", "--limit", "-1", "--out", str(p["out"])], "--limit -1"),
    "calibrate_no_square_size": (lambda p: ["calibrate", "--board", "chessboard:9x6", "--cam1", str(p["ir"] / "*.png"),
                                            "--out", str(p["root"] / "rig.yaml")], "millimetres"),
    "calibrate_coded_bad_size": (lambda p: ["calibrate", "--board", f"coded:{p['ir'] / 'p0.png'}:abc", "--cam1",
                                            str(p["ir"] / "*.png"), "--out", str(p["root"] / "rig.yaml")], "abc"),
    "detect_predict_untrained": (lambda p: ["detect", "predict", "--config", "experiments/detect_msrs.yaml"],
                                 "--ckpt_path"),
    "register_apply_nan_matrix": (lambda p: _write(p["root"] / "r.yaml", b"direction: IR -> RGB\nmodel: affine\n"
                                                   b"H: [[.nan, 0, 0], [0, 1, 0], [0, 0, 1]]\nsource_size: [40, 56]\n"
                                                   b"target_size: [40, 56]\n") or
                                  ["register", "apply", "--reg", str(p["root"] / "r.yaml"), "--ir", str(p["ir"]),
                                   "--vis", str(p["vi"]), "--out", str(p["out"])], "invertible"),
    "register_apply_singular_matrix": (lambda p: _write(p["root"] / "r.yaml", b"direction: IR -> RGB\nmodel: affine\n"
                                                        b"H: [[1, 2, 0], [2, 4, 0], [0, 0, 1]]\nsource_size: [40, 56]"
                                                        b"\ntarget_size: [40, 56]\n") or
                                       ["register", "apply", "--reg", str(p["root"] / "r.yaml"), "--ir", str(p["ir"]),
                                        "--vis", str(p["vi"]), "--out", str(p["out"])], "invertible"),
    "calibrate_no_usable_views": (lambda p: ["calibrate", "--board", "chessboard:9x6:25", "--cam1",
                                             str(p["ir"] / "p0*.png"), "--out", str(p["root"] / "rig.yaml")], "--cam1"),
    "calibrate_glob_mixes_cameras": (lambda p: [(p["ir"] / "p0.png").rename(p["ir"] / "left01.png"),
                                                (p["ir"] / "p1.png").rename(p["ir"] / "right01.png")] and
                                     ["calibrate", "--board", "chessboard:9x6:25", "--cam1", str(p["ir"] / "*.png"),
                                      "--out", str(p["root"] / "rig.yaml")], "both count as view 01"),
    "register_fit_rig_binary": (lambda p: _write(p["root"] / "rig.yaml", bytes(range(256)) * 4) or
                                ["register", "fit", "--rig", str(p["root"] / "rig.yaml"), "--distance", "5000",
                                 "--out", str(p["root"] / "reg.yaml")], "rig.yaml"),
    "register_fit_collinear_points": (lambda p: _write(p["root"] / "pts.csv", PTS_HEADER + COLLINEAR) or
                                      ["register", "fit", "--points", str(p["root"] / "pts.csv"), "--ir",
                                       str(p["ir"] / "p0.png"), "--vis", str(p["vi"] / "p0.png"), "--out",
                                       str(p["root"] / "reg.yaml")], "collinear"),
    "register_fit_non_utf8_name": (lambda p: _write(p["root"] / os.fsdecode(b"bad\xff.png"), b"not an image") or
                                   ["register", "fit", "--ir", str(p["root"] / os.fsdecode(b"bad\xff.png")), "--vis",
                                    str(p["vi"] / "p0.png"), "--out", str(p["root"] / "reg.yaml")], "bad"),
}  # fmt: skip

# Trust II (issue 26): one output guard, typed files, numbers checked where they enter, resource bounds
CASES_II = {
    # outputs never touch inputs, with or without --overwrite
    "calibrate_plot_is_input": (lambda p: _calib(p, "--out", str(p["root"] / "rig.yaml"), "--plot",
                                                 str(p["ir"] / "p0.png")), "overlaps the input file"),
    "calibrate_plot_is_input_overwrite": (lambda p: _calib(p, "--out", str(p["root"] / "rig.yaml"), "--plot",
                                                           str(p["ir"] / "p0.png"), "--overwrite"), "overlaps"),
    "calibrate_out_is_input_overwrite": (lambda p: _calib(p, "--out", str(p["ir"] / "p1.png"), "--overwrite"),
                                         "overlaps"),
    "calibrate_plot_exists": (lambda p: _write(p["root"] / "v.png", b"mine") or
                              _calib(p, "--out", str(p["root"] / "rig.yaml"), "--plot", str(p["root"] / "v.png")),
                              "--overwrite"),
    "calibrate_out_equals_plot": (lambda p: _calib(p, "--out", str(p["root"] / "a.png"), "--plot",
                                                   str(p["root"] / "a.png")), "both name"),
    "calibrate_coded_plot_is_board": (lambda p: ["calibrate", "--board", f"coded:{p['vi'] / 'p0.png'}", "--cam1",
                                                 str(p["ir"] / "*.png"), "--out", str(p["root"] / "rig.yaml"),
                                                 "--plot", str(p["vi"] / "p0.png"), "--overwrite"], "overlaps"),
    "register_apply_out_is_ir": (lambda p: _reg_apply({**p, "out": p["ir"]}, REG + IDH),
                                 "overlaps the input folder"),
    "register_apply_out_inside_vis": (lambda p: _reg_apply({**p, "out": p["vi"] / "aligned"},
                                                           REG + IDH), "overlaps"),
    "register_apply_out_is_reg_file": (lambda p: _reg_apply({**p, "out": p["root"] / "r.yaml"},
                                                            REG + IDH), "overlaps"),
    "register_fit_out_is_ir_overwrite": (lambda p: ["register", "fit", "--ir", str(p["ir"] / "p0.png"), "--vis",
                                                    str(p["vi"] / "p0.png"), "--out", str(p["ir"] / "p0.png"),
                                                    "--overwrite"], "overlaps"),
    "register_fit_out_is_points": (lambda p: _write(p["root"] / "pts.csv", PTS_HEADER + COLLINEAR) or
                                   ["register", "fit", "--points", str(p["root"] / "pts.csv"), "--ir",
                                    str(p["ir"] / "p0.png"), "--vis", str(p["vi"] / "p0.png"), "--out",
                                    str(p["root"] / "pts.csv"), "--overwrite"], "overlaps"),
    "eval_csv_is_ir_file_overwrite": (lambda p: _eval(p, "--csv", str(p["ir"] / "p0.png"), "--overwrite"), "overlaps"),
    "eval_csv_inside_fused": (lambda p: _eval(p, "--csv", str(p["fused"] / "s.csv")), "overlaps"),
    "eval_csv_inside_ir": (lambda p: _eval(p, "--csv", str(p["ir"] / "s.csv")), "overlaps"),
    "export_out_is_ckpt_overwrite": (lambda p: ["export", "--ckpt", str(_weights(p)), "--out",
                                                str(p["root"] / "w" / "densefuse.pt"), "--overwrite"], "overlaps"),
    "experiment_out_is_dataset": (lambda p: _exp({**p, "out": p["root"] / "set"}), "overlaps"),
    "experiment_out_inside_fused": (lambda p: _exp({**p, "out": p["fused"] / "average" / "x"},
                                                   methods=[{"name": "A", "fused": str(p["fused"] / "average")}]),
                                    "overlaps"),
    # experiment files: typed, ranged, no duplicate keys, bounded
    "experiment_metrics_int": (lambda p: _exp(p, metrics=5), "metrics"),
    "experiment_decimals_negative": (lambda p: _exp(p, decimals=-3), "decimals"),
    "experiment_decimals_100": (lambda p: _exp(p, decimals=100), "decimals"),
    "experiment_decimals_true": (lambda p: _exp(p, decimals=True), "decimals"),
    "experiment_metric_decimals_str": (lambda p: _exp(p, metrics=[{"name": "EN", "decimals": "3"}]), "decimals"),
    "experiment_convention_list": (lambda p: _exp(p, convention=["standard"]), "convention"),
    "experiment_samples_negative": (lambda p: _exp(p, figure={"samples": -1}), "figure.samples"),
    "experiment_samples_huge": (lambda p: _exp(p, figure={"samples": 10**9}), "figure.samples"),
    "experiment_std_string": (lambda p: _exp(p, table={"std": "yes"}), "table.std"),
    "experiment_datasets_empty": (lambda p: _exp(p, datasets=[]), "datasets"),
    "experiment_methods_mapping": (lambda p: _exp(p, methods={"average": 1}), "methods"),
    "experiment_official_string": (lambda p: _exp(p, methods=[{"name": "densefuse", "official": "yes"}]), "official"),
    "experiment_duplicate_key": (lambda p: _exp(p, raw="name: a\nname: b\nmethods: [average]\n"
                                                    f"datasets: [{{name: S, path: {p['root'] / 'set'}}}]\n"),
                                 "duplicate key 'name'"),
    "experiment_alias_bomb": (lambda p: _exp(p, raw=_bomb()), "expand to more than"),
    "experiment_deep_nesting": (lambda p: _exp(p, raw="a: " + "[" * 3000 + "]" * 3000 + "\n"), "nested"),
    "experiment_not_a_mapping": (lambda p: _exp(p, raw="- just\n- a list\n"), "mapping"),
    "experiment_binary_file": (lambda p: _write(p["root"] / "e.yaml", bytes(range(256))) or
                               ["experiment", "run", str(p["root"] / "e.yaml"), "--out", str(p["out"])], "e.yaml"),
    "experiment_name_parent": (lambda p: _exp(p, name="../../x"), "name"),
    "experiment_name_absolute": (lambda p: _exp(p, name="/tmp/x"), "name"),
    "experiment_name_dotdot": (lambda p: _exp(p, name=".."), "name"),
    "experiment_published_nan": (lambda p: _exp(p, published=[{"dataset": "S", "method": "P", "EN": float("nan")}]),
                                 "finite"),
    "experiment_published_inf": (lambda p: _exp(p, published=[{"dataset": "S", "method": "P", "EN": float("inf")}]),
                                 "finite"),
    "experiment_published_string": (lambda p: _exp(p, published=[{"dataset": "S", "method": "P", "EN": "7.1"}]),
                                    "finite"),
    "experiment_published_bool": (lambda p: _exp(p, published=[{"dataset": "S", "method": "P", "EN": True}]),
                                  "finite"),
    "experiment_published_csv_no_metric": (lambda p: _exp(p, published=[{"csv": _pub_csv(p, "method,value\nP,1\n"),
                                                                          "dataset": "S"}]), "no metric column"),
    "experiment_published_csv_nan": (lambda p: _exp(p, published=[{"csv": _pub_csv(
        p, "method,metric,value\nP,EN,nan\n"), "dataset": "S"}]), "finite"),
    "experiment_published_csv_short_row": (lambda p: _exp(p, published=[{"csv": _pub_csv(
        p, "method,metric,value\nP,EN\n"), "dataset": "S"}]), "line 2: 2 cells"),
    "experiment_published_csv_empty_value": (lambda p: _exp(p, published=[{"csv": _pub_csv(
        p, "method,metric,value\nP,EN,\n"), "dataset": "S"}]), "line 2, column value"),
    "experiment_unknown_nested_key": (lambda p: _exp(p, figure={"sample": 1}), "unknown key 'sample'"),
    "experiment_fused_not_str": (lambda p: _exp(p, methods=[{"name": "A", "fused": 3}]), "fused"),
    # registration files: a schema, finite matrices that keep the frame a proper quadrilateral
    "register_reg_unknown_key": (lambda p: _reg_apply(p, REG + "H: [[1,0,0],[0,1,0],[0,0,1]]\nextra: 1\n"),
                                 "unknown key 'extra'"),
    "register_reg_missing_h": (lambda p: _reg_apply(p, REG), "'H'"),
    "register_reg_h_2x3": (lambda p: _reg_apply(p, REG + "H: [[1,0,0],[0,1,0]]\n"), "H"),
    "register_reg_h_strings": (lambda p: _reg_apply(p, REG + "H: [[a,0,0],[0,1,0],[0,0,1]]\n"), "H"),
    "register_reg_h_inf": (lambda p: _reg_apply(p, REG + "H: [[.inf,0,0],[0,1,0],[0,0,1]]\n"), "H"),
    "register_reg_horizon": (lambda p: _reg_apply(p, REG + "H: [[1,0,0],[0,1,0],[1,1,1.0e-12]]\n"),
                             "proper quadrilateral"),
    "register_reg_collapsed": (lambda p: _reg_apply(p, REG + "H: [[1.0e-9,0,0],[0,1.0e-9,0],[0,0,1]]\n"),
                               "invertible"),
    "register_reg_corner_behind": (lambda p: _reg_apply(p, REG + "H: [[1,0,0],[0,1,0],[-0.05,0,1]]\n"),
                                   "proper quadrilateral"),
    "register_reg_bad_model": (lambda p: _reg_apply(p, REG.replace("affine", "warp") + IDH),
                               "model"),
    "register_reg_zero_size": (lambda p: _reg_apply(p, REG.replace("[40, 56]", "[0, 56]", 1) +
                                                    IDH), "source_size"),
    "register_reg_size_float": (lambda p: _reg_apply(p, REG.replace("[40, 56]", "[40.5, 56]", 1) +
                                                     IDH), "source_size"),
    "register_reg_duplicate_key": (lambda p: _reg_apply(p, REG + "model: homography\nH: [[1,0,0],[0,1,0],[0,0,1]]\n"),
                                   "duplicate key 'model'"),
    "register_reg_alias_bomb": (lambda p: _reg_apply(p, _bomb()), "expand to more than"),
    "register_reg_8mb": (lambda p: _reg_apply(p, REG + IDH + "#" * (8 << 20) + "\n"),
                         "is not a registration file"),
    "register_reg_json_list": (lambda p: _write(p["root"] / "r.json", b"[1, 2]") or
                               ["register", "apply", "--reg", str(p["root"] / "r.json"), "--ir", str(p["ir"]),
                                "--vis", str(p["vi"]), "--out", str(p["out"])], "not a mapping"),
    "register_apply_resize_huge": (lambda p: _reg_apply(p, REG + IDH, "--resize",
                                                        "100000x100000"), "--resize 100000x100000"),
    "register_apply_resize_wide": (lambda p: _reg_apply(p, REG + IDH, "--resize",
                                                        "70000x2"), "--resize 70000x2"),
    "register_points_nan": (lambda p: _write(p["root"] / "pts.csv", PTS_HEADER + b"0,0,1,1\nnan,10,11,11\n"
                                             b"20,0,21,1\n0,20,1,21\n") or
                            ["register", "fit", "--points", str(p["root"] / "pts.csv"), "--ir", str(p["ir"] / "p0.png"),
                             "--vis", str(p["vi"] / "p0.png"), "--out", str(p["root"] / "reg.yaml")],
                            "line 3, column source_x: Input should be a finite number"),
    "register_points_inf_json": (lambda p: _write(p["root"] / "pts.json", b'{"source": [[0, 0], [1e999, 1], [5, 9]],'
                                                  b' "target": [[0, 0], [1, 1], [5, 9]]}') or
                                 ["register", "fit", "--points", str(p["root"] / "pts.json"), "--ir",
                                  str(p["ir"] / "p0.png"), "--vis", str(p["vi"] / "p0.png"), "--out",
                                  str(p["root"] / "reg.yaml")], "infinite"),
    "register_eval_flow_truncated": (lambda p: _flow(p, b"PK\x03\x04truncated"), "displacement file"),
    "register_eval_flow_object": (lambda p: _flow(p, _npz(np.array([{"a": 1}], dtype=object))), "displacement file"),
    "register_eval_flow_nan": (lambda p: _flow(p, _npz(np.full((40, 56, 2), np.nan, np.float32))), "finite"),
    "register_eval_flow_shape": (lambda p: _flow(p, _npz(np.zeros((3, 3, 2), np.float32))), "shape"),
    "register_eval_flow_int": (lambda p: _flow(p, _npz(np.zeros((40, 56, 2), np.int32))), "finite floats"),
    # boards: numbers checked where they enter
    "calibrate_square_nan": (lambda p: ["calibrate", "--board", "chessboard:9x6:nan", "--cam1",
                                        str(p["ir"] / "*.png"), "--out", str(p["root"] / "rig.yaml")], "nan"),
    "calibrate_square_inf": (lambda p: ["calibrate", "--board", "chessboard:9x6:inf", "--cam1",
                                        str(p["ir"] / "*.png"), "--out", str(p["root"] / "rig.yaml")], "inf"),
    "calibrate_huge_board": (lambda p: ["calibrate", "--board", "chessboard:100000x6:25", "--cam1",
                                        str(p["ir"] / "*.png"), "--out", str(p["root"] / "rig.yaml")], "100000"),
    "calibrate_circles_nan": (lambda p: ["calibrate", "--board", "circles:4x11:nan", "--cam1",
                                         str(p["ir"] / "*.png"), "--out", str(p["root"] / "rig.yaml")], "circles"),
    "calibrate_charuco_marker_larger": (lambda p: ["calibrate", "--board", "charuco:5x7:30:40", "--cam1",
                                                   str(p["ir"] / "*.png"), "--out", str(p["root"] / "rig.yaml")],
                                        "charuco"),
    "calibrate_coded_square_inf": (lambda p: ["calibrate", "--board", f"coded:{p['vi'] / 'p0.png'}:inf", "--cam1",
                                              str(p["ir"] / "*.png"), "--out", str(p["root"] / "rig.yaml")], "inf"),
    "experiment_fused_16bit": (lambda p: _fused_set(p, np.full((40, 56), 900, np.uint16), np.full((48, 40), 900,
                                                                                                  np.uint16)),
                               "--norm16"),
    "experiment_fused_wrong_size": (lambda p: _fused_set(p, np.zeros((40, 56), np.uint8), np.zeros((9, 9), np.uint8)),
                                    "keep their sources' size"),
    "experiment_ckpt_nan_weights": (lambda p: _exp(p, methods=["average", {"name": "densefuse",
                                                                           "ckpt": str(_nan_weights(p))}]), "NaN"),
    "experiment_ckpt_malicious": (lambda p: _exp(p, methods=["average", {"name": "densefuse", "ckpt": str(_evil(p))}]),
                                  "never unpickled"),
    "demo_out_inside_dataset": (lambda p: _write(p["root"] / "d.yaml", b"datasets: [set]\nmethods: [average]\n") or
                                ["demo", "--config", str(p["root"] / "d.yaml"), "--data", str(p["root"]), "--out",
                                 str(p["root"] / "set" / "demo")], "overlaps"),
    "detect_compare_out_is_root": (lambda p: ["detect", "compare", "--root", str(p["root"] / "set"), "--out",
                                              str(p["root"] / "set")], "overlaps"),
    "fuse_official_nan_ckpt": (lambda p: _fuse(p, "--official", "--ckpt", str(_nan_weights(p)), method="densefuse"),
                               "NaN"),
    "fuse_ckpt_symlink_loop": (lambda p: os.symlink(p["root"] / "loop.pt", p["root"] / "loop.pt") or
                               _fuse(p, "--ckpt", str(p["root"] / "loop.pt"), method="densefuse"), "loop.pt"),
    "fuse_int8_weights": (lambda p: _fuse(p, "--ckpt", str(_odd_weights(p, torch.int8)), method="densefuse"), "int8"),
    "export_int8_weights": (lambda p: ["export", "--ckpt", str(_odd_weights(p, torch.int8)), "--out",
                                       str(p["root"] / "o.pt")], "int8"),
    "export_complex_weights": (lambda p: ["export", "--ckpt", str(_odd_weights(p, torch.complex64)), "--out",
                                          str(p["root"] / "o.pt")], "complex"),
    "export_nan_weights": (lambda p: ["export", "--ckpt", str(_nan_weights(p)), "--out", str(p["root"] / "o.pt")],
                           "NaN"),
    "fit_root_dir_inside_data": (lambda p: ["fit", "--config", "experiments/densefuse.yaml", "--data.train",
                                            "[set]", "--data.val", "[set]", "--data.data", str(p["root"]),
                                            "--trainer.default_root_dir", str(p["root"] / "set" / "run"),
                                            "--trainer.max_steps", "1"], "overlaps the input folder"),
}  # fmt: skip
CASES.update(CASES_II)


def _demo(p, text: str) -> list[str]:
    """rgbt demo over set/ with the settings file ``text``."""
    _write(p["root"] / "d.yaml", text.encode())
    return ["demo", "--config", str(p["root"] / "d.yaml"), "--data", str(p["root"]), "--out", str(p["out"])]


def _points_csv(p, body: bytes) -> list[str]:
    _write(p["root"] / "pts.csv", body)
    return ["register", "fit", "--points", str(p["root"] / "pts.csv"), "--ir", str(p["ir"] / "p0.png"), "--vis",
            str(p["vi"] / "p0.png"), "--out", str(p["root"] / "reg.yaml")]  # fmt: skip


@functools.cache
def _zeros_png(side: int) -> bytes:
    return cv2.imencode(".png", np.zeros((side, side), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()


def _huge_pair(p, side: int = 10_000) -> dict[str, Path]:
    """One pair of ``side`` x ``side`` (100 MP, 100 KB as PNGs): whole, a transformer needs hundreds of GB."""
    for key in ("ir", "vi"):
        for f in p[key].iterdir():
            f.unlink()
        _write(p[key] / "big.png", _zeros_png(side))
    return p


SWIN = ["--ckpt", "weights/swinfusion.pt"]  # our weights (the repository's), so that no data root is needed
DEMO_OK = "datasets: [set]\nmethods: [average]\nmetrics: [EN]\nfigure_samples: {}\n"
CASES_III = {
    # demo settings: a declared schema (types, ranges, known names), checked before any work
    "demo_cfg_bits_low": (lambda p: _demo(p, DEMO_OK + "figure_bits: 3\n"), "figure_bits"),
    "demo_cfg_height_float": (lambda p: _demo(p, DEMO_OK + "figure_height: 120.5\n"), "figure_height"),
    "demo_cfg_limit_zero": (lambda p: _demo(p, DEMO_OK + "limit: 0\n"), "limit"),
    "demo_cfg_limit_bool": (lambda p: _demo(p, DEMO_OK + "limit: true\n"), "limit"),
    "demo_cfg_metric_unknown": (lambda p: _demo(p, DEMO_OK.replace("[EN]", "[EN, XX]")), "XX"),
    "demo_cfg_convention_unknown": (lambda p: _demo(p, DEMO_OK + "convention: nope\n"), "nope"),
    "demo_cfg_methods_empty": (lambda p: _demo(p, DEMO_OK.replace("[average]", "[]")), "methods"),
    "demo_cfg_datasets_string": (lambda p: _demo(p, DEMO_OK.replace("[set]", "set")), "datasets"),
    "demo_cfg_unknown_key": (lambda p: _demo(p, DEMO_OK + "figure_colour: red\n"), "figure_colour"),
    "demo_cfg_samples_list": (lambda p: _demo(p, DEMO_OK.replace("{}", "{set: [1]}")), "figure_samples"),
    "demo_cfg_duplicate_key": (lambda p: _demo(p, DEMO_OK + "limit: 1\nlimit: 2\n"), "limit"),
    "demo_cfg_not_mapping": (lambda p: _demo(p, "- tno\n- msrs\n"), "mapping"),
    "demo_cfg_skip_missing_text": (lambda p: _demo(p, DEMO_OK + "skip_missing: 'no'\n"), "skip_missing"),
    # CSV files: one reader, a declared row (required columns, finite numbers, complete rows)
    "points_csv_missing_column": (lambda p: _points_csv(p, b"source_x,source_y,target_x\n1,2,3\n"), "target_y"),
    "points_csv_text_value": (lambda p: _points_csv(p, PTS_HEADER + b"1,2,3,four\n"), "line 2, column target_y"),
    "points_csv_nan": (lambda p: _points_csv(p, PTS_HEADER + COLLINEAR + b"nan,1,2,3\n"), "line 6, column source_x"),
    "points_csv_inf": (lambda p: _points_csv(p, PTS_HEADER + b"1,2,3,inf\n"), "column target_y"),
    "points_csv_short_row": (lambda p: _points_csv(p, PTS_HEADER + b"1,2,3\n"), "line 2"),
    "points_csv_long_row": (lambda p: _points_csv(p, PTS_HEADER + b"1,2,3,4,5\n"), "line 2"),
    "points_csv_empty_cell": (lambda p: _points_csv(p, PTS_HEADER + b"1,,3,4\n"), "column source_y"),
    "points_csv_binary": (lambda p: _points_csv(p, b"\xff\xfe\x00\x01" * 50), "pts.csv"),
    "points_csv_folder": (lambda p: (p["root"] / "pts.csv").mkdir() or
                          ["register", "fit", "--points", str(p["root"] / "pts.csv"), "--ir", str(p["ir"] / "p0.png"),
                           "--vis", str(p["vi"] / "p0.png"), "--out", str(p["root"] / "reg.yaml")], "folder"),
    "published_csv_empty_method": (lambda p: _exp(p, published=[{"csv": _pub_csv(
        p, "dataset,method,metric,value\nS,,EN,6.5\n")}]), "column method"),
    "published_csv_long_row": (lambda p: _exp(p, published=[{"csv": _pub_csv(
        p, "dataset,method,metric,value\nS,X,EN,6.5,7\n")}]), "line 2"),
    "published_csv_empty_dataset": (lambda p: _exp(p, published=[{"csv": _pub_csv(
        p, "dataset,method,metric,value\n,X,EN,6.5\n")}]), "no dataset"),
    # resources: the memory a network would take on the largest pair, before any work
    "fuse_tile0_huge_pair": (lambda p: _fuse(_huge_pair(p), "--tile", "0", *SWIN, method="swinfusion"),
                             "would need about"),
    "fuse_large_tile_huge_pair": (lambda p: _fuse(_huge_pair(p), "--tile", "9000", *SWIN, method="swinfusion"),
                                  "smaller --tile"),
    "fuse_official_huge_pair": (lambda p: _fuse(_huge_pair(p), "--official", *SWIN, method="swinfusion"),
                                "drop --official"),
    "experiment_official_huge_pair": (lambda p: _exp(_huge_pair(p), methods=[
        {"name": "swinfusion", "ckpt": "weights/swinfusion.pt", "official": True}]), "drop --official"),
    # a network of the user's own: named explicitly, from a checkpoint that holds it
    "experiment_class_path_no_ckpt": (lambda p: _exp(p, methods=[{"name": "mine", "class_path": "my.Net"}]),
                                      "needs name: and ckpt:"),
    "experiment_class_path_not_a_path": (lambda p: _exp(p, methods=[{"name": "mine", "class_path": "os.system; x",
                                                                      "ckpt": str(_weights(p))}]), "class_path"),
    "experiment_class_path_other_ckpt": (lambda p: _exp(p, methods=[{"name": "mine", "class_path": "nowhere.Net",
                                                                      "ckpt": str(_weights(p))}]),
                                         "not nowhere.Net"),
    "experiment_class_path_registered_name": (lambda p: _exp(p, methods=[{"name": "densefuse", "class_path": "a.B",
                                                                           "ckpt": str(_weights(p))}]),
                                              "registered method"),
    "fuse_own_network_ckpt": (lambda p: _fuse(p, "--ckpt", str(_own_weights(p)), method="densefuse"),
                              "network of your own"),
    # TensorFlow 1 checkpoints: read without TensorFlow, a damaged one is one line
    "fuse_tf1_junk_index": (lambda p: _write(p["root"] / "m.ckpt.index", b"\x00junk" * 20) or
                            _fuse(p, "--ckpt", str(p["root"] / "m.ckpt.index"), method="u2fusion"),
                            "not a readable TensorFlow 1 checkpoint index"),
    "fuse_tf1_data_without_index": (lambda p: _write(p["root"] / "m.ckpt.data-00000-of-00001", b"\x00" * 64) or
                                    _fuse(p, "--ckpt", str(p["root"] / "m.ckpt.data-00000-of-00001"),
                                          method="u2fusion"), "m.ckpt.index: no such file"),
    # validate/test/predict guard their folders as fit does
    "test_root_dir_inside_data": (lambda p: ["test", "--config", "experiments/densefuse.yaml", "--data.train",
                                             "[set]", "--data.val", "[set]", "--data.data",
                                             str(p["root"]), "--trainer.default_root_dir",
                                             str(p["root"] / "set" / "run")], "overlaps the input folder"),
}  # fmt: skip
CASES.update(CASES_III)


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else "dir"
        for f in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # configs named relative to the repository
    paths = _setup(tmp_path)
    prepare, expected = CASES[case]
    argv = prepare(paths)
    before = _snapshot(tmp_path)
    capfd.readouterr()
    try:
        code = rgbt(argv)
    except SystemExit as e:  # argparse exits from inside main
        code = e.code
    out, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, f"{case}: exit {code}\n{err}"
    assert len(lines) == 1, f"{case}: {len(lines)} stderr lines\n{err}"
    assert "Traceback" not in err and "error" in lines[0] and lines[0].startswith("rgbt"), err
    assert expected in lines[0], f"{case}: {lines[0]!r} does not name {expected!r}"
    assert _snapshot(tmp_path) == before, f"{case}: files changed"
    assert not (tmp_path / "pwned").exists()


_VALID = {ext: cv2.imencode(ext, synth_pair(24, 32, 0)[0])[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".tif")}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ext=st.sampled_from(sorted(_VALID)),
    cut=st.integers(0, 2000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8),
    junk=st.binary(max_size=64),
    size=st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
)
def test_image_reader_fuzz_never_crashes(tmp_path, ext, cut, flips, junk, size):
    """Truncated, bit-flipped, padded and forged files: read_image returns an image or raises RgbtError."""
    from fusion.errors import RgbtError
    from fusion.io import read_image

    data = bytearray(_VALID[ext][: max(cut, 1)] if cut < len(_VALID[ext]) else _VALID[ext])
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    data += junk
    path = tmp_path / f"f{ext}"
    for blob in (bytes(data), _png_header_only(*size)):
        path.write_bytes(blob)
        try:
            img, info = read_image(path, norm16=None)
            assert img.ndim == 4 and img.shape[1] in (1, 3) and torch.isfinite(img).all()
        except RgbtError as e:
            assert "\n" not in str(e)


RESOURCE_CASES = [
    "experiment_alias_bomb",
    "experiment_deep_nesting",
    "register_reg_alias_bomb",
    "register_reg_8mb",
    "register_apply_resize_huge",
    "experiment_samples_huge",
    "fuse_tile0_huge_pair",
    "experiment_official_huge_pair",
]


@pytest.mark.parametrize("case", RESOURCE_CASES)
def test_resource_cases_are_refused_small_and_fast(case, tmp_path):
    """The cases that once took gigabytes or minutes, each in a process of its own: exit 2 in one line, under
    700 MB resident at peak (the interpreter and torch included) and 30 s."""
    paths = _setup(tmp_path)
    argv = CASES[case][0](paths)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    # the child's own high-water mark (VmHWM): the kernel's ru_maxrss of a child starts at its parent's size
    code = (
        "import sys\nfrom fusion.cli import main\nrc = main(sys.argv[1:])\n"
        "print(next(ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM:')))\nsys.exit(rc)"
    )
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    took = time.perf_counter() - t
    err = proc.stderr
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err
    peak_mb = int(proc.stdout.split()[-1]) / 1024
    assert peak_mb < 700 and took < 30, (peak_mb, took)
