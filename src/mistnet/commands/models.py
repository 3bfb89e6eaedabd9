"""``mist models``: the pretrained models, and packaging a run as one.

``mist models`` lists each model of the registry (the package's own, or the folder
$MISTNET_MODELS names) with its task, its test metrics and what they were measured on, and the
command that trained it. ``mist models package`` writes the best checkpoint of a run (its
inference weights: the moving average when the run kept one), its config, the metrics ``mist
eval`` wrote for it and the training command into OUT/NAME.safetensors.

Examples::

    mist models
    mist eval runs/mine && mist models package runs/mine --name my-model --out models/ \\
        --command "mist train --preset tiny-cpu --out runs/mine"
    MISTNET_MODELS=models mist detect --model my-model scene.png --out found/
"""

from __future__ import annotations

import argparse
import warnings

from mistnet import pretrained
from mistnet.commands.eval import shown
from mistnet.config import from_record
from mistnet.errors import MistError, MistWarning, say


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the pretrained models, or package a run as one",
        description=__doc__.split("Examples::", 1)[0].split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:" + __doc__.split("Examples::", 1)[1],
    )
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    parser.set_defaults(func=list_models)
    pack = sub.add_parser("package", help="write a run's best checkpoint as a pretrained model")
    pack.add_argument("run", metavar="RUN", help="run directory written by mist train")
    pack.add_argument("--name", required=True, help="the model's name (a-z, 0-9 and dashes)")
    # Not dest="command": the CLI names the subcommand in its error lines by args.command.
    pack.add_argument(
        "--command",
        dest="trained_by",
        required=True,
        help="the command that trained the run",
    )
    pack.add_argument("--out", required=True, metavar="DIR", help="folder to write NAME into")
    pack.add_argument(
        "--metrics",
        metavar="FILE",
        help="mist eval's record of the best checkpoint (default RUN/eval-test.json)",
    )
    pack.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a packaged model of that name in DIR (never a file that is none)",
    )
    pack.set_defaults(func=package)


def list_models(args: argparse.Namespace) -> int:
    names, listed = pretrained.names(), 0
    if not names:
        say(f"no pretrained models in {pretrained.registry()}")
    for name in names:
        try:
            ckpt, card = pretrained.read(name)
            # checked as loading checks it: a config detect refuses was listed as usable
            model = from_record(ckpt.config, str(ckpt.path)).model
        except MistError as exc:  # one damaged file: the others are still listed
            warnings.warn(f"{name}: not listed ({exc})", MistWarning, stacklevel=1)
            continue
        on = card.evaluated_on
        metrics = ", ".join(
            f"{key} {'n/a' if value is None else shown(value, key)}"
            for key, value in card.metrics.items()
            if "/" not in key and not key.startswith("n_")
        )
        say(f"{name}: {model.task}, K = {model.k}, step {ckpt.step} ({ckpt.path})")
        say(f"  {on['split']}: {metrics} on {on['data']}, {on['images']} images")
        say(f"  trained by: {card.command}")
        listed += 1
    if names and not listed:  # the warnings alone, nothing on stdout, read as a listing
        say(f"no usable pretrained models in {pretrained.registry()} (each is named above)")
    return 0


def package(args: argparse.Namespace) -> int:
    path = pretrained.package(
        args.run, args.name, args.trained_by, args.out, args.metrics, args.overwrite
    )
    say(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0
