"""The CLI end to end on synthetic folders, and every bad-input case: one line, exit code 2, no partial output."""

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from fusion.cli import main
from fusion.demo import DemoConfig
from fusion.metrics import metric_names

REPO = Path(__file__).resolve().parents[1]


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def fuse_args(ir, vi, out, method="average"):
    return ["fuse", "--method", method, "--ir", ir, "--vis", vi, "--out", out, "--device", "cpu"]


def test_fuse_writes_one_png_per_pair_in_colour(pair_dirs, tmp_path, capsys):
    ir, vi = pair_dirs
    out = tmp_path / "out"
    code, stdout, _ = run(fuse_args(ir, vi, out, "gff"), capsys)
    assert code == 0 and "wrote 3 images" in stdout
    for name, shape in [("p0", (37, 53, 3)), ("p1", (64, 48)), ("p2", (40, 60, 3))]:
        assert cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED).shape == shape
    assert (out / "rgbt_fuse.json").is_file()


def test_fuse_records_16bit_scaling_per_image(pair_dirs, tmp_path, capsys):
    import json

    ir, vi = pair_dirs
    cv2.imwrite(str(ir / "p0.png"), (np.arange(37 * 53).reshape(37, 53) * 20 + 1000).astype(np.uint16))
    out = tmp_path / "out"
    code, _, err = run(fuse_args(ir, vi, out), capsys)
    assert code == 2 and "16-bit" in err and "--norm16" in err
    assert run([*fuse_args(ir, vi, out), "--norm16", "percentile:1:99"], capsys)[0] == 0
    rec = json.loads((out / "rgbt_fuse.json").read_text())["images"]
    assert rec["p0"]["ir_scaling"].startswith("percentile:1:99 [") and rec["p1"]["ir_scaling"] == "uint8/255"


def test_fuse_skips_finished_files_unless_overwrite(pair_dirs, tmp_path, capsys):
    ir, vi = pair_dirs
    out = tmp_path / "out"
    run(fuse_args(ir, vi, out), capsys)
    marker = out / "p0.png"
    os.utime(marker, (0, 0))
    code, stdout, _ = run(fuse_args(ir, vi, out), capsys)
    assert code == 0 and "skipped 3" in stdout and marker.stat().st_mtime == 0
    code, stdout, _ = run([*fuse_args(ir, vi, out), "--overwrite"], capsys)
    assert "wrote 3" in stdout and marker.stat().st_mtime > 0


def test_evaluate_prints_table_and_writes_long_csv(pair_dirs, tmp_path, capsys):
    ir, vi = pair_dirs
    for m in ("average", "max"):
        run(fuse_args(ir, vi, tmp_path / "fused" / m, m), capsys)
    csv_path = tmp_path / "scores.csv"
    args = ["evaluate", "--fused", tmp_path / "fused", "--ir", ir, "--vis", vi, "--csv", csv_path]
    code, stdout, _ = run(args, capsys)
    assert code == 0 and "| average (3) |" in stdout and "| max (3) |" in stdout and "convention: standard" in stdout
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == ["image", "method", "metric", "value", "convention"]
    assert (
        len(rows) == 2 * 3 * len(metric_names())
        and [r["metric"] for r in rows[: len(metric_names())]] == metric_names()
    )
    # An existing CSV is not overwritten without the flag.
    code, _, err = run(args, capsys)
    assert code == 2 and "--overwrite" in err
    assert run([*args, "--overwrite", "--metrics", "EN,SD"], capsys)[0] == 0
    assert {r["metric"] for r in csv.DictReader(csv_path.open())} == {"EN", "SD"}


def _bad(case, ir: Path, vi: Path, tmp_path: Path) -> list:
    out = tmp_path / "out"
    if case == "unpaired":
        (vi / "p1.png").rename(vi / "zzz.png")
    elif case == "missing_dir":
        return fuse_args(ir, tmp_path / "nope", out)
    elif case == "size_mismatch":
        cv2.imwrite(str(vi / "p1.png"), np.zeros((10, 10), np.uint8))
    elif case == "corrupt":
        (ir / "p2.png").write_bytes((ir / "p2.png").read_bytes()[:100])
    elif case == "empty_dir":
        for f in vi.iterdir():
            f.unlink()
    elif case == "unknown_method":
        return fuse_args(ir, vi, out, "magic")
    elif case == "out_is_file":
        out.write_text("mine")
    elif case == "bad_norm":
        return [*fuse_args(ir, vi, out), "--norm16", "sideways"]
    return fuse_args(ir, vi, out)


@pytest.mark.parametrize(
    "case",
    ["unpaired", "missing_dir", "size_mismatch", "corrupt", "empty_dir", "unknown_method", "out_is_file", "bad_norm"],
)
def test_bad_input_one_line_exit_2_no_output(case, pair_dirs, tmp_path, capsys):
    ir, vi = pair_dirs
    code, stdout, err = run(_bad(case, ir, vi, tmp_path), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rgbt fuse: error:"), err
    out = tmp_path / "out"
    if case == "out_is_file":
        assert out.read_text() == "mine"
    else:
        assert not out.exists() or not any(out.glob("*.png")), "no half-written output"
    if case in ("unpaired", "size_mismatch", "corrupt"):
        assert "p" in lines[0] and (".png" in lines[0] or ".jpg" in lines[0])  # names the file


def test_evaluate_orphan_fused_image(pair_dirs, tmp_path, capsys):
    ir, vi = pair_dirs
    fused = tmp_path / "fused"
    run(fuse_args(ir, vi, fused), capsys)
    cv2.imwrite(str(fused / "stranger.png"), np.zeros((5, 5), np.uint8))
    code, _, err = run(["evaluate", "--fused", fused, "--ir", ir, "--vis", vi], capsys)
    assert code == 2 and "stranger.png" in err and len(err.strip().splitlines()) == 1


def test_demo_yaml_spells_out_the_defaults():
    assert DemoConfig.from_yaml(REPO / "experiments" / "demo.yaml") == DemoConfig()
    fig = DemoConfig.from_yaml(REPO / "experiments" / "readme_figure.yaml")  # the README's figure
    assert fig.limit == 1 and fig.figure_bits == 6 and len(fig.datasets) == 2 and 4 <= len(fig.methods) <= 6


def test_demo_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"datasets": "tno"}))
    code, _, err = run(["demo", "--config", bad, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "datasets: Input should be a valid list" in err
    bad.write_text("colour: [")
    code, _, err = run(["demo", "--config", bad], capsys)
    assert code == 2 and "not valid YAML" in err
    bad.write_text("speed: 3")
    assert "unknown key 'speed'" in run(["demo", "--config", bad], capsys)[2]


def test_methods_lists_everything(capsys):
    code, out, _ = run(["methods"], capsys)
    assert code == 0 and all(m in out for m in ("average", "max", "weighted", "laplacian", "gff"))


def test_evaluate_reads_vifb_flat_layout_and_records_convention(pair_dirs, tmp_path, capsys):
    ir, vi = pair_dirs
    flat = tmp_path / "flat"
    flat.mkdir()
    for m in ("average", "max"):
        run(fuse_args(ir, vi, tmp_path / m, m), capsys)
        for f in (tmp_path / m).glob("*.png"):
            f.rename(flat / f"{f.stem}_{m.upper()}.png")
    csv_path = tmp_path / "v.csv"
    args = ["evaluate", "--fused", flat, "--ir", ir, "--vis", vi, "--convention", "vifb", "--csv", csv_path]
    code, stdout, _ = run(args, capsys)
    assert code == 0 and "| AVERAGE (3) |" in stdout and "| MAX (3) |" in stdout and "convention: vifb" in stdout
    rows = list(csv.DictReader(csv_path.open()))
    assert {r["method"] for r in rows} == {"AVERAGE", "MAX"} and {r["convention"] for r in rows} == {"vifb"}
    assert {r["metric"] for r in rows} >= {"CE", "RMSE", "Qabf"}


def test_tune_allocator_applies_on_glibc_and_can_be_turned_off():
    import platform
    import subprocess
    import sys

    code = "from fusion.perf import tune_allocator; print(tune_allocator())"
    env = {k: v for k, v in os.environ.items() if k != "RGBT_MALLOC"}

    def run(e: dict) -> subprocess.CompletedProcess:  # malloc settings are per process
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, check=True)

    assert run({**env, "RGBT_MALLOC": "default"}).stdout.strip() == "False"
    glibc = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
    assert run(env).stdout.strip() == str(glibc)


def test_interrupted_fuse_keeps_a_manifest_of_every_png(pair_dirs, tmp_path, monkeypatch, capsys):
    """An interrupt after the first image leaves that image and a manifest listing exactly it; a rerun finishes."""
    import json

    import fusion.fuse as F

    ir, vi = pair_dirs
    out = tmp_path / "out"
    real, calls = F.fuse_to_array, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(F, "fuse_to_array", flaky)
    code, _, err = run(fuse_args(ir, vi, out), capsys)
    assert code == 130 and "rerun to continue" in err
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert len(pngs) == 1 and sorted(json.loads((out / "rgbt_fuse.json").read_text())["images"]) == pngs
    monkeypatch.setattr(F, "fuse_to_array", real)
    assert run(fuse_args(ir, vi, out), capsys)[0] == 0
    assert sorted(json.loads((out / "rgbt_fuse.json").read_text())["images"]) == ["p0", "p1", "p2"]


def test_a_second_fuse_into_a_locked_folder_is_refused_and_stale_tmp_files_go(pair_dirs, tmp_path, capsys):
    from fusion.fuse import claim_folder

    ir, vi = pair_dirs
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".p0.png.abc123.tmp"  # what atomic_write_bytes leaves when a run is killed mid-write
    stale.write_bytes(b"half")
    with claim_folder(out):  # another run holds the folder
        code, _, err = run(fuse_args(ir, vi, out), capsys)
        assert code == 2 and "another rgbt run is writing into" in err
        assert not any(out.glob("*.png"))
    assert not stale.exists()  # the holder cleared it when it took the folder
    assert run(fuse_args(ir, vi, out), capsys)[0] == 0 and len(list(out.glob("*.png"))) == 3


def test_comparison_figure_columns_line_up():
    """Rows of images with different aspect ratios: every tile has the same width, so the columns align."""
    import torch

    from fusion.figure import GAP, HEADER, comparison_figure

    rows = [[("a", torch.rand(1, 1, 40, 80)), ("b", torch.rand(1, 3, 40, 80))],
            [("c", torch.rand(1, 1, 60, 30)), ("d", torch.rand(1, 3, 60, 30))]]  # fmt: skip
    fig = comparison_figure(rows, height=50)
    assert fig.shape == (2 * (HEADER + 50) + GAP, 2 * 100 + GAP, 3)
    # the gap column between the two tiles is white in both rows
    assert (fig[:, 100 : 100 + GAP] == 255).all()


def test_evaluate_scores_16bit_fused_images_with_norm16(pair_dirs, tmp_path, capsys):
    ir, vi = pair_dirs
    out = tmp_path / "f16" / "average"
    assert run([*fuse_args(ir, vi, out), "--bits", "16"], capsys)[0] == 0
    args = ["evaluate", "--fused", tmp_path / "f16", "--ir", ir, "--vis", vi, "--metrics", "EN,SD"]
    code, _, err = run(args, capsys)
    assert code == 2 and "--norm16" in err
    code, table, _ = run([*args, "--norm16", "fixed"], capsys)
    assert code == 0 and "average (3)" in table


def test_an_unexpected_error_is_one_line_exit_1_and_a_report(pair_dirs, tmp_path, capsys, monkeypatch):
    """A bug (here: a method whose build raises) never shows a traceback: one line naming the error and the report
    file, exit 1, and the report holds the command line and the traceback. RGBT_DEBUG=1 lets it through."""
    import fusion.methods

    def broken(*a, **k):
        raise ZeroDivisionError("division by zero\nin a place nobody expected")

    monkeypatch.setattr(fusion.methods, "build_method", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("RGBT_DEBUG", raising=False)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    ir, vi = pair_dirs
    code, out, err = run(fuse_args(ir, vi, tmp_path / "out"), capsys)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "rgbt fuse: unexpected error: ZeroDivisionError: division by zero in a place nobody expected" in err
    report = Path(err.split("full report: ")[1].split(";")[0])
    assert (
        report.parent == tmp_path
        and "Traceback" in report.read_text()
        and "fuse --method average" in report.read_text()
    )
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("RGBT_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main([str(a) for a in fuse_args(ir, vi, tmp_path / "out")])


def test_readme_stays_short_and_its_links_resolve():
    """The README a newcomer reads in two minutes: under 120 lines, its figure and every file it links exist, and
    every command of its tour is a real sub-command."""
    import re

    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) < 120
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert "docs/fusion_samples.png" in links and "docs/architecture.md" in links
    assert all((REPO / link).exists() for link in links), [link for link in links if not (REPO / link).exists()]
    from fusion.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    used = set(re.findall(r"^rgbt (\w+)", text, re.M))
    assert used and used <= commands, used - commands
