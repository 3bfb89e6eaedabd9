"""``results.json`` and ``<table>.md``: the paper's numbers beside ours.

``results.json`` (machine-readable, one entry per table, merged across invocations)::

    {"format": "mistnet-reproduce", "version": 1, "budget": "cpu",
     "tables": {"table1": {"title", "command", "budget", "seeds", "device", "wall_s",
                           "written", "figures": [...],
                           "rows": [{"key", "label", "status", "paper": {metric: value},
                                     "ours": {metric: {"mean", "std", "n", "values"}},
                                     "runs", "steps", "device", "wall_s", "commands"}]}}}

``status`` is ``run``, ``paper only`` (an external baseline we do not run) or ``not run: ...``.
Values are fractions (not percent) and RMSE as computed; ``std`` is the sample standard
deviation over seeds (``null`` for one seed). ``ours`` also holds ``n``, the number of seeds
with a finite value: mean and std are over those only (a diverged seed gives NaN), and the
markdown then says "(n=2 of 3)".
"""

from __future__ import annotations

import glob
import math
import os
import time
from pathlib import Path
from typing import Any

from mistnet.errors import ArgumentError, DataError, MistError
from mistnet.io import atomic_write_json, atomic_write_text
from mistnet.ownership import refuse_links, require_own_file
from mistnet.reproduce.paper import PAPER
from mistnet.reproduce.plan import Budget, PaperOnly, Table
from mistnet.shellwords import shell_word
from mistnet.textfile import read_json
from mistnet.validate import path_argument
from mistnet.viz.canvas import made_by_mistnet

FORMAT = "mistnet-reproduce"

METRIC_NAMES = {
    "rmse": "RMSE",
    "impulses_found": "impulses found (≤ 3 px)",
    "impulses_found_image_maxima": "reference: found by the image's own top-K maxima",
    "det_iou50": "IoU 50%",
    "classif": "Classif.",
    "both": "Both",
    "ap50": "AP IoU=.50",
    "ap00": "AP IoU=.00",
    "ap60": "AP IoU=.60",
    "ap70": "AP IoU=.70",
    "ap80": "AP IoU=.80",
    "ap90": "AP IoU=.90",
}


def _stats(values: list[float | None]) -> dict[str, Any]:
    """Mean and sample std (n - 1) over the finite ``values``, and how many they were.

    A seed whose metric is missing or not finite (a diverged run) is left out of the mean (and
    is ``null`` in ``values``), and ``n`` (finite seeds) says so: the table shows "(n=2 of 3)"
    whenever ``n < len(values)``.
    """
    values = [v if v is not None and math.isfinite(v) else None for v in values]  # JSON null
    finite = [v for v in values if v is not None]
    n = len(finite)
    if not finite:
        return {"mean": None, "std": None, "n": 0, "values": values}
    mean = sum(finite) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n, "values": values}


def table_rows(
    table: Table, records: dict[tuple[str, int], dict], seeds: list[int], not_run: str | None
) -> list[dict[str, Any]]:
    """One results entry per (row, evaluation), in the table's order.

    Args:
        records: ``eval.json`` records by ``(row key, seed)``.
        not_run: the reason the table's runs were skipped (e.g. no SVHN), or ``None``.
    """
    paper = PAPER.get(table.name, {})
    out: list[dict[str, Any]] = []
    for row in table.rows:
        base = {"key": row.key, "label": row.label, "paper": paper.get(row.key, {}), "ours": {}}
        if isinstance(row, PaperOnly):
            out.append({**base, "status": "paper only"})
            continue
        if not_run is not None:
            out.append({**base, "status": f"not run: {not_run}"})
            continue
        recs = [records[(row.key, s)] for s in seeds]
        for ev in row.all_evals():
            chosen = [r if ev.name == "test" else r["evals"][ev.name] for r in recs]
            values = [{**c["metrics"], **c.get("extra", {})} for c in chosen]
            entry = {
                **base,
                "key": row.key if ev.name == "test" else f"{row.key}/{ev.name}",
                "label": row.label if ev.name == "test" else ev.label,
                "paper": base["paper"] if ev.name == "test" else {},
                "status": "run",
                "ours": {m: _stats([v.get(m) for v in values]) for m in table.metrics},
                "all_metrics": values,
                "data": chosen[0]["data"],
                "runs": [r["run"] for r in recs],
                "steps": [r["train"]["steps"] for r in recs],
                "best_steps": [r["train"].get("best_step") for r in recs],
                "device": sorted({r["device"] for r in recs}),
                "wall_s": round(sum(r["wall_s"]["total"] for r in recs), 1),
                "commands": {f"seed{s}": r["commands"] for s, r in zip(seeds, recs, strict=True)},
            }
            if "official_roundtrip_identical" in recs[0]:
                entry["official_roundtrip_identical"] = all(
                    r["official_roundtrip_identical"] for r in recs
                )
            out.append(entry)
    return out


def table_entry(
    table: Table,
    rows: list[dict[str, Any]],
    *,
    budget: Budget,
    seeds: list[int],
    device: str,
    command: str,
    wall_s: float,
    figures: list[tuple[str, str]],
    digits: dict[str, Any],
) -> dict[str, Any]:
    return {
        "title": table.title,
        "source": table.source,
        "command": command,
        "budget": budget.name,
        "budget_description": budget.description,
        "minutes_per_run": budget.run_minutes(table.name),
        "minutes_per_row": {
            r.key: budget.run_minutes(table.name) * r.time_share for r in table.runs()
        },
        "seeds": seeds,
        "device": device,
        "digits": digits,
        "wall_s": round(wall_s, 1),
        "written": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "figures": [{"path": p, "caption": c} for p, c in figures],
        "metrics": list(table.metrics),
        "rows": rows,
        "notes": list(table.notes),
    }


def read_results(out: str | os.PathLike) -> dict[str, Any] | None:
    """``out/results.json`` checked for what a rerun merges into it; ``None`` if there is none.

    Raises:
        TypeError: ``out`` is no path.
        ArgumentError: ``out`` is empty.
        DataError: (one line) not strict JSON or not a results document, naming the file and
            how to rebuild it.
    """
    if not path_argument(out, "out"):
        raise ArgumentError("out '' is an empty path; give the reproduction's directory")
    path = Path(out) / "results.json"
    if not path.is_file():
        return None
    again = "delete it and run each table again to rebuild it (finished runs are skipped)"
    try:
        doc = read_json(path)
    except DataError as exc:
        raise DataError(f"{exc}; {again}") from None
    tables = doc.get("tables") if isinstance(doc, dict) else None
    if not (
        isinstance(doc, dict)
        and doc.get("format") == FORMAT
        and isinstance(tables, dict)
        and all(isinstance(t, dict) for t in tables.values())
        and all(_figures_ok(t.get("figures", [])) for t in tables.values())
    ):
        raise DataError(f"{path}: not a results.json of mist reproduce; {again}")
    return doc


def _figures_ok(figures: Any) -> bool:
    return isinstance(figures, list) and all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("caption"), str)
        for f in figures
    )


def previous_figures(out: Path, name: str) -> list[tuple[str, str]]:
    """The figures an earlier invocation listed for table ``name`` that still exist: its own
    PNGs under ``out/figures/`` (an entry edited to ``/etc/passwd`` or ``../x`` was listed)."""
    old = (read_results(out) or {"tables": {}})["tables"].get(name, {}).get("figures", [])
    return [(f["path"], f["caption"]) for f in old if _own_figure(out, f.get("path"))]


def _own_figure(out: Path, path: object) -> bool:
    """Whether ``path`` (from ``results.json``) names a file of ``out/figures/`` itself."""
    if not isinstance(path, str) or os.path.isabs(path) or ".." in Path(path).parts:
        return False
    file = out / path
    return Path(path).parts[:1] == ("figures",) and file.is_file() and not file.is_symlink()


def update_results(out: Path, budget: Budget, name: str, entry: dict[str, Any]) -> dict:
    """Merge one table's entry into ``out/results.json`` and return the whole document."""
    doc: dict[str, Any] = {"format": FORMAT, "version": 1, "budget": budget.name, "tables": {}}
    old = read_results(out)
    if old is not None:
        doc["tables"] = old["tables"]
    doc["tables"][name] = entry
    atomic_write_json(out / "results.json", doc)
    return doc


# -- markdown ---------------------------------------------------------------------------------


def _fmt(metric: str, value: float | None, paper: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if metric == "rmse":
        return f"{value:.3f}" if paper else f"{value:.4f}"
    return f"{100 * value:.1f}%"


def _fmt_stats(metric: str, stats: dict[str, Any]) -> str:
    mean, std = stats.get("mean"), stats.get("std")
    total = len(stats.get("values", []))
    n = stats.get("n", total)
    dropped = f" (n={n} of {total})" if n < total else ""
    if mean is None:
        return "–" + dropped
    if std is None:
        return _fmt(metric, mean) + dropped
    if metric == "rmse":
        return f"{mean:.4f} ± {std:.4f}" + dropped
    return f"{100 * mean:.1f} ± {100 * std:.1f}%" + dropped


def _fmt_wall(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _digits_line(digits: dict[str, Any] | None) -> list[str]:
    """The digits line of a table (none for an entry written before digits were recorded)."""
    if digits is None:
        return []
    sizes = " / ".join(f"{digits[s]:,}" for s in ("train", "val", "test"))
    return [f"- **digits**: {digits['source']} ({sizes} train / val / test digits)"]


def _row_lines(row: dict[str, Any], metrics: list[str]) -> list[str]:
    """The table lines of one row of a table entry: one per metric, the run's facts on the
    first."""
    lines, first = [], True
    for metric in metrics:
        paper = row["paper"].get(metric)
        if row["status"] == "paper only":
            ours = "from the paper (not run)"
        elif row["status"] != "run":
            ours = row["status"]
        else:
            ours = _fmt_stats(metric, row["ours"][metric])
        if paper is None and row["status"] != "run":
            continue  # a metric the paper lacks for a row we did not run
        cells = [
            row["label"] if first else "",
            METRIC_NAMES.get(metric, metric),
            _fmt(metric, paper, paper=True) if paper is not None else "–",
            ours,
        ]
        if first and row["status"] == "run" and "/" in row["key"]:
            cells += ["", "same run as above", "", ""]  # another test set of that run
        elif first and row["status"] == "run":
            steps = sorted(set(row["steps"]))
            cells += [
                str(len(row["runs"])),
                "/".join(map(str, steps)),
                ", ".join(row["device"]),
                _fmt_wall(row["wall_s"]),
            ]
        else:
            cells += ["", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
        first = False
    return lines


#: The keys of a table entry (:func:`table_entry`) that :func:`render_markdown` reads.
ENTRY_KEYS = (
    "title", "source", "command", "budget", "budget_description", "minutes_per_run", "seeds",
    "device", "wall_s", "written", "figures", "metrics", "rows", "notes",
)  # fmt: skip


#: The keys of a row of a table entry that :func:`render_markdown` reads, and those it reads
#: of a row that was run (``status`` ``"run"``).
ROW_KEYS = ("key", "label", "status", "paper")
RUN_KEYS = ("ours", "runs", "steps", "device", "wall_s", "commands", "data")

#: The list fields of a table entry: what each holds, and as what a message names it.
_LISTS = (
    ("seeds", int, "seeds (integers)"),
    ("metrics", str, "metric names"),
    ("notes", str, "notes (text)"),
    ("rows", dict, "rows (dicts)"),
)


def _check_type(value: Any, kind: Any, where: str, what: str) -> None:
    """Raise ``TypeError: "<where>: expected <what>, got <value>"`` unless ``value`` is a
    ``kind`` (a bool is no number)."""
    if isinstance(value, bool) or not isinstance(value, kind):
        shown = repr(value) if len(repr(value)) <= 60 else type(value).__name__
        raise TypeError(f"{where}: expected {what}, got {shown}")


def _check_entry(entry: dict[str, Any]) -> None:
    """Refuse a table entry whose fields :func:`render_markdown` cannot read, naming the field:
    ``rows=[{"key": "x"}]`` was ``KeyError: 'paper'``, ``metrics="ap50"`` ``KeyError: 'a'``
    and ``seeds=3`` "object of type 'int' has no len()".

    Raises:
        TypeError: a field of another type (``"entry['seeds']: expected a list of seeds ..."``).
        ValueError: a row that lacks keys of a row (:data:`ROW_KEYS`, and :data:`RUN_KEYS` for
            one that was run), or a run row without a result for a metric of the table.
    """
    for key, kind, what in _LISTS:
        _check_type(entry[key], list | tuple, f"entry[{key!r}]", f"a list of {what}")
        for value in entry[key]:
            _check_type(value, kind, f"entry[{key!r}]", f"a list of {what}")
    for key in ("minutes_per_run", "wall_s"):
        _check_type(entry[key], int | float, f"entry[{key!r}]", "a number")
    if not _figures_ok(entry["figures"]):
        raise TypeError("entry['figures']: expected a list of {'path': ..., 'caption': ...}")
    for i, row in enumerate(entry["rows"]):
        where = f"entry['rows'][{i}]"
        run = row.get("status") == "run"
        missing = [key for key in ROW_KEYS + RUN_KEYS * run if key not in row]
        if missing:
            raise ValueError(f"{where} is no row of a table entry: it lacks {', '.join(missing)}")
        _check_type(row["status"], str, f"{where}['status']", "text")
        _check_type(row["paper"], dict, f"{where}['paper']", "a dict {metric: value}")
        if not run:
            continue
        _check_type(row["ours"], dict, f"{where}['ours']", "a dict {metric: statistics}")
        lacking = [m for m in entry["metrics"] if not isinstance(row["ours"].get(m), dict)]
        if lacking:
            raise ValueError(f"{where}['ours'] holds no statistics of the metric {lacking[0]!r}")
        for key in ("runs", "steps", "device"):
            _check_type(row[key], list | tuple, f"{where}[{key!r}]", "a list")
        _check_type(row["wall_s"], int | float, f"{where}['wall_s']", "a number")
        _check_type(row["commands"], dict, f"{where}['commands']", "a dict {seed: commands}")


def render_markdown(entry: dict[str, Any]) -> str:
    """The ``<table>.md`` of one table entry of ``results.json``.

    Raises:
        TypeError: ``entry`` is no dict, or a field of it of another type, named
            (``"entry['seeds']: expected a list of seeds (integers), got 3"``).
        ValueError: it lacks keys of a table entry (:data:`ENTRY_KEYS`), or a row keys of a
            row (:data:`ROW_KEYS`, :data:`RUN_KEYS`), named (a ``KeyError: 'seeds'`` before).
    """
    if not isinstance(entry, dict):
        raise TypeError(f"entry must be a table entry of results.json, got {type(entry).__name__}")
    missing = [key for key in ENTRY_KEYS if key not in entry]
    if missing:
        raise ValueError(f"entry is no table entry of results.json: it lacks {', '.join(missing)}")
    _check_entry(entry)
    seeds = entry["seeds"]
    n = len(seeds)
    minutes = entry["minutes_per_run"]
    shares = sorted(set(entry.get("minutes_per_row", {}).values()))
    limit = ""
    if minutes and len(shares) > 1:
        limit = f"; at most {shares[0]:g}–{shares[-1]:g} min of training per run"
    elif minutes:
        limit = f"; at most {minutes:g} min of training per run"
    lines = [
        STAMP,
        f"# {entry['title']}",
        "",
        f"Reproduced with `{entry['command']}`.",
        "",
        f"- **budget**: {entry['budget']} ({entry['budget_description']}{limit})",
        f"- **seeds**: {', '.join(map(str, seeds))}"
        + (f" (ours: mean ± sample std over {n} seeds)" if n > 1 else ""),
        f"- **device**: {entry['device']}",
        *_digits_line(entry.get("digits")),
        f"- **wall time** of the table's runs: {_fmt_wall(entry['wall_s'])} "
        "(training and evaluation, summed over rows and seeds)",
        f"- **written**: {entry['written']}",
        f"- **paper**: {entry['source']}",
        "",
        "| experiment | metric | paper | ours | seeds | steps | device | wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in entry["rows"]:
        lines += _row_lines(row, entry["metrics"])
    lines += ["", "Paper numbers are transcribed in `mistnet/reproduce/paper.py`; ours come from "]
    lines[-1] += "each run's `eval.json` (the best validation checkpoint on the test split)."
    if entry["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in entry["notes"]]
    roundtrip = [r for r in entry["rows"] if "official_roundtrip_identical" in r]
    for r in roundtrip:
        same = "identical to" if r["official_roundtrip_identical"] else "DIFFERENT from"
        lines.append(f"- The imported official-layout data is {same} the source data.")
    runs = [r for r in entry["rows"] if r["status"] == "run" and "/" not in r["key"]]
    if runs:
        lines += ["", "## Runs and equivalent commands", ""]
        for r in runs:
            lines.append(f"**{r['label']}** (data `{shell_word(str(r['data']))}`)")  # one line
            lines.append("")
            for (seed, cmds), run in zip(r["commands"].items(), r["runs"], strict=True):
                shown = shell_word(str(run))
                lines += [f"{seed}, run directory `{shown}`:", "", "```", *cmds, "```", ""]
    if entry["figures"]:
        lines += ["## Figures", ""]
        lines += [f"- [{f['path']}]({f['path']}): {f['caption']}" for f in entry["figures"]]
    return "\n".join(lines).rstrip() + "\n"


#: The first line of every ``<table>.md`` (hidden when the markdown is shown): a file of that
#: name without it is the user's, never replaced (:func:`check_own_files`).
STAMP = "<!-- written by mist reproduce from results.json; rewritten on each run -->"

WRITER = "mist reproduce"  # as a refusal to replace a file of the user's names the writer


def _stamped(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(STAMP) + 1).decode("utf-8", "replace") == STAMP + "\n"
    except OSError:
        return False


def require_own_figure(path: Path) -> None:
    """Refuse a figure ``path`` that exists and is no PNG mistnet wrote (a file of the user's
    of that name), or that is a link or a folder."""
    require_own_file(path, made_by_mistnet, WRITER)


def check_own_files(out: Path, name: str) -> None:
    """Refuse, before any work, to reproduce table ``name`` into ``out`` when a file it would
    replace is not one mist reproduce wrote: ``<name>.md`` without :data:`STAMP`, a
    ``results.json`` that is no regular file, a PNG of ``figures/<name>-*.png`` without
    mistnet's stamp, ``figures`` that is no folder, or a symbolic link at the table's folder
    or one of its rows' (it would be trained into)."""
    path = out / f"{name}.md"
    require_own_file(path, _stamped, WRITER)
    results = out / "results.json"  # a link was read through and replaced, a FIFO replaced
    if results.is_symlink() or (os.path.lexists(results) and not results.is_file()):
        require_own_file(results, lambda _: True, WRITER)
    table = out / name  # a link there was trained into: the runs written in its target
    rows = sorted(table.iterdir()) if _real_folder(table) else []
    runs = [run for row in rows if _real_folder(row) for run in sorted(row.iterdir())]
    records = [run / "eval.json" for run in runs if _real_folder(run)]  # read through: used
    # a run's was "--out must name a new directory"
    refuse_links(
        [table, *rows, *runs, *records],
        WRITER,
        "move it away and run again, or choose another --out",
    )
    figures = out / "figures"
    if os.path.islink(figures) or (os.path.lexists(figures) and not figures.is_dir()):
        raise MistError(
            f"{figures}: is not a folder mist reproduce made, so nothing is written into it; "
            "move it away and run again, or choose another --out"
        )
    if figures.is_dir():
        for png in sorted(figures.glob(f"{glob.escape(name)}-*")):
            require_own_figure(png)


def _real_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def write_markdown(out: Path, name: str, entry: dict[str, Any]) -> Path:
    """Write ``out/<name>.md`` (:func:`render_markdown`), never over a file of the user's."""
    path = out / f"{name}.md"
    require_own_file(path, _stamped, WRITER)
    atomic_write_text(path, render_markdown(entry))
    return path


__all__ = [
    "FORMAT",
    "STAMP",
    "check_own_files",
    "METRIC_NAMES",
    "previous_figures",
    "render_markdown",
    "require_own_figure",
    "table_entry",
    "table_rows",
    "update_results",
    "write_markdown",
]
