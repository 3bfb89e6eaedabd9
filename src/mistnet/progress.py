"""The progress of a training session: its deadline (``--max-minutes``) and its progress bar."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from mistnet.rundir import MAXIMISE


def expected_last_step(steps: int, step: int, start: int, elapsed: float, left: float) -> int:
    """The step a run will stop at: ``steps``, or where its deadline falls at the rate so far.

    Args:
        steps: ``train.steps``.
        step: steps done; ``start``: the step this session started from.
        elapsed: seconds this session has trained; ``left``: seconds to the deadline (inf: none).

    Example:
        >>> expected_last_step(1000, 110, 100, 20.0, 60.0)  # 0.5 steps/s, one more minute
        140
    """
    if not math.isfinite(left) or step <= start or elapsed <= 0:
        return steps
    rate = (step - start) / elapsed
    return min(steps, step + max(1, math.ceil(rate * max(left, 0.0))))


def metrics_text(metrics: dict[str, float]) -> str:
    """The validation metrics of ``metrics`` (those that can pick the best checkpoint), as one
    line shows them.

    Example:
        >>> metrics_text({"both": 0.81234, "n_images": 300, "rmse": 0.1})
        'both 0.8123, rmse 0.1000'
    """
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k in MAXIMISE)


def print_validation(step: int, metrics: dict[str, float]) -> None:
    """One line on stderr per validation (``mist train --no-progress``: a log without a bar).

    This is a :class:`~mistnet.loop.Callbacks` ``on_validate``.
    """
    print(f"step {step}: {metrics_text(metrics)}", file=sys.stderr, flush=True)


def terminal_bar(asked: bool = True) -> dict[str, Any]:
    """``progress`` and ``callbacks`` of :func:`mistnet.loop.train` for a command: the bar on a
    terminal (when ``asked``), else one line per validation on stderr (:func:`print_validation`:
    a log file or CI gets lines, not the bar's carriage returns)."""
    from mistnet.loop import Callbacks  # the loop shows this module's bar

    bar = asked and sys.stderr.isatty()
    return {"progress": bar, "callbacks": None if bar else Callbacks(on_validate=print_validation)}


class Progress:
    """Steps ``start + 1 .. steps`` of one session: a tqdm bar (``show`` off: nothing printed)
    whose total follows the deadline ``max_minutes`` from now (0: none)."""

    def __init__(self, start: int, steps: int, max_minutes: float, show: bool) -> None:
        from tqdm.auto import tqdm

        self.start, self.steps, self.show = start, steps, show
        self.began = time.monotonic()
        self.deadline = self.began + 60 * max_minutes if max_minutes > 0 else math.inf
        self.bar = tqdm(
            total=steps, initial=start, disable=not show, desc="train", dynamic_ncols=True
        )

    @property
    def seconds(self) -> float:
        """Seconds since the session began."""
        return time.monotonic() - self.began

    def late(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() > self.deadline

    def advance(self, step: int, stats: dict[str, float] | None) -> None:
        """Count ``step`` done; show the losses of ``stats`` (None: not logged this step)."""
        if stats is not None:
            shown = ("task", "heatmap", "border")
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items() if k in shown})
        now = time.monotonic()
        left = self.deadline - now
        self.bar.total = expected_last_step(self.steps, step, self.start, now - self.began, left)
        self.bar.update(1)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """A line of validation metrics under the bar."""
        if self.show and metrics:
            self.bar.write(f"step {step}: {metrics_text(metrics)}")

    def close(self) -> None:
        self.bar.close()
