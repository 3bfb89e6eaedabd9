"""The MIST module: heatmap network, E_K, patch sampler and a shared task network composed.

Test-time path (docs/design.md, The pipeline): ``h = H(I)`` → local spatial softmax → E_K → S → T.
Training does not call :meth:`MIST.forward` end to end (top-K has no gradient);
:mod:`mistnet.engine` uses the parts (:meth:`MIST.log_heatmaps`, :meth:`MIST.detect`,
:meth:`MIST.run_task`) in Algorithm 1's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mistnet.models.baselines import ChannelWiseHeatmap, grid_keypoints
from mistnet.models.heatmap import check_images
from mistnet.models.patch import check_task_net
from mistnet.ops import (
    extract_patches,
    local_spatial_log_softmax,
    local_window_log_mass,
    log_scale_pool,
    nms,
    paste_patches,
    topk_keypoints,
)
from mistnet.ops._checks import (
    check_int,
    check_keypoints,
    check_nonempty,
    check_number,
    check_sides,
    check_tensor,
)


@dataclass
class MISTOutput:
    """What :class:`MIST` returns. Shapes use B images, K patches, S scales, P patch side.

    Attributes:
        heatmap_logits: ``(B, S, H, W)`` raw heatmap scores (``(B, K, H, W)`` for the channel-wise
            baseline, ``None`` for the grid baseline).
        heatmaps: ``(B, S, H, W)`` after the local spatial softmax (per-channel softmax over all
            pixels for the channel-wise baseline, ``None`` for the grid baseline).
        keypoints: ``(B, K, 3)`` detections ``(x, y, side)``, detached, in E_K's order (highest
            heatmap value first).
        scores: ``(B, K)`` each detection's score in [0, 1]: :meth:`MIST.detection_scores`,
            times the largest class probability for a classifier
            (:meth:`PatchModel.finish`).
        patches: ``(B, K, C, P, P)`` extracted patches.
        task: ``(B, K, classes)`` class logits (classification) or ``(B, K, C, P, P)`` decoded
            patches (reconstruction).
        reconstruction: ``(B, C, H, W)`` sum of the pasted decoded patches, or ``None``.
    """

    heatmap_logits: Tensor | None
    heatmaps: Tensor | None
    keypoints: Tensor
    scores: Tensor
    patches: Tensor
    task: Tensor
    reconstruction: Tensor | None = None


@dataclass
class TaskOutput:
    """What :meth:`MIST.run_task` returns at given keypoints.

    Attributes:
        patches: ``(B, K, C, P, P)`` extracted patches (S).
        task: ``(B, K, classes)`` class logits or ``(B, K, C, P, P)`` decoded patches (T).
        reconstruction: ``(B, C, H, W)`` sum of the pasted decoded patches (S^-1), or ``None``
            for classification.
    """

    patches: Tensor
    task: Tensor
    reconstruction: Tensor | None = None


class PatchModel(nn.Module):
    """What MIST and its baselines share: K patches of an image (S), one task network applied to
    each (T) and, for reconstruction, the decoded patches pasted back (S^-1).

    Subclasses say where the K patches are in :meth:`forward`: :class:`MIST` by E_K on its
    heatmaps, :class:`ChannelWiseMIST` by soft-argmax, :class:`GridMIST` by a fixed tiling.
    ``PatchModel`` itself is abstract and cannot be built.

    Args:
        heatmap_net: the network that finds the instances (``nn.Identity`` for a fixed tiling);
            it and ``task_net`` are the two parts the trainer optimises and warm-starts apart.
        task_net: shared across patches; ``(B, K, C, P, P)`` → class logits ``(B, K, classes)``
            or decoded patches ``(B, K, C, P, P)``.
        task: ``"classify"`` or ``"reconstruct"``.
        k: default number of patches K.
        sides: the S box sides in pixels, increasing.
        patch_size: P.
        background: what the reconstruction adds to the sum of patches: ``"none"`` (the paper)
            or ``"median"``, each image's per-channel median intensity as a flat plane
            (:func:`median_background`), so the instances explain what differs from it.

    Raises:
        TypeError: ``PatchModel`` itself (abstract), a network that is no ``nn.Module``, or a
            ``heatmap_net`` of a kind the subclass cannot read.
        ValueError: an unknown ``task`` or ``background``, a :class:`PatchClassifier` as
            ``task_net`` of ``task="reconstruct"`` (a :class:`PatchAutoencoder` of
            ``"classify"``), one of those built for patches of another side than
            ``patch_size`` or for other channels than ``heatmap_net``'s images
            (:func:`~mistnet.models.patch.check_task_net`), or a ``k``, ``sides`` or
            ``patch_size`` out of range.
    """

    def __init__(
        self,
        heatmap_net: nn.Module,
        task_net: nn.Module,
        task: str = "classify",
        k: int = 9,
        sides: tuple[float, ...] = (20.0,),
        patch_size: int = 32,
        background: str = "none",
    ) -> None:
        if type(self) is PatchModel:  # was built; its forward raised NotImplementedError
            raise TypeError(
                "PatchModel is abstract (it does not say where the patches are): build a MIST, "
                "ChannelWiseMIST or GridMIST"
            )
        super().__init__()
        for name, net in (("heatmap_net", heatmap_net), ("task_net", task_net)):
            if not isinstance(net, nn.Module):  # None failed at the first forward
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(net).__name__}")
        self._check_heatmap_net(heatmap_net)
        if task not in ("classify", "reconstruct"):
            raise ValueError(f"task must be 'classify' or 'reconstruct', got {task!r}")
        patch_size = check_int(patch_size, "patch_size", 2)
        check_task_net(task_net, task, patch_size, heatmap_net)
        if background not in ("none", "median"):
            raise ValueError(f"background must be 'none' or 'median', got {background!r}")
        self.heatmap_net = heatmap_net
        self.task_net = task_net
        self.task = task
        self.k = check_int(k, "k")  # what E_K and the sampler refuse at the first forward
        self.sides = tuple(check_sides(sides, torch.device("cpu"), torch.float64).tolist())
        self.patch_size = patch_size
        self.background = background

    def _check_heatmap_net(self, heatmap_net: nn.Module) -> None:
        """Refuse a ``heatmap_net`` of a kind this model cannot read; here any module is taken
        (a subclass that reads its outputs says which it needs).

        Raises:
            TypeError: in a subclass, naming the kind it needs.
        """

    #: Why K is fixed, for a model that always finds its own K (``""``: any ``k`` is taken).
    fixed_k = ""

    def k_problem(self, k: int = 0, per_image_k: bool = False) -> str | None:
        """What is wrong with asking this model for ``k`` detections (0: its K) or for each
        image's own count (``per_image_k``): only a model whose K is fixed refuses."""
        if self.fixed_k and (per_image_k or k not in (0, self.k)):
            asked = "each image's count" if per_image_k else f"k = {k}"
            return (
                f"{type(self).__name__} always finds its K = {self.k} ({self.fixed_k}), not {asked}"
            )
        return None

    def check_input(self, images: object, k: object = None) -> None:
        """Refuse what :meth:`forward` cannot take, with a ``TypeError``/``ValueError`` naming
        it, before torch fails deep inside. Metadata only: no value is read.

        ``k`` is ``None`` or 0 for the model's K, else a positive integer (Python, numpy or a
        0-d tensor); a model whose K is fixed takes only its own (:meth:`k_problem`).

        Raises:
            TypeError, ValueError: ``images`` no ``(B, C, H, W)`` floating tensor on the
                model's device and of its dtype (:func:`~mistnet.models.heatmap.check_images`),
                or a ``k`` this model cannot find.
        """
        check_images(images, self)
        if k is not None and (problem := self.k_problem(check_int(k, "k", 0))):
            raise ValueError(problem)

    def run_task(self, images: Tensor, keypoints: Tensor) -> TaskOutput:
        """S then T (then S^-1 for reconstruction) at ``keypoints`` ``(B, K, 3)``.

        Raises:
            TypeError, ValueError: ``images`` as :meth:`check_input` refuses them, or
                ``keypoints`` no ``(B, K, 3)`` floating tensor of finite boxes.
        """
        self.check_input(images)
        patches = extract_patches(images, keypoints, self.patch_size)  # (B, K, C, P, P)
        out = self.task_net(patches)
        recon = self.reconstruct(images, keypoints, out) if self.task == "reconstruct" else None
        return TaskOutput(patches, out, recon)

    def reconstruct(
        self, images: Tensor, keypoints: Tensor, decoded: Tensor, count: Tensor | None = None
    ) -> Tensor:
        """The reconstruction ``(B, C, H, W)`` of ``images``: the ``decoded`` patches
        ``(B, K, C, P, P)`` pasted at ``keypoints`` and summed (S^-1), plus the background.

        ``count`` ``(B,)``: only each image's first ``count[b]`` patches (its best-scored
        detections), as an image of ``count[b]`` instances is rebuilt (``--per-image-k``).
        """
        if count is not None:
            keep = torch.arange(decoded.shape[1], device=decoded.device) < count[:, None]
            decoded = decoded * keep[:, :, None, None, None].to(decoded.dtype)
        _, _, H, W = images.shape
        recon = paste_patches(decoded, keypoints, H, W)
        if self.background == "median":
            recon = recon + median_background(images)
        return recon

    def finish(
        self,
        images: Tensor,
        keypoints: Tensor,
        scores: Tensor,
        logits: Tensor | None = None,
        heatmaps: Tensor | None = None,
    ) -> MISTOutput:
        """Run the task at ``keypoints`` and gather the outputs.

        A classifier's detection ``scores`` ``(B, K)`` are multiplied by the largest class
        probability of each patch: a box is worth keeping when the heatmap is sure something is
        there *and* the classifier is sure what it is. On scenes where every box sits on ink (a
        digit found twice, or off-centre) the heatmap alone scores false boxes almost as high as
        true ones; the classifier, which was trained on centred instances, is unsure of them.
        """
        t = self.run_task(images, keypoints)
        if self.task == "classify":
            scores = scores * t.task.detach().softmax(-1).amax(-1)
        return MISTOutput(logits, heatmaps, keypoints, scores, t.patches, t.task, t.reconstruction)


def median_background(images: Tensor) -> Tensor:
    """Each image's per-channel median intensity, ``(B, C, H, W)`` images → ``(B, C, 1, 1)``.

    The value most pixels take: the table under the coins, black for MNIST (a scene that is
    mostly black keeps a zero background, so the sum of patches is unchanged), and
    instances covering less than half of the image do not move it. It is not learned and has
    no gradient: the patches must explain everything that differs from it.

    Example:
        >>> median_background(torch.tensor([[[[0.2, 0.2], [0.2, 0.9]]]])).flatten().tolist()
        [0.20000000298023224]
    """
    return images.detach().flatten(2).median(dim=2).values[..., None, None]


class MIST(PatchModel):
    """Multiple Instance Spatial Transformer.

    Args:
        heatmap_net: maps ``(B, C, H, W)`` images to ``(B, S, H, W)`` logits (e.g.
            :class:`~mistnet.models.HeatmapNet`).
        task_net, task, k, sides, patch_size: as :class:`PatchModel`.
        softmax_window, softmax_strength, softmax_eps: local spatial softmax (15, 10, 1e-6 in the
            official code; ``softmax_eps = 0`` is the exact per-window softmax).
        nms_window: NMS window of E_K (5).
        background: as :class:`PatchModel`.

    Raises:
        TypeError: what :class:`PatchModel` refuses, or a
            :class:`~mistnet.models.ChannelWiseHeatmap` as ``heatmap_net`` (its forward gives
            keypoints, not logits: it goes in a :class:`ChannelWiseMIST`).
        ValueError: what :class:`PatchModel` refuses, a ``softmax_window``,
            ``softmax_strength`` (at most the largest number of ``heatmap_net``'s dtype),
            ``softmax_eps`` (in [0, 1)) or ``nms_window`` out of range, or ``sides`` of another
            length than the S scales of a ``heatmap_net`` that has ``num_scales``
            (:class:`~mistnet.models.HeatmapNet`).
    """

    def __init__(
        self,
        heatmap_net: nn.Module,
        task_net: nn.Module,
        task: str = "classify",
        k: int = 9,
        sides: tuple[float, ...] = (20.0,),
        patch_size: int = 32,
        softmax_window: int = 15,
        softmax_strength: float = 10.0,
        softmax_eps: float = 1e-6,
        nms_window: int = 5,
        background: str = "none",
    ) -> None:
        super().__init__(heatmap_net, task_net, task, k, sides, patch_size, background)
        # what the local softmax, E_K and the detection scores refuse at the first forward
        self.softmax_window = check_int(softmax_window, "softmax_window", odd=True)
        # bounded by the heatmap network's dtype (float32 without parameters), as the local
        # softmax bounds it: 1e300 was built and refused at the first forward, as "strength"
        dtype = next((p.dtype for p in heatmap_net.parameters() if p.is_floating_point()), None)
        largest = torch.finfo(dtype or torch.get_default_dtype()).max
        self.softmax_strength = check_number(
            softmax_strength,
            "softmax_strength",
            positive=True,
            high=largest,
            high_text=f"{largest:g} (the largest {dtype or torch.get_default_dtype()})",
        )
        scales = getattr(heatmap_net, "num_scales", None)  # HeatmapNet's S
        if isinstance(scales, int) and scales != len(self.sides):  # E_K failed at the first forward
            raise ValueError(
                f"sides has {len(self.sides)} entries but heatmap_net has S={scales} scales "
                "(one side per scale)"
            )
        self.softmax_eps = check_number(softmax_eps, "softmax_eps", positive=False)
        if self.softmax_eps >= 1:  # 1e300 scored every detection 0; the config's bound
            raise ValueError(f"softmax_eps must be in [0, 1), got {softmax_eps!r}")
        window = self.softmax_window  # the NMS box lies in the softmax window
        self.nms_window = check_int(
            nms_window, "nms_window", 1, window, odd=True, high_text=f"softmax_window={window}"
        )

    def _check_heatmap_net(self, heatmap_net: nn.Module) -> None:
        """Refuse a :class:`~mistnet.models.ChannelWiseHeatmap`: its forward gives K keypoints
        ``(B, K, 3)``, not the ``(B, S, H, W)`` logits E_K reads. Before, the first forward
        failed in the local softmax ("logits must have shape (B, S, H, W), got (1, 2, 3)"),
        naming an argument the caller never passed.

        Raises:
            TypeError: saying to build a :class:`ChannelWiseMIST` with it.
        """
        if isinstance(heatmap_net, ChannelWiseHeatmap):
            raise TypeError(
                "MIST needs a heatmap_net of (B, S, H, W) logits such as HeatmapNet, got a "
                "ChannelWiseHeatmap (whose forward gives K keypoints): build a ChannelWiseMIST "
                "with it"
            )

    def log_heatmaps(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Raw logits and the log of the spatial-softmax heatmaps, both ``(B, S, H, W)``.

        The heatmaps are kept in the log domain for E_K and the heatmap loss: a window far below
        the image's highest logit would otherwise underflow to exactly 0 (see
        :func:`~mistnet.ops.local_spatial_log_softmax`).

        Raises:
            TypeError, ValueError: ``images`` as :meth:`check_input` refuses them.
        """
        self.check_input(images)
        logits = self.heatmap_net(images)
        log_h = local_spatial_log_softmax(
            logits, self.softmax_window, self.softmax_strength, self.softmax_eps
        )
        return logits, log_h

    def detect(self, log_heatmaps: Tensor, k: int | None = None) -> tuple[Tensor, Tensor]:
        """E_K on ``(B, S, H, W)`` log-heatmaps: keypoints ``(B, K, 3)`` and scores ``(B, K)``
        (``k`` None or 0: the model's K).

        Raises:
            ValueError: ``log_heatmaps`` no ``(B, S, H, W)`` floating tensor with H, W >= 1
                and one channel per side (metadata only: training calls it every step), or a
                ``k`` E_K refuses.
        """
        expected = "(B, S, H, W)"  # E_K would name its own argument, h (a list: no "detach")
        h = check_tensor(log_heatmaps, "log_heatmaps", 4, expected)
        check_nonempty(h, "log_heatmaps", expected, "S, H, W")
        if h.shape[1] != len(self.sides):
            raise ValueError(
                f"log_heatmaps must have S={len(self.sides)} channels (one per side), shape "
                f"{expected}, got {tuple(h.shape)}"
            )
        return topk_keypoints(h.detach(), k or self.k, self.sides, self.nms_window, log=True)

    def detection_scores(self, logits: Tensor, keypoints: Tensor) -> Tensor:
        """The score of each detection: the heatmap's mass inside its NMS window, in [0, 1].

        E_K ranks detections by the heatmap at one pixel, which the local spatial softmax makes
        small wherever a peak is blurred over a few pixels (as on photographs), whatever the
        evidence. The mass that the peak's softmax window puts inside its NMS window
        (:func:`~mistnet.ops.local_window_log_mass`, scales pooled as E_K pools them) counts the
        whole peak: about 1 for a clear instance, ``nms_window² / softmax_window²`` on a flat
        patch, about 0 far below the image's strongest response. Training never reads it.

        Args:
            logits: ``(B, S, H, W)`` raw heatmap logits.
            keypoints: ``(B, K, 3)`` E_K's detections (integer pixel positions; any other
                position takes the score of its nearest pixel of the map).

        Returns:
            ``(B, K)`` scores.

        Raises:
            ValueError: ``logits`` no ``(B, S, H, W)`` floating tensor, or ``keypoints`` no
                ``(B, K, 3)`` floating tensor of finite boxes of their batch and device (values
                read here, not in :meth:`forward`, whose keypoints E_K made).
        """
        logits = check_tensor(logits, "logits", 4, "(B, S, H, W)")
        # NaN: an index out of bounds in gather; fewer images than the logits': taken silently
        keypoints = check_keypoints(keypoints, batch=logits.shape[0], batch_of="the logits")
        if keypoints.device != logits.device:  # gather's RuntimeError
            raise ValueError(f"keypoints are on {keypoints.device} but logits on {logits.device}")
        return self._detection_scores(logits, keypoints)

    @torch.no_grad()
    def _detection_scores(self, logits: Tensor, keypoints: Tensor) -> Tensor:
        """:meth:`detection_scores` of checked arguments (E_K's keypoints: no value is read)."""
        _, _, H, W = logits.shape
        log_m = local_window_log_mass(
            logits, self.nms_window, self.softmax_window, self.softmax_strength, self.softmax_eps
        )
        pooled = log_scale_pool(log_m).flatten(1)  # (B, H*W)
        return pooled.gather(1, _pixel_index(keypoints, H, W)).exp().clamp(0, 1)

    def forward(self, images: Tensor, k: int | None = None) -> MISTOutput:
        """Detect ``k`` instances (None or 0: the model's K) in ``images`` ``(B, C, H, W)`` and
        run the task network on them."""
        self.check_input(images, k)
        logits, log_h = self.log_heatmaps(images)
        keypoints, _ = self.detect(log_h, k)
        scores = self._detection_scores(logits, keypoints)  # E_K's keypoints: none to check
        scores = scores * self._maxima(log_h, keypoints).to(scores.dtype)  # NaN stays NaN
        return self.finish(images, keypoints, scores, logits, log_h.exp())

    @torch.no_grad()
    def _maxima(self, log_heatmaps: Tensor, keypoints: Tensor) -> Tensor:
        """``(B, K)`` True where a detection is a maximum of E_K's suppression (a filler's
        score is 0, so it comes after every maximum and any ``min_score`` drops it): an image
        of fewer than K maxima fills the slots with suppressed pixels
        (:func:`~mistnet.ops.topk_keypoints`), often a peak's neighbour, whose window mass is
        about the peak's own; scored by it, the neighbour ranked above true peaks."""
        _, _, H, W = log_heatmaps.shape
        peak = torch.isfinite(nms(log_scale_pool(log_heatmaps), self.nms_window)).flatten(1)
        return peak.gather(1, _pixel_index(keypoints, H, W))


def _pixel_index(keypoints: Tensor, H: int, W: int) -> Tensor:
    """``(B, K)`` the index in a flattened ``H x W`` map of each keypoint's nearest pixel."""
    x = torch.floor(keypoints[..., 0] + 0.5).clamp(0, W - 1).long()
    y = torch.floor(keypoints[..., 1] + 0.5).clamp(0, H - 1).long()
    return y * W + x


class ChannelWiseMIST(MIST):
    """The channel-wise baseline (docs/design.md): K heatmap channels, soft-argmax, end to end.

    ``heatmap_net`` is a :class:`~mistnet.models.ChannelWiseHeatmap`; its keypoints are
    differentiable, so the baseline trains by plain backpropagation through S (and S^-1).

    Args:
        heatmap_net: a :class:`~mistnet.models.ChannelWiseHeatmap` of K channels.
        k: K, that of ``heatmap_net`` (None: taken from it).
        task_net, task: as :class:`MIST`.
        options: the other arguments of :class:`MIST` by name (``sides``, ``patch_size``, ...).

    Raises:
        TypeError: what :class:`MIST` refuses, or a ``heatmap_net`` that is no
            :class:`~mistnet.models.ChannelWiseHeatmap` (a :class:`~mistnet.models.HeatmapNet`
            goes in a :class:`MIST`).
        ValueError: what :class:`MIST` refuses, or a ``k`` other than ``heatmap_net``'s K.
    """

    fixed_k = "one heatmap channel per instance"

    def __init__(
        self,
        heatmap_net: nn.Module,
        task_net: nn.Module,
        task: str = "classify",
        k: int | None = None,
        **options: Any,
    ) -> None:
        if k is None and isinstance(heatmap_net, ChannelWiseHeatmap):
            k = heatmap_net.k  # else refused by _check_heatmap_net before k is read
        super().__init__(heatmap_net, task_net, task, k, **options)
        if self.k != heatmap_net.k:  # was taken: model.k said 3, every forward found 2
            raise ValueError(
                f"k={self.k} but heatmap_net has K={heatmap_net.k} channels (one per keypoint); "
                f"pass k={heatmap_net.k} or a ChannelWiseHeatmap of k={self.k}"
            )

    def _check_heatmap_net(self, heatmap_net: nn.Module) -> None:
        """Refuse a ``heatmap_net`` that is no :class:`~mistnet.models.ChannelWiseHeatmap`, whose
        ``logits``, ``keypoints`` and ``temperature`` the forward reads. Before, a
        :class:`~mistnet.models.HeatmapNet` was taken and the first forward raised
        AttributeError ("'HeatmapNet' object has no attribute 'logits'").

        Raises:
            TypeError: naming the class given.
        """
        if not isinstance(heatmap_net, ChannelWiseHeatmap):
            raise TypeError(
                "ChannelWiseMIST needs a ChannelWiseHeatmap as heatmap_net (one soft-argmax "
                f"channel per keypoint), got a {type(heatmap_net).__name__}; a heatmap network "
                "of (B, S, H, W) logits such as HeatmapNet goes in a MIST"
            )

    def heatmaps(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.heatmap_net.logits(images)  # (B, K, H, W)
        probs = torch.softmax(logits.flatten(2) / self.heatmap_net.temperature, -1)
        return logits, probs.view_as(logits)

    def forward(self, images: Tensor, k: int | None = None) -> MISTOutput:
        """The K soft-argmax keypoints (``k``, if given, must be K: one channel each)."""
        self.check_input(images, k)
        logits, h = self.heatmaps(images)
        keypoints = self.heatmap_net.keypoints(logits)  # (B, K, 3), differentiable
        scores = h.flatten(2).amax(-1)  # (B, K)
        return self.finish(images, keypoints, scores, logits, h)


class GridMIST(PatchModel):
    """The grid baseline (docs/design.md): the same task network on a fixed ``rows x cols`` tiling.

    The tiling is computed from each input's size (:func:`~mistnet.models.grid_keypoints`), so
    the baseline tiles any image with square cells. It has no heatmap and no detector: its
    ``heatmap_net`` is empty, and its outputs carry no heatmaps.

    Args:
        task_net, task, sides, patch_size, background: as :class:`PatchModel`; K is
            ``rows * cols``.
        rows, cols: the tiling.

    Raises:
        TypeError, ValueError: what :class:`PatchModel` refuses, or ``rows`` or ``cols`` no
            integer >= 1.
    """

    fixed_k = "the cells of its tiling"

    def __init__(
        self,
        task_net: nn.Module,
        rows: int = 3,
        cols: int = 3,
        task: str = "classify",
        sides: tuple[float, ...] = (20.0,),
        patch_size: int = 32,
        background: str = "none",
    ) -> None:
        rows, cols = check_int(rows, "rows"), check_int(cols, "cols")  # not named k; 2.5 taken
        super().__init__(nn.Identity(), task_net, task, rows * cols, sides, patch_size, background)
        self.rows, self.cols = rows, cols

    def keypoints(self, images: Tensor) -> Tensor:
        """The tiling of ``images`` ``(B, C, H, W)`` as keypoints ``(B, rows·cols, 3)``.

        Raises:
            ValueError: more cells than the images have pixels (as :class:`MIST` refuses a
                ``k`` beyond ``H*W``), or a tiling :func:`~mistnet.models.grid_keypoints`
                refuses (cells that are not square).
        """
        B, _, H, W = images.shape
        if self.k > H * W:  # 1000×1000 cells of a 40×40 image: torch's allocator, for 65 GB
            raise ValueError(
                f"rows={self.rows}, cols={self.cols}: {self.k:,} cells, more than the "
                f"H*W={H * W} pixels of the images; lower rows and cols"
            )
        grid = grid_keypoints(H, W, self.rows, self.cols, device=images.device, dtype=images.dtype)
        return grid.expand(B, -1, -1)

    def forward(self, images: Tensor, k: int | None = None) -> MISTOutput:
        """The task network on every cell of the tiling (``k``, if given, must be K).

        Raises:
            TypeError, ValueError: ``images`` as :meth:`check_input` refuses them, a ``k``
                other than K, a tiling :meth:`keypoints` refuses, or patches (and the task
                network's maps of them) that would not fit in memory
                (:func:`~mistnet.ops.extract_patches`, :class:`~mistnet.models.PatchEncoder`).
        """
        self.check_input(images, k)
        keypoints = self.keypoints(images)
        scores = torch.ones(keypoints.shape[:2], device=images.device, dtype=images.dtype)
        return self.finish(images, keypoints, scores)
