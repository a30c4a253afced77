"""Reading the CSV files users hand us (control points, published values, score files) against a declared schema.

Each kind of file declares its row as a pydantic model: the model's fields are its columns (a field without a
default is a required column), their types and ranges. :func:`read_rows` checks the header, then every row, and
refuses the first problem in one line naming the file, the line, the column and the fix, before any work.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fusion.errors import RgbtError, short

MAX_BYTES = 256 << 20  # a score file of 100 methods x 1,000 images x 30 metrics is about 10 MB

Finite = Annotated[float, Field(allow_inf_nan=False)]  # a coordinate, a published value
Text = Annotated[str, Field(min_length=1)]  # a name that must be there (empty cells are refused)

R = TypeVar("R", bound=BaseModel)


class CsvRow(BaseModel):
    """Base of the row models: extra columns are allowed (and ignored); strings are read as the field's type."""

    model_config = ConfigDict(extra="ignore")


def read_rows(path: str | Path, row: type[R], fix: str) -> list[R]:
    """The rows of the CSV file ``path``, each checked against ``row``.

    Args:
        row: a :class:`CsvRow` subclass; its fields without a default are the required columns.
        fix: what the user should do, ending each refusal (e.g. "write it as rgbt evaluate --csv does").

    Raises:
        RgbtError: the file is missing, too large, not a readable CSV, lacks a required column, or a row is
            short or holds a value of the wrong type or range.
    """
    path = Path(path)
    required = [name for name, f in row.model_fields.items() if f.is_required()]
    try:
        if path.stat().st_size > MAX_BYTES:
            raise RgbtError(f"{short(path)}: {path.stat().st_size / 2**20:.0f} MB is not a CSV this reads; {fix}")
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise RgbtError(
                    f"{short(path)}: no {', '.join(missing)} column (it needs {', '.join(required)}); {fix}"
                )
            out = []
            for line, r in enumerate(reader, start=2):
                if None in r or any(v is None for v in r.values()):  # a row with more or fewer cells
                    cells = sum(v is not None for k, v in r.items() if k is not None) + len(r.get(None, []))
                    raise RgbtError(
                        f"{short(path)}, line {line}: {cells} cells where the header has {len(reader.fieldnames)}; "
                        f"{fix}"
                    )
                try:
                    out.append(row.model_validate({k: v for k, v in r.items() if v != "" or k in required}))
                except ValidationError as e:
                    err = e.errors(include_url=False)[0]
                    col = ".".join(str(x) for x in err["loc"]) or "a column"
                    raise RgbtError(
                        f"{short(path)}, line {line}, column {col}: {err['msg'].removeprefix('Value error, ')} "
                        f"(got {str(r.get(col, ''))[:40]!r}); {fix}"
                    ) from None
    except FileNotFoundError:
        raise RgbtError(f"{short(path)}: no such file; {fix}") from None
    except IsADirectoryError:
        raise RgbtError(f"{short(path)} is a folder, not a CSV file; {fix}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RgbtError(f"{short(path)}: not a readable CSV ({type(e).__name__}); {fix}") from None
    return out
