"""The one CSV reader (fusion.csvfile): required columns, types, finite numbers, complete rows."""

from __future__ import annotations

import math

import pytest

from fusion.csvfile import CsvRow, Finite, Text, read_rows
from fusion.errors import RgbtError


class _Row(CsvRow):
    name: Text
    value: Finite
    note: str = ""


class _Score(CsvRow):
    name: Text
    value: float  # NaN allowed: an undefined metric


def _csv(tmp_path, text: str):
    f = tmp_path / "t.csv"
    f.write_text(text)
    return f


def test_reads_typed_rows_and_ignores_extra_columns(tmp_path):
    rows = read_rows(_csv(tmp_path, "name,value,extra\na,1.5,x\nb,-2e3,y\n"), _Row, "fix it")
    assert [(r.name, r.value, r.note) for r in rows] == [("a", 1.5, ""), ("b", -2000.0, "")]
    assert read_rows(_csv(tmp_path, "name,value\n"), _Row, "fix it") == []  # a header alone: no rows


def test_nan_only_where_the_row_allows_it(tmp_path):
    assert math.isnan(read_rows(_csv(tmp_path, "name,value\na,nan\n"), _Score, "fix")[0].value)
    with pytest.raises(RgbtError, match=r"line 2, column value"):
        read_rows(_csv(tmp_path, "name,value\na,nan\n"), _Row, "fix")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name\na\n", "no value column"),
        ("name,value\na,1\nb\n", "line 3: 1 cells where the header has 2"),
        ("name,value\na,1,2\n", "line 2"),
        ("name,value\n,1\n", "line 2, column name"),
        ("name,value\na,x\n", "line 2, column value"),
        ("name,value\na,inf\n", "column value"),
    ],
)
def test_refusals_name_the_file_line_and_column(tmp_path, text, match):
    with pytest.raises(RgbtError, match=match) as e:
        read_rows(_csv(tmp_path, text), _Row, "write it again")
    assert "t.csv" in str(e.value) and str(e.value).endswith("write it again") and "\n" not in str(e.value)


def test_missing_folder_and_binary_files(tmp_path):
    with pytest.raises(RgbtError, match="no such file"):
        read_rows(tmp_path / "none.csv", _Row, "fix")
    with pytest.raises(RgbtError, match="is a folder"):
        read_rows(tmp_path, _Row, "fix")
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00" * 40)
    with pytest.raises(RgbtError, match="not a readable CSV|no name"):
        read_rows(tmp_path / "b.csv", _Row, "fix")
