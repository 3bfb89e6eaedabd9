"""``mist data import-images``: a folder of one's own PNG/JPEG/TIFF files -> a dataset.

Examples::

    mist data import-images photos/ --out data/photos --size 96 96            # images only
    mist data import-images shop/ --out data/shop --labels shop/labels.csv    # image labels
    mist data import-images sky/ --out data/sky --crop 80 80 --per-image 20 --boxes stars.json
"""

from __future__ import annotations

import argparse

from mistnet import validate
from mistnet.commands._args import add_max_pixels_argument, checked_max_pixels, integer, number
from mistnet.data.images import __doc__ as FORMAT_DOC
from mistnet.data.images import import_images
from mistnet.data.importoptions import MAX_PER_IMAGE
from mistnet.errors import say


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``import-images`` to the ``mist data`` actions."""
    p = sub.add_parser(
        "import-images",
        help="import a folder of PNG/JPEG/TIFF images (optional labels or boxes)",
        description=FORMAT_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:" + __doc__.split("Examples::", 1)[1],
    )
    p.add_argument("src", metavar="SRC", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="new dataset directory")
    p.add_argument("--labels", metavar="FILE.csv", help="CSV filename,labels (class names)")
    p.add_argument("--boxes", metavar="FILE", help="CSV or COCO .json boxes, for evaluation")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--size", type=integer, nargs=2, metavar=("H", "W"), help="resize to H x W")
    shape.add_argument(
        "--crop", type=integer, nargs=2, metavar=("H", "W"), help="random H x W crops instead"
    )
    p.add_argument(
        "--per-image",
        type=integer,
        default=1,
        metavar="N",
        help=f"crops per image, with --crop (default 1, at most {MAX_PER_IMAGE:,})",
    )
    colour = p.add_mutually_exclusive_group()
    colour.add_argument("--grey", action="store_true", help="one channel (default: detected)")
    colour.add_argument("--rgb", action="store_true", help="three channels (default: detected)")
    p.add_argument(
        "--val", type=number, default=0.1, metavar="F", help="validation fraction (default 0.1)"
    )
    p.add_argument(
        "--test", type=number, default=0.1, metavar="F", help="test fraction (default 0.1)"
    )
    p.add_argument(
        "--seed", type=integer, default=0, metavar="S", help="seeds the split and crops (default 0)"
    )
    add_max_pixels_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    meta = import_images(
        args.src,
        args.out,
        labels=args.labels,
        boxes=args.boxes,
        size=tuple(args.size) if args.size else None,
        crop=tuple(args.crop) if args.crop else None,
        per_image=args.per_image,
        channels=1 if args.grey else 3 if args.rgb else None,
        val=args.val,
        test=args.test,
        seed=validate.seed(args.seed, "--seed"),
        max_pixels=checked_max_pixels(args),
    )
    splits = ", ".join(f"{s} {len(names)}" for s, names in meta["file_names"].items())
    what = " and ".join(meta["annotations"]) or "no annotations (images only)"
    classes = f"; classes: {', '.join(meta['classes'])}" if meta["classes"] else ""
    say(
        f"wrote {args.out}: {meta['channels']}-channel {meta['width']}x{meta['height']} "
        f"images, {splits}; {what}{classes}"
    )
    return 0
