"""Figures: scene grids, the paper's MIST panels (Fig. 3/5), training curves, annotated images.

- :mod:`~mistnet.viz.canvas`: arrays to RGB, boxes, matplotlib figures without pyplot (the
  conventions every figure shares).
- :mod:`~mistnet.viz.panels`: scene grids, :func:`mist_figure` / :func:`output_figure` (a model's
  output).
- :mod:`~mistnet.viz.annotate`: :func:`annotate_image` (``mist detect``, PIL only, native size).
- :mod:`~mistnet.viz.curves`: a run's log as curves, ``mist plot``'s panels.

Every figure is written as one PNG, atomically. Without matplotlib (the ``figures`` extra) a
figure raises ``MistError`` naming ``pip install 'mistnet[figures]'``.
"""

from mistnet.viz.annotate import annotate_image
from mistnet.viz.canvas import GT_COLOR, PRED_COLOR, to_rgb
from mistnet.viz.curves import log_curves, plot_curves, plot_runs
from mistnet.viz.panels import draw_scenes_grid, mist_figure, output_figure

__all__ = [
    "GT_COLOR",
    "PRED_COLOR",
    "annotate_image",
    "draw_scenes_grid",
    "mist_figure",
    "output_figure",
    "log_curves",
    "plot_curves",
    "plot_runs",
    "to_rgb",
]
