"""The experiment file's schema (pydantic): types, ranges and keys, checked before anything is resolved or run.

:func:`validate` turns the parsed YAML into plain dicts whose every value has the declared type, or raises one
:class:`~fusion.errors.RgbtError` line naming the file, the key and the fix. What needs the file system or the
registries (paths, method and metric names) is checked afterwards by :mod:`fusion.experiment.spec`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from fusion.errors import RgbtError, short
from fusion.safeyaml import validation_line

MAX_DECIMALS = 12  # float64 carries 15-17 significant digits
MAX_SAMPLES = 64  # figure rows


class _Strict(BaseModel):
    # strict: no silent coercion (decimals: true is not 1, "3" is not 3); unknown keys are refused
    model_config = ConfigDict(extra="forbid", strict=True)


def _named(v: Any) -> Any:
    """A bare name stands for ``{name: NAME}`` (a metric, a method)."""
    return {"name": v} if isinstance(v, str) else v


def _dataset(v: Any) -> Any:
    return {"name": v, "path": v} if isinstance(v, str) else v


Name = Annotated[str, Field(min_length=1, max_length=200)]
Decimals = Annotated[int, Field(ge=0, le=MAX_DECIMALS)]


class MetricEntry(_Strict):
    name: Name
    decimals: Decimals | None = None


class DatasetEntry(_Strict):
    name: Name
    path: Name | None = None
    ir: Name | None = None
    vi: Name | None = None

    @model_validator(mode="after")
    def _where(self) -> DatasetEntry:
        if self.path is None and (self.ir is None or self.vi is None):
            raise ValueError(f"dataset {self.name} needs path: or both ir: and vi:")
        return self


class MethodEntry(_Strict):
    name: Name | None = None
    label: Name | None = None  # the method's name in the tables when one method appears twice (other weights)
    ckpt: Name | None = None
    official: bool = False
    fused: Name | dict[Name, Name] | None = None
    # a network of your own: its class (module.Class, importable), fused from ckpt: (its rgbt fit checkpoint)
    class_path: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$", max_length=200)] | None = None

    @model_validator(mode="after")
    def _what(self) -> MethodEntry:
        if self.name is None and self.fused is None:
            raise ValueError("a method needs name: (a registered method) or fused: (a folder of its images)")
        if self.class_path and (self.name is None or self.ckpt is None or self.fused or self.official):
            raise ValueError("a class_path: method needs name: and ckpt: (its checkpoint), without fused: or official:")
        return self


class PublishedCsv(_Strict):
    csv: Name
    dataset: Name | None = None
    rename: dict[Name, Name] = Field(default_factory=dict)
    methods: list[Name] | None = None


class PublishedRow(BaseModel):
    """``{dataset, method, [source], METRIC: value, ...}``: every other key is a metric with a finite number."""

    model_config = ConfigDict(extra="allow", strict=True)
    dataset: Name
    method: Name
    source: Name = "inline"

    @model_validator(mode="after")
    def _values(self) -> PublishedRow:
        for k, v in (self.model_extra or {}).items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"published {k} of {self.method} on {self.dataset} must be a finite number, got {v!r}")
        return self


def _published(v: Any) -> Any:
    if isinstance(v, dict):
        return PublishedCsv.model_validate(v) if "csv" in v else PublishedRow.model_validate(v)
    return v


class Table(_Strict):
    std: bool = False
    rank: bool = True
    formats: list[Literal["markdown", "latex"]] = Field(default=["markdown", "latex"], min_length=1)


class Figure(_Strict):
    samples: Annotated[int, Field(ge=0, le=MAX_SAMPLES)] | Annotated[list[Name], Field(max_length=MAX_SAMPLES)] = 2


class Wandb(_Strict):
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: Name = "rgbt-fusion"


class ExperimentFile(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^/\\]+$")] | None = None
    convention: Name = "standard"
    metrics: list[Annotated[MetricEntry, BeforeValidator(_named)]] | None = None
    decimals: Decimals = 4
    datasets: list[Annotated[DatasetEntry, BeforeValidator(_dataset)]] = Field(min_length=1, max_length=100)
    methods: list[Annotated[MethodEntry, BeforeValidator(_named)]] = Field(min_length=1, max_length=200)
    published: list[Annotated[PublishedCsv | PublishedRow, BeforeValidator(_published)]] | None = None
    table: Table | None = None
    figure: Figure | None = None
    wandb: Wandb | None = None
    norm16: Name | None = None


def validate(raw: Any, path: Path) -> dict:
    """The experiment file ``raw`` (parsed YAML) checked against :class:`ExperimentFile`.

    Returns:
        The keys the file sets, with their validated values as plain dicts and lists.

    Raises:
        RgbtError: the first problem, in one line naming the file and the key.
    """
    if not isinstance(raw, dict):
        raise RgbtError(f"{short(path)}: an experiment file is a mapping (name:, datasets:, methods:, ...)")
    try:
        model = ExperimentFile.model_validate(raw)
    except ValidationError as e:
        raise RgbtError(validation_line(path, e, "see experiments/tables/ for examples")) from None
    return model.model_dump(exclude_unset=True)
