"""The numbers the paper reports, transcribed once, for the tables ``mist reproduce`` writes.

Source: the ICLR 2020 submission "MIST: Multiple Instance Spatial Transformers" (arXiv:1811.10725 is
the later version), read from the text of its PDF. Tables 1–3 sit side by side on page 7, Table 4 on
page 8. Percentages are stored as fractions (97.8% -> 0.978) so they compare directly with
:func:`mistnet.engine.evaluate`'s output; RMSE is stored as printed. Keys: table -> experiment ->
metric -> value, where the metric names are those of :mod:`mistnet.metrics`.
"""

from __future__ import annotations

PAPER: dict[str, dict[str, dict[str, float]]] = {
    # Table 1, "Reconstruction error (root mean square error)", p. 7. Columns MIST, Grid,
    # Ch.-wise, Esl16 (AIR, Eslami et al. 2015), Zha18 (Zhang et al. 2018c).
    #   MNIST easy  .038  .039  .042  .100  .169
    #   MNIST hard  .053  .062  .128  .154  .191
    "table1": {
        "mnist-easy-mist": {"rmse": 0.038},
        "mnist-easy-grid": {"rmse": 0.039},
        "mnist-easy-channelwise": {"rmse": 0.042},
        "mnist-easy-air": {"rmse": 0.100},
        "mnist-easy-zhang": {"rmse": 0.169},
        "mnist-hard-mist": {"rmse": 0.053},
        "mnist-hard-grid": {"rmse": 0.062},
        "mnist-hard-channelwise": {"rmse": 0.128},
        "mnist-hard-air": {"rmse": 0.154},
        "mnist-hard-zhang": {"rmse": 0.191},
    },
    # Table 1, row "Gabor", p. 7: MIST .095; the other columns are "-". The paper reports no
    # localisation number (Fig. 4 only marks correct / erroneous detections).
    "gabor": {
        "gabor-mist": {"rmse": 0.095},
    },
    # Table 2, "Instance level detection and classification performance on MNIST hard", p. 7.
    #                MIST   Ch.-wise  Supervised
    #   IOU 50%      97.8%  25.4%     99.6%
    #   Classif.     98.8%  75.5%     98.7%
    #   Both         97.5%  24.8%     98.6%
    "table2": {
        "mist": {"det_iou50": 0.978, "classif": 0.988, "both": 0.975},
        "channelwise": {"det_iou50": 0.254, "classif": 0.755, "both": 0.248},
        "supervised": {"det_iou50": 0.996, "classif": 0.987, "both": 0.986},
    },
    # Table 3, "Sensitivity experiment of K on the MNIST hard dataset", p. 7: AP_IoU=.50 by the
    # instances per image during training ({9}, {6,7,8,9}, {3,...,9}; the extraction garbles the
    # last as "{3, 45 6,7,8 9}"). Tested with the ground-truth K.
    "table3": {
        "k9": {"ap50": 0.922},
        "k6to9": {"ap50": 0.901},
        "k3to9": {"ap50": 0.908},
    },
    # Table 4, "Quantitative SVHN results", p. 8.
    #                MIST   Supervised
    #   AP_IoU=.00   82.6%  65.6%
    #   AP_IoU=.50   76.5%  62.8%
    #   AP_IoU=.60   63.7%  59.8%
    #   AP_IoU=.70   42.7%  51.9%
    #   AP_IoU=.80   19.9%  34.6%
    #   AP_IoU=.90    4.2%  11.0%
    "table4": {
        "mist": {
            "ap00": 0.826,
            "ap50": 0.765,
            "ap60": 0.637,
            "ap70": 0.427,
            "ap80": 0.199,
            "ap90": 0.042,
        },
        "supervised": {
            "ap00": 0.656,
            "ap50": 0.628,
            "ap60": 0.598,
            "ap70": 0.519,
            "ap80": 0.346,
            "ap90": 0.110,
        },
    },
}
