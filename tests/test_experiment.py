"""``rgbt experiment``: experiment files, tables, resuming after SIGKILL, W&B offline, 2 processes = 1."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import yaml
from conftest import synth_pair

from fusion.cli import main as rgbt
from fusion.errors import RgbtError
from fusion.experiment.spec import Dataset, Method, Spec, load_spec
from fusion.experiment.tables import entries, latex, markdown

ROOT = Path(__file__).resolve().parents[1]


def make_set(folder: Path, n: int, h: int = 48, w: int = 64) -> Path:
    for d in ("ir", "vi"):
        (folder / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        vis, ir = synth_pair(h, w, 100 + i)
        cv2.imwrite(str(folder / "ir" / f"{i:02d}.png"), ir)
        cv2.imwrite(str(folder / "vi" / f"{i:02d}.png"), vis)
    return folder


def write_spec(path: Path, data: Path, **over) -> Path:
    spec = {
        "name": "synthetic",
        "convention": "standard",
        "metrics": ["EN", "SD", {"name": "MSE", "decimals": 3}, "SSIM"],
        "decimals": 2,
        "datasets": [{"name": "A", "path": str(data / "A")}, {"name": "B", "path": str(data / "B")}],
        "methods": ["average", "max"],
        "published": [{"dataset": "A", "method": "average", "EN": 5.0}, {"dataset": "A", "method": "Paper", "SD": 99}],
        "figure": {"samples": 1},
        "wandb": {"mode": "disabled"},
    }
    spec.update(over)
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def two_sets(tmp_path: Path) -> Path:
    make_set(tmp_path / "data" / "A", 3)
    make_set(tmp_path / "data" / "B", 2, 40, 52)
    return tmp_path / "data"


def test_run_writes_csv_tables_figure_and_resumes(two_sets, tmp_path, capsys):
    spec = write_spec(tmp_path / "e.yaml", two_sets)
    out = tmp_path / "out"
    assert rgbt(["experiment", "run", str(spec), "--out", str(out), "--devices", "1"]) == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == (3 + 2) * 2 * 4  # pairs x methods x metrics
    assert {r["method"] for r in rows} == {"average", "max"} and {r["dataset"] for r in rows} == {"A", "B"}
    for name in ("A.md", "A.tex", "B.md", "B.tex", "tables.md"):
        assert (out / "tables" / name).is_file(), name
    md = (out / "tables" / "A.md").read_text()
    assert "| average (published) |" in md and "| Paper (published) |" in md and "avg rank" in md
    fig = cv2.imread(str(out / "samples.png"))
    assert fig is not None and fig.shape[0] > 100  # one row per dataset
    # a rerun does nothing but rewrite the outputs, byte for byte
    before = {p: p.stat().st_mtime_ns for p in (out / "scores").rglob("*.json")}
    snapshot = (out / "scores.csv").read_bytes(), (out / "tables" / "A.tex").read_bytes()
    capsys.readouterr()
    assert rgbt(["experiment", "run", str(spec), "--out", str(out), "--devices", "1"]) == 0
    assert "5 pairs, 5 already done, 0 to do" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in (out / "scores").rglob("*.json")}
    assert snapshot == ((out / "scores.csv").read_bytes(), (out / "tables" / "A.tex").read_bytes())
    # tables re-render from the CSV alone
    (out / "tables" / "A.md").unlink()
    assert rgbt(["experiment", "table", "--from", str(out)]) == 0
    assert (out / "tables" / "A.md").read_text() == md


def test_external_fused_folder_is_scored_not_fused(two_sets, tmp_path):
    """A method given by its folder of fused images (here, ``rgbt fuse`` output) is only scored, with the
    same values as the experiment's own fusion of that method."""
    ext = tmp_path / "elsewhere"
    for ds in ("A", "B"):
        d = two_sets / ds
        assert (
            rgbt(["fuse", "--method", "max", "--ir", str(d / "ir"), "--vis", str(d / "vi"), "--out", str(ext / ds)])
            == 0
        )
    methods = ["max", {"name": "theirs", "fused": {"A": str(ext / "A"), "B": str(ext / "B")}}]
    spec = write_spec(tmp_path / "e.yaml", two_sets, methods=methods)
    out = tmp_path / "out"
    assert rgbt(["experiment", "run", str(spec), "--out", str(out), "--devices", "1"]) == 0
    assert not (out / "fused" / "A" / "theirs").exists()
    vals: dict = {}
    for r in csv.DictReader((out / "scores.csv").open()):
        vals.setdefault(r["method"], []).append(r["value"])
    assert vals["max"] == vals["theirs"]


def test_external_folder_with_an_unpaired_image_fails_and_a_partial_one_is_noted(two_sets, tmp_path, capsys):
    ext = tmp_path / "ext"
    d = two_sets / "A"
    assert rgbt(["fuse", "--method", "max", "--ir", str(d / "ir"), "--vis", str(d / "vi"), "--out", str(ext)]) == 0
    (ext / "00.png").unlink()
    spec = write_spec(tmp_path / "e.yaml", two_sets, methods=[{"name": "x", "fused": {"A": str(ext)}}], published=[])
    assert rgbt(["experiment", "run", str(spec), "--out", str(tmp_path / "out"), "--devices", "1"]) == 0
    assert "note: x has fused images of 2 of the 3 pairs of A" in capsys.readouterr().out
    (ext / "zz.png").write_bytes((ext / "01.png").read_bytes())
    assert rgbt(["experiment", "run", str(spec), "--out", str(tmp_path / "out2"), "--devices", "1"]) == 2
    err = capsys.readouterr().err
    assert "zz.png has no source pair in A" in err and "Traceback" not in err
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"methods": ["nosuch"]}, "unknown method 'nosuch'"),
        ({"metrics": ["EN", "Bogus"]}, "metric 'Bogus' is not in the standard convention"),
        ({"convention": "matlab"}, "unknown convention 'matlab'"),
        ({"colour": True}, "unknown key 'colour' in the file"),
        ({"datasets": [{"name": "X", "path": "/nonexistent/x"}]}, "dataset X '/nonexistent/x' not found"),
        ({"published": [{"dataset": "Z", "method": "m", "EN": 1}]}, "dataset 'Z', which the file does not list"),
        ({"table": {"formats": ["html"]}}, "table.formats.0: Input should be 'markdown' or 'latex'"),
        ({"wandb": {"mode": "cloud"}}, "wandb.mode: Input should be 'offline', 'online' or 'disabled'"),
        ({"methods": [{"name": "x", "fused": "/nonexistent/f"}]}, "fused folder '/nonexistent/f' not found"),
        ({"methods": ["max", "max"]}, "two methods share a name"),
    ],
)
def test_bad_experiment_files_fail_with_one_line(two_sets, tmp_path, capsys, change, expected):
    spec = write_spec(tmp_path / "e.yaml", two_sets, **change)
    assert rgbt(["experiment", "run", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_table_from_a_folder_without_results_fails_with_one_line(tmp_path, capsys):
    assert rgbt(["experiment", "table", "--from", str(tmp_path)]) == 2
    assert "experiment.json is missing" in capsys.readouterr().err
    for name in ("experiment.json", "scores.csv", "published.csv"):
        (tmp_path / name).write_text("{not json")
    assert rgbt(["experiment", "table", "--from", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is damaged" in err and "\n" not in err and "Traceback" not in err


def _spec(**kw) -> Spec:
    base = dict(
        name="t",
        convention="standard",
        metrics=["EN", "MSE"],
        decimals={"EN": 2, "MSE": 2},
        datasets=[Dataset("D", "ir", "vi")],
        methods=[Method("a"), Method("b"), Method("c")],
        published=[],
    )
    return Spec(**{**base, **kw})


def test_table_bold_underline_rank_and_published_difference():
    rows = []
    for m, en, mse in (("a", [5.0, 7.0], [3.0, 3.0]), ("b", [7.0, 7.0], [1.0, 2.0]), ("c", [1.0, 1.0], [9.0, 9.0])):
        for i in range(2):
            rows += [("D", f"{i}", m, "EN", en[i], "standard"), ("D", f"{i}", m, "MSE", mse[i], "standard")]
    pub = [
        {"dataset": "D", "method": "b", "metric": "EN", "value": 6.5},
        {"dataset": "D", "method": "P", "metric": "MSE", "value": 0.5},
    ]
    spec = _spec(published=pub, std=True)
    es = entries(spec, "D", rows, pub)
    assert [(e.method, e.published) for e in es] == [("a", False), ("b", False), ("b", True), ("c", False), ("P", True)]
    assert es[1].mean == {"EN": 7.0, "MSE": 1.5} and es[0].std["EN"] == 1.0
    assert es[2].diff == {"EN": 0.5} and es[2].rank is None  # beside ours, not ranked twice
    # EN (higher better): b 7 > a 6 > c 1; MSE (lower better): P 0.5 < b 1.5 < a 3 < c 9
    assert (es[1].rank, es[0].rank, es[3].rank, es[4].rank) == (1.5, 2.5, 3.5, 1.0)
    md = markdown(spec, "D", es)
    assert "| b (2) | **7.00 ± 0.00** | <u>1.50 ± 0.50</u> | 1.50 |" in md
    assert "| b (published) | 6.50 (Δ +0.50) | – |  |" in md
    assert "| P (published) | – | **0.50** | 1.00 |" in md
    tex = latex(spec, "D", es)
    assert "b & \\textbf{7.00 $\\pm$ 0.00} & \\underline{1.50 $\\pm$ 0.50} & 1.50 \\\\" in tex


def _tabular_rows(tex: str) -> list[str]:
    body = tex.split("\\midrule")[1].split("\\bottomrule")[0]
    return [r.strip() for r in body.split("\\\\") if r.strip()]


def test_latex_table_parses_and_every_row_has_the_header_columns():
    """No TeX engine installs from the package registries, so the LaTeX is checked with a LaTeX parser: it
    parses without error, braces balance, the environments nest, and every row has as many cells as the
    column specification."""
    pylatexenc = pytest.importorskip("pylatexenc.latexwalker")
    rows = [("D", "0", m, k, v, "standard") for m, v in (("a_1", 1.0), ("b&c", 2.0)) for k in ("EN", "MSE")]
    spec = _spec(published=[{"dataset": "D", "method": "x%", "metric": "EN", "value": 3.0}], std=True)
    tex = latex(spec, "D", entries(spec, "D", rows, spec.published))
    walker = pylatexenc.LatexWalker(tex, tolerant_parsing=False)
    nodes, _, _ = walker.get_latex_nodes()
    envs = [n for n in nodes if n.isNodeType(pylatexenc.LatexEnvironmentNode)]
    assert [e.environmentname for e in envs] == ["table"]
    inner = [n.environmentname for n in envs[0].nodelist if n.isNodeType(pylatexenc.LatexEnvironmentNode)]
    assert inner == ["tabular"]
    spec_cols = tex.split("\\begin{tabular}{")[1].split("}")[0]
    header = tex.split("\\toprule")[1].split("\\midrule")[0]
    for row in [header.strip().removesuffix("\\\\"), *_tabular_rows(tex)]:
        cells = row.replace("\\&", "").count("&") + 1
        assert cells == len(spec_cols), row
    assert "a\\_1" in tex and "b\\&c" in tex and "x\\%$^\\dagger$" in tex


def test_wandb_offline_run_holds_the_tables(two_sets, tmp_path, monkeypatch):
    """The W&B run, offline (no account, no network), read back: its config, the per-image and mean tables,
    the rendered tables as an artifact and the sample figure."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    spec = write_spec(tmp_path / "e.yaml", two_sets, wandb={"mode": "offline", "project": "test"})
    out = tmp_path / "out"
    assert rgbt(["experiment", "run", str(spec), "--out", str(out), "--devices", "1"]) == 0
    (run,) = (out / "wandb").glob("offline-run-*")
    tables = {
        p.name.split("_")[0]: json.loads(p.read_text()) for p in (run / "files" / "media" / "table").glob("*.json")
    }
    assert tables["scores"]["columns"] == ["dataset", "image", "method", "metric", "value", "convention"]
    assert len(tables["scores"]["data"]) == 40
    means = {(r[0], r[1], r[2]): r[3] for r in tables["means"]["data"]}
    scores = list(csv.DictReader((out / "scores.csv").open()))
    en = [float(r["value"]) for r in scores if (r["dataset"], r["method"], r["metric"]) == ("A", "max", "EN")]
    assert means[("A", "max", "EN")] == pytest.approx(sum(en) / len(en), abs=1e-12)
    assert list((run / "files" / "media" / "images").glob("samples*.png"))
    record = next(run.glob("run-*.wandb")).read_bytes()  # W&B's record file: names are stored as text
    # the artifact of rendered tables, and the config (stored as JSON text in the record)
    for key in (b"synthetic-tables", b"A.tex", b"tables.md", b"differences.csv", b"convention", b"standard"):
        assert key in record, key


def test_two_processes_give_the_same_csv_as_one(two_sets, tmp_path):
    """Lightning's predict loop with 2 CPU processes (ddp_spawn, gloo) and a distributed sampler."""
    spec = write_spec(tmp_path / "e.yaml", two_sets, methods=["average", "gff"])
    one, two = tmp_path / "one", tmp_path / "two"
    assert rgbt(["experiment", "run", str(spec), "--out", str(one), "--devices", "1"]) == 0
    assert rgbt(["experiment", "run", str(spec), "--out", str(two), "--devices", "2", "--accelerator", "cpu"]) == 0
    assert (one / "scores.csv").read_bytes() == (two / "scores.csv").read_bytes()
    assert (one / "tables" / "tables.md").read_bytes() == (two / "tables" / "tables.md").read_bytes()


def test_sigkill_halfway_then_rerun_does_only_the_rest(tmp_path):
    """Kill a run with SIGKILL once some pairs are done; the rerun does only the missing work, and its CSV and
    tables are byte-identical to those of an uninterrupted run."""
    make_set(tmp_path / "data" / "A", 16, 160, 200)
    make_set(tmp_path / "data" / "B", 1)
    spec = write_spec(tmp_path / "e.yaml", tmp_path / "data", methods=["gff", "laplacian"], metrics=None)
    env = {**os.environ, "RGBT_THREADS": "1"}
    cmd = [sys.executable, "-m", "fusion.cli", "experiment", "run", str(spec), "--devices", "1"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((killed / "scores").rglob("*.json"))) < 8:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in [*(killed / "scores").rglob("*.json"), *(killed / "fused").rglob("*.png")]}
    assert 8 <= sum(p.suffix == ".json" for p in done) < 34, "not killed half-way"  # 17 pairs x 2 methods
    assert not (killed / "scores.csv").exists()
    rerun = subprocess.run([*cmd, "--out", str(killed)], env=env, capture_output=True, text=True, check=True)
    pairs_done = int(rerun.stdout.split(" already done")[0].split(", ")[-1])
    assert pairs_done >= 3, rerun.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # nothing finished was redone
    assert not list(killed.rglob(".*.tmp"))
    whole = tmp_path / "whole"
    subprocess.run([*cmd, "--out", str(whole)], env=env, capture_output=True, check=True)
    for name in ("scores.csv", "published.csv", "differences.csv", "tables/A.md", "tables/A.tex", "tables/tables.md"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name


def test_spec_paths_resolve_under_the_data_root(two_sets, tmp_path):
    spec = write_spec(tmp_path / "e.yaml", two_sets, datasets=[{"name": "A", "path": "A"}], published=[])
    s = load_spec(spec, two_sets)
    assert s.datasets[0].ir == str((two_sets / "A" / "ir").resolve())
    with pytest.raises(RgbtError, match="not found"):
        load_spec(spec, tmp_path / "elsewhere_nothing")


@pytest.mark.parametrize("preset", sorted((ROOT / "experiments" / "tables").glob("*.yaml")), ids=lambda p: p.stem)
def test_presets_load_against_the_real_data(shared_data, preset):
    """Every preset loads; a paper table's published rows name its own datasets. The zoo table has no published
    rows: no paper scored these networks under one convention on these pairs."""
    spec = load_spec(preset, shared_data)
    assert spec.methods and all(Path(d.ir).is_dir() for d in spec.datasets)
    assert {r["dataset"] for r in spec.published} <= {d.name for d in spec.datasets}
    assert bool(spec.published) == (preset.stem != "zoo")


def test_tang2022_preset_reproduces_the_matlab_values(shared_data, tmp_path):
    """The tang2022 preset, scoring PIAFusion's released images only: every published mean is reproduced
    (differences.csv), all eleven metrics to 1e-6 relative."""
    raw = yaml.safe_load((ROOT / "experiments" / "tables" / "tang2022_tno.yaml").read_text())
    raw["methods"] = raw["methods"][:1]
    raw["wandb"] = {"mode": "disabled"}
    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump(raw))
    args = ["experiment", "run", str(spec), "--out", str(tmp_path / "out"), "--data", str(shared_data)]
    assert rgbt([*args, "--devices", "1"]) == 0
    diffs = list(csv.DictReader((tmp_path / "out" / "differences.csv").open()))
    assert len(diffs) == 11 and all(d["same_printed"] == "True" for d in diffs)
    for d in diffs:
        rel = abs(float(d["difference"])) / abs(float(d["published"]))
        assert rel <= 1e-6, d


def test_16_bit_thermal_needs_norm16_and_a_run_keeps_its_scaling(two_sets, tmp_path, capsys):
    """16-bit infrared: refused with one line naming --norm16 (nothing written), accepted with it (flag or
    file), and a rerun into the same folder with another scaling is refused."""
    for f in (two_sets / "A" / "ir").iterdir():
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(f), img.astype("uint16") * 257)
    spec = write_spec(tmp_path / "e.yaml", two_sets, published=[])
    out = tmp_path / "out"
    assert rgbt(["experiment", "run", str(spec), "--out", str(out), "--devices", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is 16-bit" in err and "--norm16" in err and "\n" not in err and not out.exists()
    args = ["experiment", "run", str(spec), "--out", str(out), "--devices", "1"]
    assert rgbt([*args, "--norm16", "fixed"]) == 0
    scores = list(csv.DictReader((out / "scores.csv").open()))
    assert len(scores) == (3 + 2) * 2 * 4 and all(math.isfinite(float(r["value"])) for r in scores)
    capsys.readouterr()
    assert rgbt([*args, "--norm16", "minmax"]) == 2
    assert "holds a run with norm16 fixed" in capsys.readouterr().err
    spec2 = write_spec(tmp_path / "e2.yaml", two_sets, published=[], norm16="percentile:1:99")
    assert rgbt(["experiment", "run", str(spec2), "--out", str(tmp_path / "o2"), "--devices", "1"]) == 0
    bad = write_spec(tmp_path / "e3.yaml", two_sets, published=[], norm16="sideways")
    assert rgbt(["experiment", "run", str(bad), "--out", str(tmp_path / "o3")]) == 2
    assert "norm16: unknown 16-bit normalisation 'sideways'" in capsys.readouterr().err


def test_default_cpu_processes_are_bounded_by_cpus_and_memory(monkeypatch):
    from fusion.experiment import run

    monkeypatch.setenv("RGBT_THREADS", "16")
    monkeypatch.setattr("fusion.train.memory.available_bytes", lambda: 9 << 30)
    assert run.default_devices("cpu") == 2  # 9 GB holds two 4 GB workers
    monkeypatch.setattr("fusion.train.memory.available_bytes", lambda: 1 << 30)
    assert run.default_devices("cpu") == 1
    monkeypatch.setattr("fusion.train.memory.available_bytes", lambda: 1 << 40)
    assert run.default_devices("cpu") == 16 and run.default_devices("gpu") == 1


def test_several_nodes_without_a_cluster_environment_fail_with_one_line(two_sets, tmp_path, capsys, monkeypatch):
    for v in ("MASTER_ADDR", "SLURM_JOB_ID", "LSB_JOBID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(v, raising=False)
    spec = write_spec(tmp_path / "e.yaml", two_sets)
    assert rgbt(["experiment", "run", str(spec), "--out", str(tmp_path / "o"), "--num-nodes", "2"]) == 2
    assert "MASTER_ADDR" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert rgbt(["experiment", "run", str(spec), "--out", str(tmp_path / "o"), "--devices", "0"]) == 2


def test_table_from_refuses_a_truncated_or_empty_scores_csv(two_sets, tmp_path, capsys):
    """The run records its CSVs' digests: a truncated, emptied or edited scores.csv is one line, not a table of
    what is left; a record without digests (an older run) is checked for holes in its grid."""
    spec = write_spec(tmp_path / "e.yaml", two_sets)
    out = tmp_path / "out"
    assert rgbt(["experiment", "run", str(spec), "--out", str(out), "--devices", "1"]) == 0
    scores = out / "scores.csv"
    whole = scores.read_bytes()
    for damaged in (whole[: len(whole) // 2], whole.split(b"\n", 1)[0] + b"\n", b""):
        scores.write_bytes(damaged)
        capsys.readouterr()
        assert rgbt(["experiment", "table", "--from", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "not the file the run wrote" in err and "\n" not in err
    record = json.loads((out / "experiment.json").read_text())
    del record["outputs"]
    (out / "experiment.json").write_text(json.dumps(record))
    lines = whole.decode().splitlines(keepends=True)
    scores.write_text("".join(lines[:-3]))  # the last image loses metrics
    assert rgbt(["experiment", "table", "--from", str(out)]) == 2
    assert "lacks scores" in capsys.readouterr().err
    scores.write_text(lines[0])
    assert rgbt(["experiment", "table", "--from", str(out)]) == 2
    assert "holds no scores" in capsys.readouterr().err
    scores.write_bytes(whole)
    assert rgbt(["experiment", "table", "--from", str(out)]) == 0


def test_one_method_twice_under_labels(two_sets, tmp_path):
    """label: puts a registered method in the table twice (here two weight files of DenseFuse), each row fused
    with its own weights; a label may not take another registered method's name."""
    import torch

    from fusion.models import DenseFuse, save_weights

    torch.manual_seed(0)
    w1 = save_weights(DenseFuse(), tmp_path / "w1.pt")
    grey = DenseFuse()
    last = [m for m in grey.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, 0.5)  # a flat mid-grey luminance: not what w1 gives
    w2 = save_weights(grey, tmp_path / "w2.pt")
    methods = [{"name": "densefuse", "ckpt": str(w1), "label": "densefuse_a"},
               {"name": "densefuse", "ckpt": str(w2), "label": "densefuse_b"}]  # fmt: skip
    spec = write_spec(tmp_path / "e.yaml", two_sets, methods=methods, published=[], figure={"samples": 0})
    s = load_spec(spec, two_sets)
    assert [(m.name, m.builds, m.ckpt) for m in s.methods] == [("densefuse_a", "densefuse", str(w1)),
                                                              ("densefuse_b", "densefuse", str(w2))]  # fmt: skip
    out = tmp_path / "out"
    assert rgbt(["experiment", "run", str(spec), "--out", str(out), "--devices", "1"]) == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert {r["method"] for r in rows} == {"densefuse_a", "densefuse_b"}
    a = cv2.imread(str(next((out / "fused" / "A" / "densefuse_a").glob("*.png"))))
    b = cv2.imread(str(next((out / "fused" / "A" / "densefuse_b").glob("*.png"))))
    assert a is not None and b is not None and (a != b).any()  # different weights, different images
    bad = write_spec(tmp_path / "bad.yaml", two_sets, methods=[{"name": "densefuse", "ckpt": str(w1), "label": "max"}])
    with pytest.raises(RgbtError, match="another registered method"):
        load_spec(bad, two_sets)
