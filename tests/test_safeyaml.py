"""The YAML reader of user files: duplicate keys, alias bombs and deep nesting are one line, before any work."""

from __future__ import annotations

import resource
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion.cli import main as rgbt
from fusion.errors import RgbtError
from fusion.safeyaml import MAX_DEPTH, MAX_NODES, load_yaml


def bomb(levels: int = 9, width: int = 9) -> str:
    """The 'billion laughs' of YAML: about 1 KB that expands to width**levels values."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_a_plain_file_loads_as_safe_load_would(tmp_path):
    text = "name: x\nlist: [1, 2.5, {a: b}]\nshared: &s {k: 1}\nagain: *s\n"
    (tmp_path / "f.yaml").write_text(text)
    assert load_yaml(tmp_path / "f.yaml") == yaml.safe_load(text)
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("name: a\nmetrics: [EN]\nname: b\n", "duplicate key 'name'"),
        ("table:\n  std: true\n  std: false\n", "duplicate key 'std'"),
        (bomb(), f"expand to more than {MAX_NODES:,} values"),
        ("a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n", f"nested deeper than {MAX_DEPTH}"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
        ("a: &x [1, *x]\n", "contains itself"),
        ("a: [1, 2\n", "not valid YAML"),
        ("a: !!python/object:os.system {}\n", "not valid YAML"),
    ],
    ids=["dup-top", "dup-nested", "alias-bomb", "deep", "very-deep", "recursive", "broken", "python-tag"],
)
def test_refused_in_one_line_quickly_and_small(tmp_path, text, says):
    f = tmp_path / "f.yaml"
    f.write_text(text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    with pytest.raises(RgbtError, match=says) as e:
        load_yaml(f)
    assert time.perf_counter() - t < 10 and "\n" not in str(e.value) and "f.yaml" in str(e.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: under 100 MB more


def test_too_large_and_missing_files(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (2 << 20) + "\n")
    with pytest.raises(RgbtError, match="too large for a registration"):
        load_yaml(big, "registration")
    with pytest.raises(RgbtError, match="no such experiment file"):
        load_yaml(tmp_path / "nope.yaml", "experiment file")
    with pytest.raises(RgbtError, match="is a folder"):
        load_yaml(tmp_path, "experiment file")


@pytest.mark.parametrize(
    "command",
    [
        lambda f, d: ["experiment", "run", str(f), "--out", str(d / "out"), "--devices", "1"],
        lambda f, d: ["demo", "--config", str(f), "--out", str(d / "out")],
        lambda f, d: [
            "register",
            "apply",
            "--reg",
            str(f),
            "--ir",
            str(d / "i"),
            "--vis",
            str(d / "v"),
            "--out",
            str(d / "o"),
        ],
    ],
    ids=["experiment", "demo", "register"],
)
def test_every_command_reading_yaml_refuses_a_bomb(tmp_path, capsys, command):
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb())
    assert rgbt(command(f, tmp_path)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "expand to more than" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.yaml"]


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=True), st.text(max_size=8))
_values = st.recursive(
    _scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12
)
_keys = st.sampled_from(
    ["name", "convention", "metrics", "decimals", "datasets", "methods", "published", "table", "figure", "wandb",
     "norm16", "other"]
)  # fmt: skip


def _loads_or_one_line(tmp_path, texts, load) -> list:
    """What ``load`` makes of each text written to a file; every refusal must be one RgbtError line."""
    loaded = []
    for i, text in enumerate(texts):
        f = tmp_path / f"f{i}.yaml"
        f.write_text(text)
        try:
            loaded.append(load(f))
        except RgbtError as e:
            assert "\n" not in str(e)
    return loaded


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(_keys, _values, max_size=8), raw=st.text(max_size=60))
def test_fuzz_experiment_file_reader_only_refuses_in_one_line(tmp_path, doc, raw):
    """Any document (or any text) given as an experiment file either loads or is one RgbtError line."""
    from fusion.experiment.spec import load_spec

    _loads_or_one_line(tmp_path, (yaml.safe_dump(doc), raw), lambda f: load_spec(f, tmp_path))


_reg_keys = st.sampled_from(
    ["direction", "model", "source_size", "target_size", "H", "info", "matlab", "convention", "extra"]
)
_numbers = st.one_of(st.integers(-3, 70000), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none())
_reg_values = st.one_of(
    _numbers,
    st.text(max_size=12),
    st.lists(_numbers, max_size=4),
    st.lists(st.lists(_numbers, min_size=3, max_size=3), min_size=3, max_size=3),
    st.sampled_from(["ir -> rgb", "affine", "homography", "rgb->ir"]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(_reg_keys, _reg_values, max_size=9), raw=st.text(max_size=60), as_json=st.booleans())
def test_fuzz_registration_file_reader_only_refuses_in_one_line(tmp_path, doc, raw, as_json):
    """Any document (or text) given as a registration file loads into a usable registration or is one line."""
    import json

    import numpy as np

    from calibration.registration import Registration

    for i, text in enumerate((json.dumps(doc) if as_json else yaml.safe_dump(doc), raw)):
        f = tmp_path / f"r{i}.{'json' if as_json else 'yaml'}"
        f.write_text(text)
        try:
            reg = Registration.load(f)
        except RgbtError as e:
            assert "\n" not in str(e)
        else:  # what loads maps the source frame to finite, distinct points
            w, h = reg.source_size
            q = reg.map_points(np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float))
            assert np.isfinite(q).all()


_demo_keys = st.sampled_from(
    ["datasets", "methods", "metrics", "convention", "figure_samples", "figure_height", "figure_bits", "limit",
     "skip_missing", "other"]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(_demo_keys, _values, max_size=8), raw=st.text(max_size=60))
def test_fuzz_demo_settings_reader_only_refuses_in_one_line(tmp_path, doc, raw):
    """Any document (or text) given as demo settings loads into valid settings or is one RgbtError line."""
    from fusion.demo import DemoConfig

    for cfg in _loads_or_one_line(tmp_path, (yaml.safe_dump(doc), raw), DemoConfig.from_yaml):
        assert cfg.methods and cfg.datasets and 4 <= cfg.figure_bits <= 8 and (cfg.limit is None or cfg.limit > 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=st.lists(st.lists(st.text(max_size=6), max_size=6), max_size=6), header=st.booleans())
def test_fuzz_points_csv_reader_only_refuses_in_one_line(tmp_path, cells, header):
    """Any CSV given as --points gives finite N x 2 point lists or one RgbtError line."""
    import csv
    import io

    import numpy as np

    from calibration.register import read_points

    buf = io.StringIO()
    w = csv.writer(buf)
    if header:
        w.writerow(["source_x", "source_y", "target_x", "target_y"])
    w.writerows(cells)
    f = tmp_path / "p.csv"
    f.write_text(buf.getvalue())
    try:
        src, dst = read_points(f)
    except RgbtError as e:
        assert "\n" not in str(e)
    else:
        assert src.shape == dst.shape and src.shape[1:] == (2,) and np.isfinite(src).all() and np.isfinite(dst).all()
