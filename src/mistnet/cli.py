"""The ``mist`` command line: one sub-command group per module in :mod:`mistnet.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func=handler`` on it. Handlers return an exit status. User errors (:class:`MistError`, and
what the operating system refuses: a missing file, a read-only directory, a full disk, a file
size limit, too little memory) are printed as one line on stderr with exit status 2, never as a
traceback. Any other exception is a bug: one line says so and names the file in the temporary
directory that holds the traceback, with exit status 1. SIGTERM and SIGHUP unwind like Ctrl-C
(exit status 128 + the signal), so a command stopped by one removes its temporary files and
half-made outputs as on any error.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
import tempfile
import traceback
import warnings
from typing import NoReturn

from mistnet import __version__
from mistnet.errors import MistError, MistWarning, bounded, printed
from mistnet.signals import Terminated, signals_as_exceptions
from mistnet.streams import (
    OutputStreamError,
    closed_streams_to_devnull,
    guarded_streams,
    printable_streams,
)

# Modules under mistnet.commands, in the order they appear in ``mist --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "data",
    "train",
    "eval",
    "detect",
    "models",
    "show",
    "plot",
    "reproduce",
)


class _TopParser(argparse.ArgumentParser):
    """``mist``'s parser and its commands': usage errors cut as every other line (``mist
    <100,000 characters>`` quoted the word whole as an invalid choice)."""

    def error(self, message: str):
        super().error(bounded(message))


class CommandParser(_TopParser):
    """The parser of one command: an argument it does not know is refused with the command's
    own usage (``mist eval RUN --bogus``: eval's usage, not ``mist``'s), and the first empty
    argument it took (``--out ''``) is named in ``empty_argument`` for :func:`_call` to refuse:
    ``Path("")`` is the working directory, and an empty ``--data`` or ``--preset`` would
    silently mean "not given"."""

    #: Options may come between the positionals (``mist detect RUN --out DIR IMAGE...``): set
    #: by a command whose positionals argparse would otherwise split at an option.
    intermixed = False

    def __init__(self, *args, **kwargs) -> None:
        # an abbreviation is refused, not completed: "reproduce --seed 3" was taken as
        # "--seeds 3" (three seeds trained, seed 3 never), "--data" as "--data-root"
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    _mixing = False  # inside parse_known_intermixed_args, which calls parse_known_args
    _after: dict[str, str] = {}  # the stand-ins of the arguments after -- being parsed

    def error(self, message: str):
        # an option that took an argument after -- as its value failed its type or choices
        # naming the stand-in (_after_double_dash): said as argparse says "--out --"
        if any(token in message or repr(token)[1:-1] in message for token in self._after):
            message = message.split(": ", 1)[0] + ": expected one argument"
        super().error(message)

    def parse_known_args(self, args=None, namespace=None):
        if self._mixing:
            return super().parse_known_args(args, namespace)
        self._refuse_double_dash_values(sys.argv[1:] if args is None else list(args))
        if self.intermixed:
            self._mixing = True
            args, after = _after_double_dash(sys.argv[1:] if args is None else list(args))
            self._after = after
            try:
                namespace, extras = self.parse_known_intermixed_args(args, namespace)
                self._refuse_options_after(namespace, after)
                _restore(namespace, after)
                extras = [after.get(arg, arg) for arg in extras]
            except AttributeError as exc:
                # Ctrl-C before Python 3.11's intermixed parsing saved its actions' nargs: its
                # cleanup's AttributeError ('save_nargs') replaced the interrupt
                if isinstance(exc.__context__, KeyboardInterrupt):
                    raise exc.__context__ from None
                raise
            finally:
                self._mixing = False
        else:
            # Everything after a command's name is its own, so nothing it leaves over could
            # belong to the parser above; argparse would pass it up, refused with its usage.
            namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        if getattr(namespace, "empty_argument", None) is None:
            namespace.empty_argument = next(
                (
                    _display_name(a)
                    for a in self._actions
                    if _empty(getattr(namespace, a.dest, None))
                ),
                None,
            )
        return namespace, extras

    def _refuse_double_dash_values(self, args: list[str]) -> None:
        """Refuse ``--out=--``: argparse drops a value ``--`` (the end of the options) and the
        option became an empty list, read as not given (``train --data=--`` trained on the
        preset's scenes) or failing deep inside (an internal error)."""
        if self._subparsers is not None:  # its action's parser checks (and names itself)
            return
        for arg in args:
            if arg == "--":
                return
            _, equals, value = arg.partition("=")
            if arg.startswith("-") and equals and value == "--":
                self.error(
                    f"{arg}: '--' is no value (it ends the options); a path named -- is written ./--"
                )

    def _refuse_options_after(self, namespace: argparse.Namespace, after: dict[str, str]):
        """Refuse an option that took an argument after ``--`` as its value (``--out -- F``),
        as argparse does: after ``--`` every argument is a positional."""
        for action in self._actions:
            value = getattr(namespace, action.dest, None)
            values = value if isinstance(value, list) else [value]
            if action.option_strings and any(isinstance(v, str) and v in after for v in values):
                self.error(f"argument {'/'.join(action.option_strings)}: expected one argument")


def _after_double_dash(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """``args`` with each argument after ``--`` replaced by a stand-in, and the stand-ins'
    arguments: intermixed parsing read ``-x.png`` after ``--`` as an option (``mist detect
    --out F -- RUN -x.png``: "unrecognized arguments"). A stand-in starts with a NUL, which
    no argument from the command line holds; :func:`_restore` puts the arguments back."""
    if "--" not in args:
        return args, {}
    i = args.index("--")
    after = {f"\0{n}": arg for n, arg in enumerate(args[i + 1 :])}
    return args[:i] + list(after), after


def _restore(namespace: argparse.Namespace, after: dict[str, str]) -> None:
    """Put back the arguments :func:`_after_double_dash` stood in for."""
    for name, value in vars(namespace).items():
        if isinstance(value, str) and value in after:
            setattr(namespace, name, after[value])
        elif isinstance(value, list):
            setattr(namespace, name, [after.get(v, v) if isinstance(v, str) else v for v in value])


def _empty(value: object) -> bool:
    """An empty string, or a list of values holding one (``mist detect RUN '' --out d``)."""
    return value == "" or (isinstance(value, list) and "" in value)


def _display_name(action: argparse.Action) -> str:
    """How a command's help names an argument: its long option, else its metavar."""
    if action.option_strings:
        return max(action.option_strings, key=len)
    return action.metavar if isinstance(action.metavar, str) else action.dest.upper()


def build_parser() -> argparse.ArgumentParser:
    parser = _TopParser(
        prog="mist",
        allow_abbrev=False,
        description="MIST: Multiple Instance Spatial Transformers. Find K instances of "
        "recurring things in images without location labels.",
    )
    parser.add_argument("--version", action="version", version=f"mistnet {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=CommandParser, required=True
    )
    for name in COMMAND_MODULES:
        importlib.import_module(f"mistnet.commands.{name}").register(sub)
    return parser


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError``: ``<path>: <reason>`` (``[Errno 28] ...: 'x'`` is not).

    Example:
        >>> import errno
        >>> os_error_message(OSError(errno.ENOSPC, "No space left on device", "runs/a.json"))
        'runs/a.json: No space left on device'
    """
    reason = exc.strerror or str(exc).strip() or type(exc).__name__
    names = [n for n in (exc.filename, exc.filename2) if isinstance(n, str | bytes)]
    if exc.errno == errno.EBUSY and any(os.path.ismount(n) for n in names):
        # an empty --out is replaced by the new output: a mount point cannot be
        reason += " (a mount point, which cannot be replaced: give a new directory in it)"
    return reason.splitlines()[0] if exc.filename is None else f"{exc.filename}: {reason}"


def _out_of_memory(exc: BaseException) -> bool:
    """torch's CPU allocator failing, a device running out (``torch.OutOfMemoryError``), or a
    size no allocator could give (``--set model.num_classes=2**62``: "Storage size calculation
    overflowed")."""
    text = str(exc)
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError)
        and (
            type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in text
            or "Storage size calculation overflowed" in text
        )
    )


def internal_error(command: str, exc: BaseException) -> int:
    """Report a bug in one line; the traceback goes to a file in the temporary directory.

    Returns:
        Exit status 1.
    """
    summary = f"{type(exc).__name__}: {str(exc).strip()}".splitlines()[0]
    try:
        fd, path = tempfile.mkstemp(prefix="mist-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            traceback.print_exception(exc, file=f)
        where = f"the traceback is in {path}"
    except OSError as write_error:
        where = f"the traceback could not be written ({os_error_message(write_error)})"
    print(
        f"mist {command}: internal error, please report it ({summary}); {where}",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    closed_streams_to_devnull()
    printable_streams()
    with guarded_streams():
        try:
            # The command modules import torch: a second or more in which Ctrl-C may come.
            parser = build_parser()
            args = parser.parse_args(argv)
        except KeyboardInterrupt:
            print("mist: interrupted", file=sys.stderr)
            return 130
        except OutputStreamError as exc:  # `mist --help >/dev/full`
            print(f"mist: error: {exc}", file=sys.stderr)
            return 2
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(command_name(args))
            return _call(args)


def command_name(args: argparse.Namespace) -> str:
    """What the lines of a command call it: ``eval``, or a group's with its action (``data
    import-images``), as argparse names it in its usage errors."""
    action = getattr(args, f"{args.command}_command", None)
    return f"{args.command} {action}" if action else args.command


def _warning_printer(command: str):
    """``warnings.showwarning`` printing every warning as one ``mist`` line: a
    :class:`MistWarning` as it is, a library's (matplotlib's "Tight layout not applied")
    with its category, not Python's two lines of a source file and line."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if not issubclass(category, MistWarning):
            text = f"{category.__name__}: {text}"
        print(f"mist {command}: warning: {printed(text)}", file=sys.stderr)

    return show


def _call(args: argparse.Namespace) -> int:
    """Run ``args.func``; a user error, a bug or an interrupt ends as one line (see the top)."""
    name = command_name(args)
    try:
        if args.empty_argument is not None:
            raise MistError(f"{args.empty_argument} '' is an empty argument")
        _one_process(args.command, name)
        with signals_as_exceptions():  # SIGTERM unwinds, so every command removes its temporaries
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a full disk under `>out.txt` fails here, as this command's error
            return code
    except MistError as exc:  # paths and names the user gave, escaped: one line, always
        print(f"mist {name}: error: {printed(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mist models | head`: the reader has all it wanted
        return _reader_gone()
    except OSError as exc:
        print(f"mist {name}: error: {printed(os_error_message(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mist {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        said = _symlink_loop(exc) or _not_a_bug(exc)
        if said is not None:
            print(f"mist {name}: error: {printed(said)}", file=sys.stderr)
            return 2
        if not _out_of_memory(exc):
            return internal_error(name, exc)
        print(
            f"mist {name}: error: out of memory; try smaller images, batches or network sizes",
            file=sys.stderr,
        )
        return 2
    except Terminated as exc:
        print(f"mist {name}: stopped by {exc}", file=sys.stderr)
        return 128 + exc.signum


def _symlink_loop(exc: Exception) -> str | None:
    """The message for a path through a symbolic link loop, which ``Path.resolve`` (Python
    before 3.13) raises as a ``RuntimeError`` rather than the ``OSError`` ELOOP every other
    call raises; None for any other exception.

    Example:
        >>> _symlink_loop(RuntimeError("Symlink loop from '/tmp/loop/x'"))
        '/tmp/loop/x: a symbolic link loop (it leads back to itself)'
    """
    text = str(exc)
    if type(exc) is RuntimeError and text.startswith("Symlink loop from "):
        path = text.removeprefix("Symlink loop from ").strip("'")
        return f"{path}: a symbolic link loop (it leads back to itself)"
    return None


def _not_a_bug(exc: Exception) -> str | None:
    """The one line of a failure that is the machine's or the user's settings, not mistnet's
    bug (each was "internal error, please report it"): a warning that the warnings filter
    turned into an error (``PYTHONWARNINGS=error``), and ``--compile`` on a machine without
    the C++ compiler or Python headers torch.compile needs. None for any other exception.

    Example:
        >>> _not_a_bug(UserWarning("Glyph 29483 missing"))
        'UserWarning: Glyph 29483 missing (a warning, made an error by the warnings filter: PYTHONWARNINGS or -W)'
    """
    first = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, Warning):
        return (
            f"{type(exc).__name__}: {first} (a warning, made an error by the warnings filter: "
            "PYTHONWARNINGS or -W)"
        )
    # the compiler's absence only: any other inductor failure is a bug, with its traceback
    compiler = ("InvalidCxxCompiler", "CppCompileError")
    inner = type(getattr(exc, "inner_exception", None)).__name__  # older torch: line 2 names it
    if (
        compiler.count(type(exc).__name__)
        or compiler.count(inner)
        or (
            type(exc).__name__ in ("InductorError", "BackendCompilerFailed")
            and first.startswith(compiler)
        )
    ):
        return (
            f"--compile: torch.compile failed ({first}); it needs a working C++ compiler and "
            "Python's headers (python3-dev); run without --compile"
        )
    return None


def _reader_gone() -> int:
    """Standard output's reader closed the pipe: end quietly, as a killed-by-SIGPIPE filter
    does (status 141), with stdout on ``/dev/null`` so the exit's flush cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + 13


def _one_process(command: str, name: str) -> None:
    """Refuse a command other than ``mist train`` under torchrun: its N copies would race
    (``eval`` writing its JSON N times, ``detect`` failing on "created by another process").

    Raises:
        MistError: ``WORLD_SIZE`` > 1 in the environment.
    """
    if command != "train" and _several_processes():
        raise MistError(
            f"mist {name} runs in one process (WORLD_SIZE={os.environ['WORLD_SIZE']} in the "
            "environment): only mist train runs under torchrun"
        )


def _several_processes() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1; a value
    it cannot have was the command's to refuse, where it read it)."""
    from mistnet.machine import torchrun_world  # no torch: it is read at exit

    try:
        return torchrun_world()[1] > 1
    except MistError:
        return False


def run() -> NoReturn:
    """The ``mist`` and ``python -m mistnet`` entry point: :func:`main`, then exit with its status.

    Ctrl-C at any moment, the imports of the commands included, is one line and exit status
    130; this module imports nothing heavy at its top for that reason (``python -m mistnet``
    catches it during its own import too). A torchrun worker (``WORLD_SIZE`` > 1) leaves by ``os._exit`` once its output is flushed:
    gloo's worker threads can outlive ``destroy_process_group`` and abort the interpreter's
    finalisation (SIGABRT, "terminate called without an active exception"; seen about once in
    20 two-process runs on a loaded machine), which would fail a run whose files are all written.
    """
    try:
        code = main()
    except KeyboardInterrupt:  # between the handlers of main, say while a warning is printed
        print("mist: interrupted", file=sys.stderr)
        code = 130
    # the work is done and its outputs are in place: a Ctrl-C now, during the interpreter's
    # shutdown, would print the traceback of an atexit or threading hook and change nothing;
    # SIGTERM and SIGHUP, stopping a command as Ctrl-C does, ended it silently (143, 129)
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    try:
        sys.stdout.flush()  # what is still buffered, while a closed pipe can still be told apart
    except BrokenPipeError:
        code = _reader_gone()
    except OSError as exc:
        print(f"mist: error: cannot write to standard output: {exc.strerror}", file=sys.stderr)
        code = 2
    if _several_processes():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    run()
