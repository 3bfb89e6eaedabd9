"""Every integer and real-valued option of every ``mist`` command reads ASCII numbers only,
as the file parsers do (labels, box CSVs, checkpoint metadata refuse ``１``, ``1_0``, ``" 3 "``).

Before: argparse's ``type=int`` / ``type=float`` took full-width and Arabic-Indic digits,
``_`` separators and surrounding spaces (``--n-train '１_６'`` made 16 scenes, ``--seed '٣'``
seed 3, ``--min-score '０.５'`` 0.5).
"""

import argparse

import pytest

from mistnet import cli
from mistnet.commands._args import integer, number

#: The required arguments of each command (a path of actions) that has a numeric option.
BASE = {
    ("demo",): [],
    ("data", "make"): ["mnist-hard", "--out", "o"],
    ("data", "show"): ["d", "--out", "o.png"],
    ("data", "import-official"): ["d", "o"],
    ("data", "import-images"): ["src", "--out", "o"],
    ("train",): [],
    ("eval",): ["RUN"],
    ("detect",): ["RUN", "x.png", "--out", "d"],
    ("show",): ["RUN", "--out", "f.png"],
    ("reproduce",): ["table1", "--budget", "smoke", "--out", "o"],
}


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(command path, action)`` of every option that converts its value, in every command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif action.type is not None:
            yield path, action


OPTIONS = [
    (path, a.option_strings[-1], a.type, a.nargs) for path, a in _options(cli.build_parser())
]
IDS = [f"{' '.join(path)} {option}" for path, option, _, _ in OPTIONS]


def test_every_numeric_option_reads_ascii_numbers_only():
    """Before: 30 options of 9 commands were ``type=int`` or ``type=float``."""
    kinds = {(path, option): kind for path, option, kind, _ in OPTIONS}
    assert all(kind in (integer, number) for kind in kinds.values()), kinds
    assert {path for path, _ in kinds} == set(BASE)
    assert kinds[("detect",), "--min-score"] is number
    assert kinds[("data", "make"), "--seed"] is integer


def _argv(path, option, nargs, value):
    return [*path, *BASE[path], option, *[value] * (nargs or 1)]


@pytest.mark.parametrize("path, option, kind, nargs", OPTIONS, ids=IDS)
@pytest.mark.parametrize("bad", ["１", "٣", "۹", "1_0", " 5 ", "5 ", "0x10", ""])
def test_a_number_in_other_digits_separators_or_spaces_is_refused(
    capsys, path, option, kind, nargs, bad
):
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in _argv(path, option, nargs, bad)])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    assert err.startswith(f"usage: mist {' '.join(path)} ") and "Traceback" not in err
    what = "int" if kind is integer else "float"
    assert err.splitlines()[-1].startswith(
        f"mist {' '.join(path)}: error: argument {option}: invalid {what} value: {bad!r} (ASCII "
    ), err


@pytest.mark.parametrize("path, option, kind, nargs", OPTIONS, ids=IDS)
def test_ascii_numbers_read_as_before(path, option, kind, nargs):
    parser = cli.build_parser()
    dest = option.lstrip("-").replace("-", "_")
    for text, want in [("5", 5), ("-1", -1), ("+07", 7)] + [("1e-3", 1e-3), ("-.5", -0.5)] * (
        kind is number
    ):
        value = getattr(parser.parse_args(_argv(path, option, nargs, text)), dest)
        assert value == ([want] * nargs if nargs else want)
        assert type(value if not nargs else value[0]) is (int if kind is integer else float)


def test_the_types_themselves():
    """Range checks stay each option's own: ``inf`` and ``nan`` still reach them (as
    ``float`` gave them), so ``--min-score nan`` keeps its "a score in [0, 1]" message."""
    assert integer("0") == 0 and integer("-0") == 0 and number("5.") == 5.0
    assert number("inf") == float("inf") and number("-Infinity") == float("-inf")
    assert number("NaN") != number("nan")  # both NaN
    for bad in ["1e3", "1.0", "٣", "1_000", "\t3", "3\n", "--3", "3-"]:
        with pytest.raises(argparse.ArgumentTypeError, match="invalid int value"):
            integer(bad)
    for bad in ["０.５", "1_0.5", " 1", "1e", "e3", ".", "1.2.3", "0x1p3", "infinit", "1e-3 "]:
        with pytest.raises(argparse.ArgumentTypeError, match="invalid float value"):
            number(bad)
    # Before: 1e-400 was 0.0 (import-images --val 1e-400 made no validation split, silently)
    for tiny in ["1e-400", "-5E-999", "0.000001e-320"]:
        with pytest.raises(argparse.ArgumentTypeError, match="too small for a float .*reads as 0"):
            number(tiny)
    assert number("0e-400") == 0.0 and number("-0.000") == 0.0 and number("5e-324") > 0
