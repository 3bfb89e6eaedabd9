"""``mist reproduce``: train and evaluate what each of the paper's tables needs, and write the
paper's numbers beside ours.

Entry point: :func:`reproduce`. The pieces:

- :mod:`~mistnet.reproduce.paper`: the paper's numbers (Tables 1–4), transcribed once;
- :mod:`~mistnet.reproduce.plan`: the budgets (``smoke``, ``cpu``, ``full``) as data and the
  experiments (rows) of each table as presets plus overrides;
- :mod:`~mistnet.reproduce.data`: datasets made once per (data key, budget, seed) and shared;
- :mod:`~mistnet.reproduce.runs`: one run: :func:`mistnet.loop.train` (resumed when
  interrupted), then :func:`mistnet.engine.evaluate` of the best checkpoint, into ``eval.json``;
- :mod:`~mistnet.reproduce.report`: ``results.json`` and ``<table>.md``;
- :mod:`~mistnet.reproduce.figures`: the paper's figures from the seed-0 runs, drawn after
  ``results.json`` and ``<table>.md`` are written (a figure that fails is a warning).

Output layout::

    OUT/reproduce.json                      the budget this directory belongs to
    OUT/.lock                               flock held by the running mist reproduce
    OUT/results.json                        every table reproduced so far (machine-readable)
    OUT/<table>.md                          paper vs ours, commands, figures
    OUT/<table>/<row>/seed<s>/              run directory (mist train / eval / show work on it)
    OUT/<table>/<row>/seed<s>/eval.json     written last: the run is finished
    OUT/figures/*.png
    OUT/data/<budget>/...                   datasets (or --data-root)
    OUT/data/<budget>-mnist/...             MNIST datasets made from full MNIST (--digits mnist)

Running the same command again skips every run with an ``eval.json``, resumes an interrupted
one and redraws the tables, so an interrupted reproduction simply continues. Each run records
its fingerprint (preset, resolved config, minutes; not the threads; a dataset inside OUT by its
path relative to OUT, so that OUT may move with its data); a run directory made under another
plan (other overrides, minutes, steps or preset) stops the invocation before anything trains:
use a fresh ``--out`` or delete that run directory.
"""

from __future__ import annotations

import numbers
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mistnet import validate
from mistnet.data import DigitPools, load_digits
from mistnet.device import check_device, resolve_device
from mistnet.errors import ArgumentError, DataError, MistError, say
from mistnet.extras import require_matplotlib
from mistnet.io import atomic_write_json, nearest_existing
from mistnet.locks import exclusive_lock
from mistnet.outputs import check_outside, claim_output, open_output, writing_inside
from mistnet.ownership import refuse_links
from mistnet.reproduce import report
from mistnet.reproduce.data import check_datasets, data_dir, prepare, svhn_usable
from mistnet.reproduce.figures import table_figures
from mistnet.reproduce.paper import PAPER
from mistnet.reproduce.plan import BUDGETS, TABLE_NAMES, TABLES, Budget, Table, get_budget
from mistnet.reproduce.plan import get_tables as _get_tables
from mistnet.reproduce.runs import check_fingerprint, make_spec, run_spec
from mistnet.shellwords import shell_join
from mistnet.textfile import read_json

MARKER = "reproduce.json"
#: What a reproduction writes inside its directory: the runs of its tables, its datasets.
CHILDREN = (*TABLE_NAMES, "data")
NO_SVHN = "SVHN not available (pass --svhn DIR with SVHN format 1)"


def _check_could_make(path: Path, option: str) -> None:
    """Refuse a ``path`` that cannot become a directory, leaving nothing: it, or the nearest
    of its parents that exists, is no directory (a file on the way) or one where no folder
    can be made (a folder is made there and removed). Run before ``--out`` is made, so that
    a bad ``--data-root`` leaves no output behind."""
    found = nearest_existing(path)
    if not found.is_dir():
        raise MistError(f"{option} {path}: not a writable directory ({found} is no directory)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".mistnet-probe-", dir=found))
    except OSError as exc:
        raise MistError(
            f"{option} {path}: not a writable directory ({found}: {exc.strerror or exc})"
        ) from None


def _check_writable(path: Path, option: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"  # unique: may run before the lock
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise MistError(
            f"{option} {path}: not a writable directory ({exc.strerror or exc})"
        ) from None


def _earlier_reproduction(path: Path) -> bool:
    """Whether the unmarked folder ``path`` is a reproduction of a version before the
    ``.mistnet`` markers: each wrote ``reproduce.json`` first, ``{"format":
    "mistnet-reproduce", "budget": ...}`` (later with ``digits``), and nothing else always (an
    interrupted one may hold no table yet). A ``reproduce.json`` of the user's is no such file."""
    try:
        doc = read_json(path / MARKER)
    except DataError:
        return False
    return (
        isinstance(doc, dict)
        and doc.get("format") == "mistnet-reproduce"
        and isinstance(doc.get("budget"), str)
    )


def _claim_out(
    out: Path, root: Path, svhn: Path | None, tables: list[Table], budget: Budget, digits: str
) -> None:
    """Create ``out``, or accept a reproduction's (:func:`_earlier_reproduction` too), once
    neither it nor the data root ``root`` lies in another output or in the SVHN folder (``root``
    is no output either: datasets go into it), and a reproduction's is of ``budget`` and
    ``digits`` and holds no file of the user's where ``tables`` write: only then is ``out``
    made or marked, so a refused command leaves no marker."""
    inputs = [("the SVHN folder", svhn)] if svhn is not None else []
    legacy = _earlier_reproduction
    # --out first, so that a demo's folder is named as such, not by its data/ (the root)
    ours = claim_output(out, "reproduce", "mist reproduce", legacy, inputs, in_place=True)
    with writing_inside(out, CHILDREN):  # the default root, out/data, is the reproduction's
        check_outside(root, inputs, "--data-root", itself=True)
    if ours:
        _check_marker(out, budget, digits)
    for t in tables:  # the user's own table1.md or figure there: refused before anything
        report.check_own_files(out, t.name)
    data = out / "data"  # the default root, where links led the datasets into the user's
    if Path(root).absolute() == data.absolute():
        inside = sorted(data.iterdir()) if data.is_dir() and not data.is_symlink() else []
        way_out = "move it away, or give a --data-root of its own"
        refuse_links([data, *inside], "mist reproduce", way_out)
    try:
        open_output(
            out,
            "reproduce",
            "mist reproduce",
            legacy=legacy,
            inputs=inputs,
        )
    except OSError as exc:
        raise MistError(f"--out {out}: not a writable directory ({exc.strerror or exc})") from None


def _check_out(out: Path, budget: Budget, digits: str = "embedded") -> None:
    """Create ``out`` if needed, check it is writable and belongs to ``budget`` and ``digits``
    (:func:`_check_marker`), and write its ``reproduce.json`` unless it says so already (a
    rerun refused further on touched it)."""
    _check_writable(out, "--out")
    record = {"format": "mistnet-reproduce", **_check_marker(out, budget, digits)}
    if not (out / MARKER).is_file() or read_json(out / MARKER) != record:
        atomic_write_json(out / MARKER, record)


def _check_marker(out: Path, budget: Budget, digits: str) -> dict[str, str]:
    """The budget and digits ``out/reproduce.json`` is to say, once the one there (if any) says
    the same (a marker without digits predates the choice: embedded).

    Raises:
        DataError: the file is damaged (mistnet's, in its own output), a symbolic link or no
            regular file.
        MistError: another budget or other digits.
    """
    marker = out / MARKER
    want = {"budget": budget.name, "digits": digits}
    if marker.is_symlink():  # was read through, then replaced by a file; a FIFO replaced unread
        raise DataError(f"{marker}: a symbolic link; it is the reproduction's record: move it away")
    if os.path.lexists(marker):
        validate.regular_file(marker)  # a folder: a bare "Is a directory"
    if marker.is_file():
        try:
            old = read_json(marker)
        except DataError as exc:
            raise DataError(f"{exc}; delete it to continue the reproduction in {out}") from None
        if not isinstance(old, dict):
            raise DataError(
                f"{marker}: not a JSON object; delete it to continue the reproduction in {out}"
            )
        old = {"budget": old.get("budget"), "digits": old.get("digits", "embedded")}
        for option, value in old.items():
            if value is not None and value != want[option]:
                raise MistError(
                    f"{out} holds a reproduction with --{option} {value}; use another --out "
                    f"for --{option} {want[option]}"
                )
    return want


def default_command(
    table: str,
    budget: str,
    out: Path,
    seeds: int,
    device: str,
    svhn: str | Path | None,
    data_root: str | Path | None,
    threads: int = 0,
    digits: str = "embedded",
) -> str:
    argv = ["mist", "reproduce", table, "--budget", budget, "--out", str(out)]
    argv += ["--seeds", str(seeds), "--device", device]
    if digits != "embedded":
        argv += ["--digits", digits]
    if threads:
        argv += ["--threads", str(threads)]
    if svhn is not None:
        argv += ["--svhn", str(svhn)]
    if data_root is not None:
        argv += ["--data-root", str(data_root)]
    return shell_join(argv)


def _data_keys(table: Table) -> dict[str, bool]:
    """The data keys of ``table``'s runs -> whether only their test split is needed (a data
    set that no run of the table trains on, e.g. ``mnist-hard-right``)."""
    keys: dict[str, bool] = {}
    for row in table.runs():
        for ev in row.all_evals():
            keys[ev.data] = keys.get(ev.data, True) and ev.data != row.data
    return keys


def _not_run(table: Table, svhn: Path | None) -> str | None:
    """Why the runs of ``table`` cannot be made (``None``: they can)."""
    return NO_SVHN if any(r.data == "svhn" for r in table.runs()) and svhn is None else None


def check_plan(
    tables: list[Table],
    budget: Budget,
    out: Path,
    seeds: list[int],
    svhn: Path | None,
    data_root: Path,
    threads: int = 0,
    digits: str = "embedded",
) -> None:
    """Check every run directory the invocation will reuse against the current plan, before
    any data is made or any run trains (:func:`~mistnet.reproduce.runs.check_fingerprint`).

    Raises:
        MistError: a run directory made under another plan (naming it).
    """

    for table in tables:
        if _not_run(table, svhn) is not None:
            continue
        for row in table.runs():
            for seed in seeds:
                data = {
                    ev.data: data_dir(data_root, budget, ev.data, seed, digits)
                    for ev in row.all_evals()
                }
                check_fingerprint(make_spec(table.name, row, seed, budget, out, data, threads))


def reproduce_table(
    table: Table,
    budget: Budget,
    out: Path,
    *,
    device: str,
    seeds: list[int],
    svhn: Path | None,
    data_root: Path,
    command: str,
    figures: bool = True,
    threads: int = 0,
    digits: DigitPools | None = None,
    log: Callable[[str], None] = say,
) -> dict[str, Any]:
    """Reproduce one table into ``out``; returns its ``results.json`` entry.

    ``digits``: the digits of its MNIST scenes (default: the embedded ones).
    """

    t0 = time.monotonic()
    report.check_own_files(out, table.name)  # before hours of training, not after
    digits = digits or load_digits()
    not_run = _not_run(table, svhn)
    records: dict[tuple[str, int], dict] = {}
    specs = {}
    if not_run is None:
        keys = _data_keys(table)
        data = {s: {k: prepare(k, budget, s, data_root, svhn, log, test_only=only,
                               digits=digits.source)
                    for k, only in keys.items()}
                for s in seeds}  # fmt: skip
        for row in table.runs():
            for seed in seeds:
                spec = make_spec(table.name, row, seed, budget, out, data[seed], threads)
                records[(row.key, seed)], _ = run_spec(spec, device, budget, log)
                if seed == seeds[0]:
                    specs[row.key] = spec
    else:
        log(f"[{table.name}] not run: {not_run}")
    rows = report.table_rows(table, records, seeds, not_run)
    wall = sum(r["wall_s"]["total"] for r in records.values())

    def write(figs: list[tuple[str, str]]) -> tuple[dict[str, Any], Path]:
        entry = report.table_entry(
            table,
            rows,
            budget=budget,
            seeds=seeds,
            device=device,
            command=command,
            wall_s=wall,
            figures=figs,
            digits=digits.record(),
        )
        report.update_results(out, budget, table.name, entry)
        return entry, report.write_markdown(out, table.name, entry)

    # The table first, figures after: a figure that fails must not cost the numbers.
    drawn = report.previous_figures(out, table.name) if specs else []
    entry, path = write(drawn)
    if figures and specs:
        try:
            require_matplotlib()  # said as the warning below, before "figures ->"
            log(f"[{table.name}] figures -> {out / 'figures'}")
            new = table_figures(table.name, specs, out, budget.figure_scenes, device)
        except Exception as exc:  # matplotlib, a font, a full disk: the table stands without it
            reason = " ".join(str(exc).split()) or type(exc).__name__
            log(f"[{table.name}] warning: figures not drawn ({type(exc).__name__}: {reason})")
        else:
            if new != drawn:
                entry, path = write(new)
    log(f"[{table.name}] wrote {path} ({time.monotonic() - t0:.0f} s in this invocation)")
    return entry


#: The most seeds one reproduction trains: each is a whole table again (the paper reports one
#: run; a mean ± std over a few is what this is for), and a count beyond it is a typo.
MAX_SEEDS = 100


def _check_counts(seeds: int, threads: int, digits: str) -> None:
    if isinstance(seeds, bool) or not isinstance(seeds, numbers.Integral):
        raise TypeError(f"seeds must be an integer, got {seeds!r}")
    if not 1 <= seeds <= MAX_SEEDS:
        raise MistError(
            f"--seeds must be from 1 to {MAX_SEEDS} (each seed trains the whole table again), "
            f"got {validate.shown(seeds)}"
        )
    validate.threads(threads, "--threads")
    if digits not in ("embedded", "mnist"):
        raise MistError(f"--digits must be embedded or mnist, got {digits!r}")


def _check_options(out, svhn, data_root, figures, log, command) -> None:
    """Refuse an ``out``, ``svhn`` or ``data_root`` that is no path or empty (the working
    directory), a ``figures`` that is no bool and a ``log`` that is no callable, before ``out``
    is made (the command line refuses an empty argument itself)."""
    if not validate.path_argument(out, "out"):
        raise ArgumentError("out '' is an empty path; give the output directory")
    if svhn is not None and not validate.path_argument(svhn, "svhn"):
        raise ArgumentError("svhn '' is an empty path; give the SVHN folder or leave it out")
    if data_root is not None and not validate.path_argument(data_root, "data_root"):
        raise ArgumentError("data_root '' is an empty path; give a folder or leave it out")
    validate.flag(figures, "figures")
    if not callable(log):
        raise TypeError(f"log must be a callable taking a message, got {log!r}")
    if command is not None:
        if not isinstance(command, str):
            raise TypeError(f"command must be a string, got {type(command).__name__}")
        validate.printable(command, "command", "give the command on one line")


def _check_apart(root: Path, out: Path) -> None:
    """Refuse a data root that is ``out`` or lies inside it anywhere but ``out/data``, and an
    ``out`` inside the data root: the datasets would be written into the reproduction (or it
    among them), and a root equal to ``out`` waited for its own lock."""
    r, o = root.resolve(), out.resolve()
    if r == o:
        raise ArgumentError(f"--data-root {root} is --out itself; leave it out for {out}/data")
    if r.is_relative_to(o) and not r.is_relative_to(o / "data"):
        raise ArgumentError(
            f"--data-root {root} lies inside --out {out}; only {out}/data may (the default)"
        )
    if o.is_relative_to(r):
        raise ArgumentError(
            f"--out {out} lies inside --data-root {root}, where the datasets are written; "
            "choose them apart"
        )


def _data_places(
    tables: list[Table], plan: Budget, out: Path, svhn, data_root, seeds: int, digits: str
) -> tuple[Path | None, Path]:
    """The SVHN root and the data root of a reproduction, checked before ``out`` is made.

    SVHN is checked up front (h5py opens both digitStruct.mat) so that ``all`` cannot fail at
    Table 4, and whenever given: a mistyped ``--svhn`` is said at once, not when Table 4 is
    run; a folder of the user's where a dataset of the plan goes is refused, as is a data root
    that cannot be made.
    """
    svhn_path = None if svhn is None else svhn_usable(svhn)
    root = Path(data_root) if data_root is not None else out / "data"
    _check_apart(root, out)
    if not root.absolute().is_relative_to(out.absolute()):  # out/data: made with out
        _check_could_make(root, "--data-root")
    for t in tables:
        if _not_run(t, svhn_path) is None:
            keys = list(_data_keys(t))
            check_datasets(root, plan, keys, list(range(seeds)), digits, svhn_path)
    return svhn_path, root


def reproduce(
    table: str,
    budget: str,
    out: str | Path,
    *,
    device: str = "auto",
    seeds: int = 1,
    svhn: str | Path | None = None,
    data_root: str | Path | None = None,
    command: str | None = None,
    figures: bool = True,
    threads: int = 0,
    digits: str = "embedded",
    log: Callable[[str], None] = say,
) -> dict[str, Any]:
    """Reproduce ``table`` (a table name or ``all``) under ``budget`` into ``out``.

    Args:
        table: ``table1``, ``gabor``, ``table2``, ``table3``, ``table4`` or ``all``.
        budget: ``smoke``, ``cpu`` or ``full`` (see :data:`~mistnet.reproduce.plan.BUDGETS`).
        out: output directory (created; re-using it continues an earlier reproduction).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        seeds: number of seeds (0 .. seeds-1), each with its own data and runs.
        svhn: SVHN format-1 root (``train/`` and ``test/``); without it Table 4 is not run.
        data_root: where datasets go (default ``out/data``).
        command: the command line recorded in TABLE.md (default: rebuilt from the arguments).
        figures: draw the figures.
        threads: torch threads per run, replacing the budget's (0: keep it).
        digits: the digits of the MNIST scenes: ``embedded`` (shipped with mistnet) or
            ``mnist`` (full MNIST in the data cache, ``mist data download mnist``).
        log: progress messages.

    Returns:
        The ``results.json`` document.

    Raises:
        TypeError: a ``table``, ``budget``, ``seeds``, ``out``, ``svhn`` or ``data_root`` of
            the wrong type (a list of tables, a number for a path).
        MistError: unknown table or budget, an empty path, bad seeds or device, an unusable
            ``out``, ``svhn`` or data root, other digits than ``embedded`` or ``mnist`` (or an
            empty cache), another ``mist reproduce`` writing to ``out``, a folder of the user's
            as ``out`` or where the data root's datasets or locks go, or any user error of the
            runs; each names an argument as the command does (``--data-root``: ``data_root``).
    """
    tables = _get_tables(table)
    plan = get_budget(budget)
    _check_counts(seeds, threads, digits)
    _check_options(out, svhn, data_root, figures, log, command)
    pools = load_digits(digits)
    dev = str(resolve_device(check_device(device)))
    out = Path(out)
    svhn_path, root = _data_places(tables, plan, out, svhn, data_root, seeds, digits)
    _claim_out(out, root, svhn_path, tables, plan, digits)
    with exclusive_lock(out, "mist reproduce", transient=True), writing_inside(out, CHILDREN):
        _check_out(out, plan, digits)
        report.read_results(out)  # a damaged one stops the rerun before any work
        if command is None:
            command = default_command(
                table, budget, out, seeds, device, svhn, data_root, threads, digits
            )
        check_plan(tables, plan, out, list(range(seeds)), svhn_path, root, threads, digits)
        _check_writable(root, "--data-root")  # made here: a refused plan left it made
        log(f"digits: {pools.describe()}")
        for t in tables:
            reproduce_table(
                t,
                plan,
                out,
                device=dev,
                seeds=list(range(seeds)),
                svhn=svhn_path,
                data_root=root,
                command=command,
                figures=figures,
                threads=threads,
                digits=pools,
                log=log,
            )
        return report.read_results(out) or {}


__all__ = ["BUDGETS", "PAPER", "TABLES", "TABLE_NAMES", "reproduce", "reproduce_table"]
