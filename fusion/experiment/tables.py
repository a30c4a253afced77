"""Render an experiment's scores as paper tables: markdown and LaTeX (booktabs), one per dataset.

Each table has one row per method (mean, optionally ± std over the pairs), the best value of each metric in bold
and the second underlined (by the metric's direction, compared at the printed precision), and an average-rank
column. Published values sit beside ours: a method we also ran gets a "(published)" row right below ours with
the difference ours − published; a method only published is ranked with ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fusion.experiment.spec import Spec
from fusion.experiment.work import slug
from fusion.metrics import higher_is_better


@dataclass
class Entry:
    """One table row."""

    method: str
    published: bool
    mean: dict[str, float]
    std: dict[str, float] = field(default_factory=dict)
    n: int = 0
    diff: dict[str, float] = field(default_factory=dict)  # ours - published, on a published row
    ranked: bool = True  # counts for bold/underline and ranks
    rank: float | None = None


def entries(spec: Spec, dataset: str, rows: list[tuple], published: list[dict]) -> list[Entry]:
    """The rows of one dataset's table, from CSV rows ``(dataset, image, method, metric, value, convention)``
    and published values ``{dataset, method, metric, value}``."""
    acc: dict[str, dict[str, list[float]]] = {}
    for ds, _, method, metric, value, _ in rows:
        if ds == dataset:
            acc.setdefault(method, {}).setdefault(metric, []).append(float(value))
    ours: list[Entry] = []
    for method, by_metric in acc.items():
        e = Entry(method, False, {}, n=max(len(v) for v in by_metric.values()))
        for k, v in by_metric.items():
            e.mean[k] = math.fsum(v) / len(v)
            e.std[k] = math.sqrt(math.fsum((x - e.mean[k]) ** 2 for x in v) / len(v))
        ours.append(e)
    pub: dict[str, dict[str, float]] = {}
    for r in published:
        if r["dataset"] == dataset and r["metric"] in spec.metrics:
            pub.setdefault(r["method"], {})[r["metric"]] = r["value"]
    out: list[Entry] = []
    for e in ours:
        out.append(e)
        if e.method in pub:  # beside ours, not ranked twice
            p = pub[e.method]
            diff = {k: e.mean[k] - v for k, v in p.items() if k in e.mean}
            out.append(Entry(e.method, True, p, diff=diff, ranked=False))
    out += [Entry(m, True, p) for m, p in pub.items() if m not in acc]
    _rank(spec, out)
    return out


def _shown(spec: Spec, metric: str, value: float) -> float:
    return round(value, spec.decimals[metric])


def _rank(spec: Spec, rows: list[Entry]) -> None:
    """Average rank over the metrics each ranked row has (1 = best; ties share the better rank)."""
    ranks: dict[int, list[int]] = {}
    for k in spec.metrics:
        sign = 1 if higher_is_better(k, spec.convention) else -1
        vals = [(i, sign * _shown(spec, k, e.mean[k])) for i, e in enumerate(rows) if e.ranked and k in e.mean]
        for i, v in vals:
            ranks.setdefault(i, []).append(1 + sum(w > v for _, w in vals))
    for i, r in ranks.items():
        rows[i].rank = sum(r) / len(r)


def _places(spec: Spec, rows: list[Entry], metric: str) -> tuple[float | None, float | None]:
    """The best and second-best printed values of ``metric`` among ranked rows."""
    vals = sorted(
        {_shown(spec, metric, e.mean[metric]) for e in rows if e.ranked and metric in e.mean},
        reverse=higher_is_better(metric, spec.convention),
    )
    return (vals[0] if vals else None), (vals[1] if len(vals) > 1 else None)


def _cells(spec: Spec, rows: list[Entry], latex: bool) -> list[list[str]]:
    places = {k: _places(spec, rows, k) for k in spec.metrics}
    multi = sum(e.ranked for e in rows) > 1
    pm = " $\\pm$ " if latex else " ± "
    out = []
    for e in rows:
        cells = []
        for k in spec.metrics:
            if k not in e.mean:
                cells.append("--" if latex else "–")
                continue
            d = spec.decimals[k]
            s = f"{e.mean[k]:.{d}f}"
            if spec.std and k in e.std:
                s += f"{pm}{e.std[k]:.{d}f}"
            best, second = places[k]
            if e.ranked and multi and _shown(spec, k, e.mean[k]) == best:
                s = f"\\textbf{{{s}}}" if latex else f"**{s}**"
            elif e.ranked and multi and _shown(spec, k, e.mean[k]) == second:
                s = f"\\underline{{{s}}}" if latex else f"<u>{s}</u>"
            if k in e.diff:
                delta = f"{e.diff[k]:+.{d}f}".replace("-", "+") if round(e.diff[k], d) == 0 else f"{e.diff[k]:+.{d}f}"
                s += f" {{\\scriptsize({delta})}}" if latex else f" (Δ {delta})"
            cells.append(s)
        if spec.rank:
            cells.append("" if e.rank is None else f"{e.rank:.2f}")
        out.append(cells)
    return out


def _ours(spec: Spec) -> set[str]:
    """Methods fused with our own weights (short CPU runs) rather than the authors'."""
    return {m.name for m in spec.methods if getattr(m, "weights", "") == "ours"}


def _label(e: Entry, latex: bool, ours: set[str] = frozenset()) -> str:
    name = latex_escape(e.method) if latex else e.method
    if not e.published:
        star = ("$^*$" if latex else "*") if e.method in ours else ""
        return f"{name}{star} ({e.n})" if not latex else name + star
    return f"{name}$^\\dagger$" if latex else f"{name} (published)"


def markdown(spec: Spec, dataset: str, rows: list[Entry]) -> str:
    """One dataset's table in markdown."""
    arrows = ["↑" if higher_is_better(k, spec.convention) else "↓" for k in spec.metrics]
    head = [k + a for k, a in zip(spec.metrics, arrows, strict=True)] + (["avg rank↓"] if spec.rank else [])
    lines = [
        f"### {dataset}",
        "",
        f"| method (pairs) | {' | '.join(head)} |",
        "|---|" + "---:|" * len(head),
    ]
    ours = _ours(spec)
    for e, cells in zip(rows, _cells(spec, rows, False), strict=True):
        lines.append(f"| {_label(e, False, ours)} | {' | '.join(cells)} |")
    notes = [f"convention: {spec.convention}", "mean ± std over the pairs" if spec.std else "mean over the pairs"]
    if any(e.published for e in rows):
        notes.append("(published): the paper's values; Δ = ours − published")
    if ours & {e.method for e in rows}:
        notes.append("*: our weights (short CPU runs, weights/README.md), not the authors'")
    notes.append("bold: best, underlined: second")
    return "\n".join(lines) + "\n\n" + "; ".join(notes) + ".\n"


def latex_escape(s: str) -> str:
    """Escape the characters LaTeX treats specially in text."""
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{"}
    table |= {"}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(table.get(c, c) for c in s)


def latex(spec: Spec, dataset: str, rows: list[Entry]) -> str:
    """One dataset's table as a LaTeX ``table`` with booktabs rules (needs ``\\usepackage{booktabs}``)."""
    arrows = ["$\\uparrow$" if higher_is_better(k, spec.convention) else "$\\downarrow$" for k in spec.metrics]
    head = [latex_escape(k) + a for k, a in zip(spec.metrics, arrows, strict=True)]
    head += ["Avg.\\ rank$\\downarrow$"] if spec.rank else []
    n = max((e.n for e in rows if not e.published), default=0)
    stat = "mean $\\pm$ std" if spec.std else "mean"
    caption = (
        f"{latex_escape(dataset)}: {stat} over {n} pairs "
        f"({latex_escape(spec.convention)} convention). Best in bold, second underlined."
    )
    if any(e.published for e in rows):
        caption += " $^\\dagger$: published values; in brackets, ours $-$ published."
    ours = _ours(spec)
    if ours & {e.method for e in rows}:
        caption += " $^*$: our weights (short CPU runs), not the authors'."
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{caption}}}",
        f"\\label{{tab:{_label_key(spec.name)}-{_label_key(dataset)}}}",
        f"\\begin{{tabular}}{{l{'c' * len(head)}}}",
        "\\toprule",
        "Method & " + " & ".join(head) + " \\\\",
        "\\midrule",
    ]
    for e, cells in zip(rows, _cells(spec, rows, True), strict=True):
        lines.append(_label(e, True, ours) + " & " + " & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _label_key(s: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in s).strip("-").lower()


def render(spec: Spec, rows: list[tuple], published: list[dict]) -> dict[str, str]:
    """Every table file's text: ``{relative path: text}`` (``<dataset>.md``, ``<dataset>.tex`` and
    ``tables.md`` with every dataset)."""

    files, md = {}, []
    for ds in spec.datasets:
        rs = entries(spec, ds.name, rows, published)
        if not rs:
            continue
        text = markdown(spec, ds.name, rs)
        md.append(text)
        if "markdown" in spec.formats:
            files[f"{slug(ds.name)}.md"] = text
        if "latex" in spec.formats:
            files[f"{slug(ds.name)}.tex"] = latex(spec, ds.name, rs)
    files["tables.md"] = f"## {spec.name}\n\n" + "\n".join(md)
    return files


def differences(spec: Spec, rows: list[tuple], published: list[dict]) -> list[dict]:
    """Every cell with both our and a published value: whether they agree at the printed precision."""
    out = []
    for ds in spec.datasets:
        rs = entries(spec, ds.name, rows, published)
        ours = {e.method: e for e in rs if not e.published}
        for e in rs:
            for k, d in e.diff.items():
                mine, theirs = ours[e.method].mean[k], e.mean[k]
                out.append(
                    {
                        "dataset": ds.name,
                        "method": e.method,
                        "metric": k,
                        "ours": mine,
                        "published": theirs,
                        "difference": d,
                        "same_printed": f"{mine:.{spec.decimals[k]}f}" == f"{theirs:.{spec.decimals[k]}f}",
                    }
                )
    return out
