"""What ``mist reproduce`` runs: the budgets (as data) and the experiments of each table.

A :class:`Row` is one training run of the paper (a preset plus the overrides that make it that
experiment) and how to evaluate it. A :class:`Budget` says how big everything is: scenes per
split, minutes per run, and the overrides (and, for classification, the preset) that shrink the
paper's configuration. The config of a run is always::

    preset = budget.presets.get(row.kind, row.preset)
    overrides = budget overrides for row.kind + row.overrides + data path and seeds

so a row's overrides must carry everything that distinguishes it from its kind's default
(method, dataset, K, channels, scales, output), because the ``cpu`` budget swaps the preset of
every classification row for ``mnist-hard-cpu`` and of every auto-encoder for
``mnist-hard-recon-cpu``, and the ``smoke`` budget the classification rows' for
``mnist-hard-cpu``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mistnet.errors import MistError

TABLE_NAMES: tuple[str, ...] = ("table1", "gabor", "table2", "table3", "table4")


@dataclass(frozen=True)
class Budget:
    """How big one reproduction is.

    Attributes:
        name: ``smoke``, ``cpu`` or ``full``.
        description: one line for TABLE.md.
        sizes: scenes per split by data key (``"*"`` for every other key).
        minutes: ``max_minutes`` of each run by table (``"*"`` default; 0 = no limit).
        presets: the preset that replaces the row's own, by row kind.
        overrides: config overrides by row kind (``"*"`` for every kind), applied before the
            row's own overrides.
        figure_scenes: test scenes drawn per figure.
        steps_per_minute: by row kind, the step rate that sets ``train.steps`` of a run from
            its minutes, so that a run's step count does not depend on machine load; the
            minutes stay a cap. Kinds without a rate keep their preset's steps.
        threads: torch threads per run (0: torch's default); speed, and the last bits of
            the sums.
    """

    name: str
    description: str
    sizes: dict[str, dict[str, int]]
    minutes: dict[str, float]
    presets: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    figure_scenes: int = 4
    steps_per_minute: dict[str, float] = field(default_factory=dict)
    threads: int = 0

    def run_steps(self, kind: str, minutes: float) -> int:
        """``train.steps`` for a run of ``kind`` given ``minutes`` (0 = keep the preset's)."""
        rate = self.steps_per_minute.get(kind, 0.0)
        return max(1, round(rate * minutes)) if rate > 0 and minutes > 0 else 0

    def split_sizes(self, data: str) -> dict[str, int]:
        return dict(self.sizes.get(data, self.sizes["*"]))

    def run_minutes(self, table: str) -> float:
        return float(self.minutes.get(table, self.minutes.get("*", 0.0)))

    def overrides_for(self, kind: str) -> list[str]:
        return [*self.overrides.get("*", ()), *self.overrides.get(kind, ())]


# Tiny networks of configs/tiny-cpu.toml and a handful of steps: every code path, no learning.
_SMOKE_NETS = (
    "model.heatmap_width=8",
    "model.heatmap_depth=2",
    "model.heatmap_dilations=[1, 2]",
    "model.patch_size=16",
    "model.patch_base_width=4",
    "model.patch_levels=2",
    "model.patch_blocks=1",
)
_SMOKE_TRAIN = (
    "train.batch_size=8",
    "train.steps=4",
    "train.log_every=1",
    "train.val_every=2",
    "train.ckpt_every=2",
)
_CPU_ALL = ("train.val_every=100", "train.ckpt_every=100")

BUDGETS: dict[str, Budget] = {
    "smoke": Budget(
        name="smoke",
        description="tiny data (64/16/32 scenes), tiny networks, 4 steps per run: checks that "
        "every path runs, learns nothing",
        sizes={"*": {"train": 64, "val": 16, "test": 32}},
        minutes={"*": 0.5},
        presets={"classify": "mnist-hard-cpu"},
        overrides={"*": _SMOKE_NETS + _SMOKE_TRAIN},
        figure_scenes=2,
        threads=1,
    ),
    "cpu": Budget(
        name="cpu",
        description="small networks for 2 CPU cores (classification: preset mnist-hard-cpu, "
        "whose recipe departs from the paper's: Hungarian set loss instead of eq. 9, a "
        "centre-of-mass prior (mixture form) in the x-step (off for SVHN), the local-softmax NLL "
        "heatmap loss, an 11x11 NMS window, a moving average of the weights; auto-encoders: "
        "preset mnist-hard-recon-cpu, the same recipe with pixel-aligned 22 px boxes sampled "
        "by 23 x 23 patches), 20k/300/500 scenes (Gabor 8k train; SVHN: its own splits); "
        "tables 2 and 3 train each model 3,000 steps (at most 20 minutes), table 1 about 7 "
        "minutes per run (45 in all), the others about 20 minutes per table",
        sizes={
            "*": {"train": 20_000, "val": 300, "test": 500},
            "gabor": {"train": 8_000, "val": 300, "test": 500},  # float32 scenes: 4x the bytes
        },
        # Gabor and table 4: runs x minutes (+ data, evaluation, figures) stays under ~20
        # minutes. Table 1: six auto-encoders of ~7 minutes (an aligned-patch step costs
        # ~1.4 s on 2 threads, so MIST gets ~400 steps). Tables 2 and 3: 20 minutes per run,
        # each table under 2 hours; the demo's validation flattens from ~2,000 steps
        # (RESULTS.md: "the late collapse" and "the long horizon").
        minutes={"table1": 7.0, "gabor": 15.0, "table2": 20.0, "table3": 20.0, "table4": 7.0},
        presets={"classify": "mnist-hard-cpu", "reconstruct": "mnist-hard-recon-cpu"},
        overrides={"*": _CPU_ALL},
        figure_scenes=4,
        # A step count rather than the clock ends each classification run (so that a result does
        # not depend on machine load): 150 steps a minute is what two idle threads of the first
        # development machine did (the second does ~270; one thread of a busy one ~80), so a
        # table 2 run is 3,000 steps; the minutes stay a cap.
        steps_per_minute={"classify": 150.0},
        threads=2,
    ),
    "full": Budget(
        name="full",
        description="the paper presets and schedules, 50k/5k/10k scenes; for a GPU",
        sizes={"*": {"train": 50_000, "val": 5_000, "test": 10_000}},
        minutes={"*": 0.0},
        figure_scenes=4,
    ),
}


@dataclass(frozen=True)
class Eval:
    """A further evaluation of a run: the test split of another dataset, with its own label."""

    name: str
    data: str
    label: str = ""


@dataclass(frozen=True)
class Row:
    """One experiment of a table: a training run and its evaluations.

    Attributes:
        key: directory name and key into :data:`~mistnet.reproduce.paper.PAPER`.
        label: shown in TABLE.md.
        preset: the paper's preset (the ``full`` budget uses it unchanged).
        kind: ``reconstruct`` or ``classify`` (selects the budget's preset and overrides).
        data: data key of the training set (a generator name, ``mnist-hard-official`` or
            ``svhn``).
        overrides: what makes this row its experiment, on top of any preset of its kind.
        per_image_k: evaluate with each image's ground-truth count as K (Table 3).
        extra: extra metrics from a second pass: ``svhn_ap`` (AP at the Table 4 IoU
            thresholds) or ``impulses`` (Gabor impulses found within 3 px).
        evals: further evaluations (other test sets) besides the run's own test split.
        time_share: this run's ``max_minutes`` as a multiple of the budget's minutes per run
            of its table (the shares of a table's runs average 1).
    """

    key: str
    label: str
    preset: str
    kind: str
    data: str
    overrides: tuple[str, ...] = ()
    per_image_k: bool = False
    extra: str = ""
    evals: tuple[Eval, ...] = ()
    time_share: float = 1.0

    def all_evals(self) -> tuple[Eval, ...]:
        return (Eval("test", self.data), *self.evals)


@dataclass(frozen=True)
class PaperOnly:
    """A row of the paper that we do not run (external baselines); printed with its number."""

    key: str
    label: str


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    source: str
    metrics: tuple[str, ...]
    rows: tuple[Row | PaperOnly, ...]
    notes: tuple[str, ...] = ()

    def runs(self) -> list[Row]:
        return [r for r in self.rows if isinstance(r, Row)]


def _table1_rows(dataset: str, name: str) -> tuple[Row | PaperOnly, ...]:
    # The grid baseline trains only tau (a step costs a fifth of MIST's) and converges first:
    # part of its time goes to MIST.
    recon = f"{dataset}-recon"
    return (
        Row(
            f"{dataset}-mist",
            f"{name} · MIST",
            recon,
            "reconstruct",
            dataset,
            (f"data.name={dataset}",),
            time_share=1.4,
        ),
        Row(
            f"{dataset}-grid",
            f"{name} · Grid",
            "mnist-easy-grid",
            "reconstruct",
            dataset,
            ("train.method=grid", f"data.name={dataset}"),
            time_share=0.6,
        ),
        Row(
            f"{dataset}-channelwise",
            f"{name} · Ch.-wise",
            recon,
            "reconstruct",
            dataset,
            ("train.method=channelwise", f"data.name={dataset}"),
        ),
        PaperOnly(f"{dataset}-air", f"{name} · Esl16 (AIR)"),
        PaperOnly(f"{dataset}-zhang", f"{name} · Zha18"),
    )


# SVHN digits sit on textured backgrounds: the centre-of-mass prior of mnist-hard-cpu (which the
# cpu budget uses for every classification row) does not hold there, so it is switched off.
_SVHN = (
    "model.in_channels=3",
    "model.k=2",
    "model.factors=[0.5]",
    "train.select_metric=ap50",
    "train.centre_weight=0",
)
_UNEVEN = "MIST · uneven layout: trained on the left band, tested on the"

TABLES: dict[str, Table] = {
    "table1": Table(
        name="table1",
        title="Table 1: reconstruction RMSE on MNIST easy and hard (lower is better)",
        source="Table 1 of the paper (p. 7)",
        metrics=("rmse",),
        rows=_table1_rows("mnist-easy", "MNIST easy") + _table1_rows("mnist-hard", "MNIST hard"),
        notes=(
            "MIST is the auto-encoder of eq. 8 trained by Algorithm 1; Grid applies the same "
            "auto-encoder to a fixed 3 x 3 tiling; Ch.-wise replaces the heatmap by K soft-argmax "
            "channels trained end to end.",
            "Esl16 (AIR) and Zha18 are external TensorFlow baselines that we do not run "
            "here; their rows show the paper's numbers only.",
            "RMSE: per-image RMSE of the unclipped reconstruction, averaged over the test split. "
            "The Gabor row of Table 1 is in gabor.md.",
        ),
    ),
    "gabor": Table(
        name="gabor",
        title="Gabor noise: MIST auto-encoding of a procedural texture (Table 1 row, Fig. 4)",
        source="Table 1 of the paper, row Gabor (p. 7), and Fig. 4",
        metrics=("rmse", "impulses_found", "impulses_found_image_maxima"),
        rows=(
            Row(
                "gabor-mist",
                "Gabor · MIST",
                "gabor-recon",
                "reconstruct",
                "gabor",
                ("model.k=20", "model.output=signed", "data.name=gabor"),
                extra="impulses",
            ),
        ),
        notes=(
            "RMSE of the signed texture divided by 2 (the RMSE after mapping [-1, 1] to [0, 1]).",
            "Impulses found: fraction of the 20 Gabor impulses per image with a detection within "
            "3 px, one detection per impulse (greedy, nearest first). The paper gives no number, "
            "only Fig. 4.",
            "Reference without learning: the same fraction for the 20 highest local maxima of the "
            "texture itself (5 x 5 NMS on the image). A kernel peaks at its impulse, so this is "
            "the number the learned detector has to beat.",
        ),
    ),
    "table2": Table(
        name="table2",
        title="Table 2: instance-level detection and classification on MNIST hard",
        source="Table 2 of the paper (p. 7); the last four rows go beyond the paper",
        metrics=("det_iou50", "classif", "both"),
        rows=(
            Row("mist", "MIST", "mnist-hard-classify", "classify", "mnist-hard"),
            Row(
                "channelwise",
                "Ch.-wise",
                "mnist-hard-channelwise",
                "classify",
                "mnist-hard",
                ("train.method=channelwise",),
            ),
            Row(
                "supervised",
                "Supervised",
                "mnist-hard-supervised",
                "classify",
                "mnist-hard",
                ("train.method=supervised",),
            ),
            Row(
                "official-layout",
                "MIST · official MIST layout (exported and imported back)",
                "mnist-hard-classify",
                "classify",
                "mnist-hard-official",
            ),
            Row(
                "uneven",
                f"{_UNEVEN} left band",
                "mnist-hard-classify",
                "classify",
                "mnist-hard-left",
                evals=(
                    Eval("right", "mnist-hard-right", f"{_UNEVEN} right band (unseen)"),
                    Eval("even", "mnist-hard", f"{_UNEVEN} even layout"),
                ),
            ),
        ),
        notes=(
            "IoU 50%: class-agnostic one-to-one matches with IoU > 0.5 per instance; Classif.: "
            "bag-level label-multiset accuracy (class 0 counted); Both: class-aware one-to-one "
            "matches per instance. K = 9.",
            "Official layout: the MNIST-hard data of the MIST row written in the official code's "
            "layout (PNGs, labels, half-side keypoints) with `mist data export-official`, read "
            "back with `import-official`, and trained on.",
            "Uneven layout (App. E, Fig. 8): the 9 digits of every training scene sit in the "
            "left band x in [10, 45] (minimum distance 12 px). Tested on that band, on its "
            "mirror image (x in [35, 70], never seen with digits) and on the even layout: the "
            "fully convolutional detector cannot learn absolute positions.",
        ),
    ),
    "table3": Table(
        name="table3",
        title="Table 3: sensitivity to K on MNIST hard (tested with the ground-truth K)",
        source="Table 3 of the paper (p. 7)",
        metrics=("ap50",),
        rows=(
            Row(
                "k9",
                "{9} (train K = 9)",
                "mnist-hard-classify",
                "classify",
                "mnist-hard",
                ("model.k=9",),
                per_image_k=True,
            ),
            Row(
                "k6to9",
                "{6,7,8,9} (train K = 7)",
                "mnist-hard-classify",
                "classify",
                "mnist-hard-6to9",
                ("model.k=7",),
                per_image_k=True,
            ),
            Row(
                "k3to9",
                "{3,...,9} (train K = 6)",
                "mnist-hard-classify",
                "classify",
                "mnist-hard-3to9",
                ("model.k=6",),
                per_image_k=True,
            ),
        ),
        notes=(
            "Rows: the instances per training image (uniform over the set) and the fixed K used "
            "in training (9, 7, 6). Test scenes have the same count distribution and "
            "each is evaluated with K = its ground-truth count.",
            "AP IoU=.50: mean over test images of the class-aware one-to-one matches (IoU > "
            "0.5) divided by K of the image.",
        ),
    ),
    "table4": Table(
        name="table4",
        title="Table 4: SVHN, 2-digit house numbers at 60 x 240",
        source="Table 4 of the paper (p. 8)",
        metrics=("ap00", "ap50", "ap60", "ap70", "ap80", "ap90"),
        rows=(
            Row("mist", "MIST", "svhn-classify", "classify", "svhn", _SVHN, extra="svhn_ap"),
            Row(
                "supervised",
                "Supervised",
                "svhn-classify",
                "classify",
                "svhn",
                (*_SVHN, "train.method=supervised"),
                extra="svhn_ap",
            ),
        ),
        notes=(
            "AP IoU=.X: mean over the filtered 2-digit test images of the class-aware one-to-one "
            "matches with IoU > X divided by K = 2; at IoU=.00 the label-multiset overlap / 2, "
            "boxes ignored. Boxes: 40 px squares against the SVHN rectangles.",
        ),
    ),
}


def get_budget(name: str) -> Budget:
    """The budget ``name`` (``smoke``, ``cpu`` or ``full``).

    Raises:
        TypeError: ``name`` is no string (a list raised "unhashable type: 'list'").
        MistError: no such budget.
    """
    if not isinstance(name, str):
        raise TypeError(f"budget must be a budget name ({', '.join(BUDGETS)}), got {name!r}")
    if name not in BUDGETS:
        raise MistError(f"unknown budget {name!r}; choose from {', '.join(BUDGETS)}")
    return BUDGETS[name]


def get_tables(name: str) -> list[Table]:
    """The tables of ``name`` (one table, or all of them for ``all``).

    Raises:
        TypeError: ``name`` is no string (a list of tables is not taken: one name or ``all``).
        MistError: no such table.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"table must be one table name ({', '.join(TABLE_NAMES)}) or all, got {name!r}"
        )
    if name == "all":
        return [TABLES[t] for t in TABLE_NAMES]
    if name not in TABLES:
        raise MistError(f"unknown table {name!r}; choose from {', '.join(TABLE_NAMES)} or all")
    return [TABLES[name]]
