"""``python -m mistnet``: :func:`mistnet.cli.run`, with Ctrl-C during its import one line too."""

import sys

try:
    from mistnet.cli import run
except KeyboardInterrupt:
    print("mist: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

run()
