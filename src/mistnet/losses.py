"""Losses (docs/design.md, The pipeline): reconstruction (eq. 8), multi-instance classification (eq.
9), a set classification loss, and the heatmap loss (eq. 7) with its optional per-image task weight.

Every loss takes ``reduction="mean"`` (a scalar: the batch mean of the per-image losses) or
``reduction="none"`` (the per-image losses, shape ``(B,)``), so the engine can both optimise and
log per-image values. Labels follow the data convention: ``(B, L)`` int64 class ids padded with
−1 where an image has fewer than L instances.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from mistnet.metrics.matching import check_labels, require_tensor
from mistnet.ops._checks import check_nonempty, check_number, check_tensor, require_real

__all__ = [
    "centring_loss",
    "heatmap_loss",
    "heatmap_nll_loss",
    "mixture_centring_loss",
    "multi_instance_loss",
    "reconstruction_loss",
    "set_classification_loss",
    "set_patch_costs",
    "task_weight",
]

_REDUCTIONS = ("mean", "none")


def _reduce(per_image: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_image.mean()
    return per_image


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _input(x: object, name: str, expected: str, nonempty: str = "B") -> Tensor:
    """``x`` if it is a floating tensor of shape ``expected`` whose ``nonempty`` dimensions are
    not empty: TypeError for no tensor (a list), ValueError for an integer dtype, another rank
    or an empty batch (whose mean was NaN). Metadata only."""
    require_tensor(x, name, expected)
    check_tensor(x, name, expected.count(",") + 1, expected)
    return check_nonempty(x, name, expected, nonempty)


def _check_logits_labels(logits: Tensor, labels: Tensor) -> None:
    _input(logits, "logits", "(B, K, C)", "B, K, C")
    require_tensor(labels, "labels", "(B, L)")
    if labels.dim() != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must have shape (B, L) with B = {logits.shape[0]}, got {tuple(labels.shape)}"
        )
    if labels.dtype != torch.int64:
        raise ValueError(f"labels must be an int64 tensor, got {labels.dtype}")
    C = logits.shape[2]
    count = (labels >= 0).sum(dim=1)  # (B,)
    # One host sync for the checks; all are data errors that would otherwise pass silently.
    if bool((count == 0).any() | (labels >= C).any() | (labels < -1).any()):
        check_labels(labels, "labels")  # -5 was taken as padding, as the metrics refuse it
        if bool((labels >= C).any()):
            raise ValueError(
                f"labels must lie in [0, {C}) or be -1 padding, got {labels.max().item()}"
            )
        empty = torch.nonzero(count == 0).flatten().tolist()
        raise ValueError(f"labels: every image needs at least one label; images {empty} have none")


def reconstruction_loss(images: Tensor, reconstruction: Tensor, reduction: str = "mean") -> Tensor:
    r"""Eq. 8: squared error summed over pixels and channels per image, then the batch mean.

    L(I) = ‖I − Î‖²₂ with Î = Σ_k S⁻¹(AE(S(I, x_k)), x_k) the composed reconstruction.

    Args:
        images: ``(B, C, H, W)`` targets.
        reconstruction: ``(B, C, H, W)`` reconstructions (gradients flow into it).
        reduction: ``"mean"`` → scalar batch mean; ``"none"`` → ``(B,)`` per-image sums.

    Example:
        >>> reconstruction_loss(torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2))
        tensor(4.)
    """
    _check_reduction(reduction)
    _input(images, "images", "(B, C, H, W)")
    _input(reconstruction, "reconstruction", "(B, C, H, W)")
    if reconstruction.shape != images.shape:
        raise ValueError(
            f"reconstruction must have the shape of images {tuple(images.shape)}, "
            f"got {tuple(reconstruction.shape)}"
        )
    per_image = (images - reconstruction).pow(2).sum(dim=(1, 2, 3))  # (B,)
    return _reduce(per_image, reduction)


def multi_instance_loss(
    logits: Tensor,
    labels: Tensor,
    reduction: str = "mean",
    patch_mask: Tensor | None = None,
    scale: float = 1.0,
) -> Tensor:
    r"""Eq. 9: squared distance between the label histogram and the mean patch prediction.

    Per image, with p_k = softmax(logits_k) and y_l the one-hot label of instance l:

        L = scale · ‖ (1/L)·Σ_l y_l − (1/K)·Σ_k p_k ‖²₂

    Labels are a multiset (repeats allowed) and L need not equal K. ``scale=1`` is the paper's
    eq. 9; the official code has ``scale=0.5``. Both vectors lie on the probability simplex, so
    0 ≤ L ≤ 2·scale, the maximum reached when predictions and labels are one-hot on different
    classes. The loss is invariant to the order of patches and of labels.

    Args:
        logits: ``(B, K, C)`` raw patch class scores.
        labels: ``(B, L)`` int64 class ids in [0, C), padded with −1. Every image needs ≥ 1 label.
        reduction: ``"mean"`` → scalar batch mean; ``"none"`` → ``(B,)``.
        patch_mask: optional ``(B, K)`` bool, True for patches that count (per-image K); every
            image needs ≥ 1 patch. ``None`` uses all K.
        scale: constant factor (1 = paper, 0.5 = official code), a finite number > 0.

    Example:
        >>> logits = torch.tensor([[[20.0, 0.0], [0.0, 20.0]]])
        >>> multi_instance_loss(logits, torch.tensor([[1, 0]])) < 1e-6
        tensor(True)
    """
    _check_reduction(reduction)
    scale = check_number(scale, "scale", positive=True)  # NaN gave a NaN loss
    _check_logits_labels(logits, labels)
    B, K, C = logits.shape
    valid = labels >= 0  # (B, L)
    onehot = F.one_hot(labels.clamp(min=0), C).to(logits.dtype)  # (B, L, C)
    onehot = onehot * valid.unsqueeze(-1)
    target = onehot.sum(dim=1) / valid.sum(dim=1, keepdim=True).to(logits.dtype)  # (B, C)

    probs = torch.softmax(logits, dim=-1)  # (B, K, C)
    if patch_mask is None:
        prediction = probs.mean(dim=1)  # (B, C)
    else:
        require_tensor(patch_mask, "patch_mask", "(B, K)")
        if patch_mask.shape != (B, K) or patch_mask.dtype != torch.bool:
            raise ValueError(
                f"patch_mask must be a bool tensor of shape (B, K) = {(B, K)}, "
                f"got {patch_mask.dtype} {tuple(patch_mask.shape)}"
            )
        n_patches = patch_mask.sum(dim=1, keepdim=True)  # (B, 1)
        if bool((n_patches == 0).any()):
            raise ValueError("patch_mask: every image needs at least one patch")
        weights = patch_mask.to(logits.dtype).unsqueeze(-1)  # (B, K, 1)
        prediction = (probs * weights).sum(dim=1) / n_patches.to(logits.dtype)  # (B, C)

    per_image = scale * (target - prediction).pow(2).sum(dim=-1)  # (B,)
    return _reduce(per_image, reduction)


def set_patch_costs(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    r"""Per-patch cross-entropy under the best one-to-one patch/label assignment.

    Per image, the cost of giving patch k label l is −log p_k(y_l). The assignment minimising
    the total cost (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``) is computed on
    the detached costs; the returned costs are differentiable w.r.t. ``logits`` (the assignment
    itself is piecewise constant). With K > L only L patches are matched; with K < L only K
    labels are.

    The assignment runs per image on the CPU with numpy, which costs a device-to-host copy of the
    ``(B, K, L)`` cost matrix and a Python loop over the batch; fine for MIST's B ≤ 64, K, L ≤ 10.

    Args:
        logits: ``(B, K, C)`` raw patch class scores.
        labels: ``(B, L)`` int64 class ids in [0, C), padded with −1. Every image needs ≥ 1 label.

    Returns:
        ``costs`` ``(B, K)`` (0 for unmatched patches) and ``matched`` ``(B, K)`` bool.
    """
    _check_logits_labels(logits, labels)
    B, K, C = logits.shape
    L = labels.shape[1]
    log_probs = torch.log_softmax(logits, dim=-1)  # (B, K, C)
    index = labels.clamp(min=0).unsqueeze(1).expand(B, K, L)  # (B, K, L)
    cost = -log_probs.gather(2, index)  # (B, K, L): cost[b, k, l] = −log p_k(y_l)

    cost_np = cost.detach().float().cpu().numpy()  # numpy has no bfloat16
    if np.isnan(cost_np).any():  # scipy's "matrix contains invalid numeric entries"
        raise ValueError("logits contains NaN or infinite values")
    # A probability of 0 (float16 logits 1e5 apart) costs +inf: kept the largest for scipy,
    # which calls a matrix with a row of infinities infeasible.
    cost_np = np.minimum(cost_np, np.finfo(np.float32).max)
    valid_np = (labels >= 0).cpu().numpy()
    label_of = np.full((B, K), -1, dtype=np.int64)  # matched label column per patch
    for b in range(B):  # Hungarian matching has no batched form; B is small
        columns = np.flatnonzero(valid_np[b])
        rows, cols = linear_sum_assignment(cost_np[b][:, columns])
        label_of[b, rows] = columns[cols]
    label_t = torch.from_numpy(label_of).to(logits.device)  # (B, K)
    matched = label_t >= 0
    costs = cost.gather(2, label_t.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, K)
    return costs * matched, matched


def set_classification_loss(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    r"""Cross-entropy of patches against labels under the best one-to-one assignment.

    The mean of :func:`set_patch_costs` over the matched pairs of each image. It is invariant to
    the order of patches and of labels. Unequal counts: with K > L the K − L unmatched patches
    contribute nothing (they are free to detect anything); with K < L only K labels are matched.
    The normaliser is the number of matched pairs min(K, L_b).

    Args:
        logits: ``(B, K, C)`` raw patch class scores.
        labels: ``(B, L)`` int64 class ids in [0, C), padded with −1. Every image needs ≥ 1 label.
        reduction: ``"mean"`` → scalar batch mean; ``"none"`` → ``(B,)``.

    Example:
        >>> logits = torch.tensor([[[0.0, 9.0], [9.0, 0.0]]])
        >>> round(set_classification_loss(logits, torch.tensor([[0, 1]])).item(), 4)
        0.0001
    """
    _check_reduction(reduction)
    costs, matched = set_patch_costs(logits, labels)
    per_image = costs.sum(1) / matched.sum(1).to(costs.dtype)  # (B,)
    return _reduce(per_image, reduction)


def heatmap_loss(
    heatmaps: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Eq. 7: squared error between the heatmaps and the ideal (detached) target heatmaps.

    Per image, the mean over S×H×W of (H_η(I) − G({x_k}))², multiplied by the optional
    per-image weight w_b (detached; see :func:`task_weight`), then the batch mean. Gradients flow
    only into ``heatmaps``.

    Args:
        heatmaps: ``(B, S, H, W)`` post-spatial-softmax multi-scale heatmaps h.
        target: ``(B, S, H, W)`` target heatmaps G({x_k}); detached here.
        weight: optional ``(B,)`` per-image weights; detached here. ``None`` = all ones.
        reduction: ``"mean"`` → scalar batch mean; ``"none"`` → ``(B,)``.

    Raises:
        ValueError: a bad shape or dtype, or a bool or complex ``weight`` (``"weight: expected
            real numbers (a floating or integer tensor), got torch.bool"``). The weight's values
            (negative, NaN) are not read: that would wait for the GPU every step.

    Example:
        >>> heatmap_loss(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.tensor([0.5]))
        tensor(0.5000)
    """
    _check_heatmap_pair(heatmaps, target, reduction)
    per_image = (heatmaps - target.detach()).pow(2).mean(dim=(1, 2, 3))  # (B,)
    return _weighted(per_image, weight, reduction)


def _check_heatmap_pair(
    heatmaps: Tensor, target: Tensor, reduction: str, name: str = "heatmaps"
) -> None:
    """Metadata checks of a loss's heatmaps (the argument ``name``) and their target."""
    _check_reduction(reduction)
    _input(heatmaps, name, "(B, S, H, W)", "B, S, H, W")
    require_tensor(target, "target", "(B, S, H, W)")
    if not target.is_floating_point():  # a bool mask failed inside torch's subtraction
        raise ValueError(f"target must be a floating-point tensor, got {target.dtype}")
    if target.shape != heatmaps.shape:
        raise ValueError(
            f"target must have the shape of {name} {tuple(heatmaps.shape)}, "
            f"got {tuple(target.shape)}"
        )


def _weighted(per_image: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    """Multiply per-image losses by a detached ``(B,)`` weight, then reduce.

    Only the weight's type and shape are checked: its values (>= 0, as :func:`task_weight` makes
    them) would cost a host sync every training step. A NaN weight gives a NaN loss, which the
    trainer reports as divergence.
    """
    if weight is not None:
        require_real(require_tensor(weight, "weight", "(B,)"), "weight")  # True was 1
        if weight.shape != per_image.shape:
            raise ValueError(
                f"weight must have shape (B,) = {tuple(per_image.shape)}, got {tuple(weight.shape)}"
            )
        per_image = per_image * weight.detach()
    return _reduce(per_image, reduction)


def heatmap_nll_loss(
    log_heatmaps: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
    eps: float = 0.0,
) -> Tensor:
    r"""Negative log-likelihood of the target keypoints under the local spatial softmax.

    Per image, ``-sum_u T(u) log(h(u) + eps) / sum_u T(u)``, a term 0 wherever ``T(u) = 0`` (even
    where ``h(u) = 0``): the spatial-softmax output ``h`` is a
    distribution over each 15 x 15 window, and this is its cross-entropy against G's unit spikes.
    It has the same minimiser as eq. 7 (a peak of 1 at each keypoint) but its gradient does not
    vanish while ``h`` is still flat, so the heatmap network learns several times faster on a CPU
    budget (benchmarks/RESULTS.md). Not in the paper; eq. 7 stays the default.

    It takes ``log h`` (:func:`mistnet.ops.local_spatial_log_softmax`), so nothing underflows;
    ``eps > 0`` computes ``-log(h + eps)`` as ``-logaddexp(log h, log eps)``, which bounds each
    target's loss by ``-log eps`` and lets a target with ``h << eps`` fade out of the gradient.
    With the official softmax (its eps relative to the image's highest logit) the exact form
    pulls a window far below the strongest one at full strength however far below it lies, and
    the saturating form lets it fade until the loop collapses; with the exact per-window softmax
    (``model.softmax_eps = 0``, the cpu presets) neither happens, since ``h`` then depends only
    on the target's own window (benchmarks/RESULTS.md, "the late collapse was float underflow in
    E_K").

    Args:
        log_heatmaps: ``(B, S, H, W)`` log spatial-softmax responses.
        target: ``(B, S, H, W)`` detached target from :func:`mistnet.ops.render_heatmap`.
        weight: optional ``(B,)`` per-image weight (detached).
        reduction: ``"mean"`` or ``"none"``.
        eps: added to ``h`` inside the log (0, the default: the exact log-likelihood), a finite
            number >= 0.

    Raises:
        TypeError: ``log_heatmaps``, ``target`` or ``weight`` is no tensor.
        ValueError: a bad shape or dtype, an empty dimension, a ``reduction`` other than
            ``"mean"`` or ``"none"``, or an ``eps`` that is no finite number >= 0. The values of
            ``target`` (>= 0, as :func:`~mistnet.ops.render_heatmap` makes them) and ``weight``
            are not checked: that would cost a host sync every training step.
    """
    _check_heatmap_pair(log_heatmaps, target, reduction, "log_heatmaps")
    eps = check_number(eps, "eps", positive=False)  # NaN, -1 were ignored; True gave a loss < 0
    t = target.detach()
    mass = t.sum(dim=(1, 2, 3)).clamp(min=torch.finfo(t.dtype).eps)  # (B,)
    log_h = log_heatmaps
    if eps > 0:
        log_h = torch.logaddexp(log_h, torch.full_like(log_h, math.log(eps)))
    # 0 where the target is 0 (xlogy's rule): a pixel of h = 0 (log -inf) off the targets gave
    # 0 * -inf = NaN; chosen by the target, no value is read
    terms = torch.where(t != 0, t * log_h, torch.zeros((), dtype=log_h.dtype, device=t.device))
    per_image = -terms.sum(dim=(1, 2, 3)) / mass
    return _weighted(per_image, weight, reduction)


def _window_sigma(sigma: object) -> float:
    """A centring window's std, in sides: a number in [1e-6, 1e6] (0 and 1e-30 gave NaN
    once squared in float32, 1e200 an OverflowError)."""
    sigma = check_number(sigma, "sigma", positive=True)
    if not 1e-6 <= sigma <= 1e6:
        raise ValueError(f"sigma must be a window of 1e-6 to 1e6 sides, got {sigma!r}")
    return sigma


def centring_loss(patches: Tensor, sides: Tensor, sigma: float = 0.4) -> Tensor:
    r"""Squared distance (px²) between each patch's centre and its weighted centre of mass.

    Not in the paper: an optional prior for the x-step (``train.centre_weight``) that an instance is
    centred on its mass, as MNIST digits (centred by centre of mass in their frame) and Gabor
    kernels are. The mass of a sample is ``|patch|`` summed over channels times a Gaussian window
    of std ``sigma`` (in units of the side) around the patch centre, which keeps neighbours' ink
    from dominating. Gradients reach the keypoints through the sampler, as in mean shift.

    Args:
        patches: ``(B, K, C, P, P)`` patches from :func:`mistnet.ops.extract_patches`.
        sides: ``(B, K)`` box sides in image pixels.
        sigma: window std as a fraction of the side, a finite number > 0.

    Returns:
        ``(B,)`` the mean over K of the squared offsets, in pixels² (0 for a patch of one
        sample, which sits at the centre).

    Raises:
        TypeError: ``patches`` or ``sides`` is no tensor.
        ValueError: a bad shape or dtype (bool ``sides``: ``"sides: expected real numbers ..."``),
            an empty B, K or P, or a ``sigma`` out of range. Values are not read (every step).

    Example:
        >>> p = torch.zeros(1, 1, 1, 5, 5); p[..., 2, 4] = 1.0  # all mass at the right edge
        >>> centring_loss(p, torch.tensor([[8.0]]))  # 4 px off centre
        tensor([16.])
    """
    sigma = _window_sigma(sigma)
    _input(patches, "patches", "(B, K, C, P, P)", "B, K")  # K = 0 gave NaN, integers a wrong 0
    check_nonempty(patches, "patches", "(B, K, C, P, P)", "P")  # P = 0: a loss 0 of no sample
    require_real(require_tensor(sides, "sides", "(B, K)"), "sides")  # True was a side of 1 px
    if patches.shape[-1] != patches.shape[-2]:
        raise ValueError(f"patches must have shape (B, K, C, P, P), got {tuple(patches.shape)}")
    if sides.shape != patches.shape[:2]:
        raise ValueError(
            f"sides must have shape (B, K) = {tuple(patches.shape[:2])}, got {tuple(sides.shape)}"
        )
    P = patches.shape[-1]
    u = torch.linspace(-0.5, 0.5, P, device=patches.device, dtype=patches.dtype)  # (P,)
    if P == 1:  # one sample, at the centre: linspace gave it -1/2 (a loss of side² / 2)
        u = torch.zeros_like(u)
    window = torch.exp(-((u[:, None] / sigma) ** 2 + (u[None, :] / sigma) ** 2) / 2)  # (P, P)
    mass = patches.abs().sum(2) * window  # (B, K, P, P)
    total = mass.sum((-2, -1)).clamp(min=1e-6)  # (B, K)
    cx = (mass * u[None, :]).sum((-2, -1)) / total  # (B, K), x runs along the last axis
    cy = (mass * u[:, None]).sum((-2, -1)) / total
    return ((cx**2 + cy**2) * sides**2).mean(1)


def mixture_centring_loss(images: Tensor, keypoints: Tensor, sigma: float = 0.25) -> Tensor:
    r"""Squared distance (px²) from each keypoint to the centre of mass of the ink it explains.

    Not in the paper: a variant of :func:`centring_loss` for crowded images (``train.centre_mode
    = "mixture"``), the E-step of EM for a Gaussian mixture. Each keypoint k has a Gaussian window
    ``w_k(p)`` of std ``sigma * side_k`` over the whole image; pixel p's ink ``|I(p)|`` (summed
    over channels) is shared among the keypoints by the responsibilities
    ``r_k(p) = w_k(p) / sum_j w_j(p)``, and the loss is ``|x_k - c_k|²`` with ``c_k`` the
    responsibility-weighted centre of mass (held fixed, so the gradient is the mean-shift / M-step
    direction ``2 (x_k - c_k)``). Ink that no keypoint is near is claimed by the nearest one, and
    two keypoints started between two blobs split onto them. Use narrow windows (about 0.25 of
    the side): windows as wide as the spacing of the instances let the responsibilities leak, and
    two keypoints can merge between two blobs (benchmarks/RESULTS.md). Hard assignment removes the
    leak on hand-made blobs but trained worse on MNIST-hard.

    Args:
        images: ``(B, C, H, W)`` images.
        keypoints: ``(B, K, 3)`` as ``(x, y, side)`` in pixels.
        sigma: window std as a fraction of the side, a finite number > 0.

    Returns:
        ``(B,)`` the mean over K of the squared offsets, in pixels². A keypoint of side 0 gets
        the narrowest window (its variance the dtype's smallest normal): it claims at most its
        own pixel, and the other keypoints' terms stay finite.

    Raises:
        TypeError: ``images`` or ``keypoints`` is no tensor.
        ValueError: a bad shape or dtype (bool ``keypoints``: ``"keypoints: expected real
            numbers ..."``), no keypoint, or a ``sigma`` out of range. Values are not read
            (it runs every step): NaN keypoints give a NaN loss.

    Example:
        >>> img = torch.zeros(1, 1, 9, 40); img[0, 0, 4, 3] = 1.0; img[0, 0, 4, 35] = 1.0
        >>> kp = torch.tensor([[[4.0, 4.0, 10.0], [33.0, 4.0, 10.0]]])  # 1 px and 2 px off
        >>> mixture_centring_loss(img, kp).round(decimals=2)
        tensor([2.5000])
    """
    sigma = _window_sigma(sigma)
    _input(images, "images", "(B, C, H, W)")
    # bool: torch's "Subtraction, the `-` operator, with a bool tensor is not supported"
    require_real(require_tensor(keypoints, "keypoints", "(B, K, 3)"), "keypoints")
    B, _, H, W = images.shape
    if keypoints.dim() != 3 or keypoints.shape[0] != B or keypoints.shape[-1] != 3:
        raise ValueError(f"keypoints must have shape ({B}, K, 3), got {tuple(keypoints.shape)}")
    if keypoints.shape[1] == 0:  # the mean over no keypoint was NaN
        raise ValueError(f"keypoints must have shape ({B}, K, 3) with K >= 1, got {B, 0, 3}")
    with torch.no_grad():
        ink = images.abs().sum(1)  # (B, H, W)
        kp = keypoints.detach()
        s2 = 2 * (sigma * kp[..., 2:3]) ** 2  # (B, K, 1)
        # a side of 0 (values are not read: this runs every step) gave 0 / 0 = NaN windows,
        # which wiped the other keypoints' terms; the narrowest window claims its own pixel
        s2 = s2.clamp(min=torch.finfo(s2.dtype).tiny)
        xs = torch.arange(W, device=images.device, dtype=images.dtype)
        ys = torch.arange(H, device=images.device, dtype=images.dtype)
        # Log-windows, separable in x and y; responsibilities by a softmax over the K keypoints.
        lx = -((xs - kp[..., 0:1]) ** 2) / s2  # (B, K, W)
        ly = -((ys - kp[..., 1:2]) ** 2) / s2  # (B, K, H)
        resp = torch.softmax(ly[..., :, None] + lx[..., None, :], dim=1)  # (B, K, H, W)
        mass = resp * ink[:, None]
        total = mass.sum((-2, -1)).clamp(min=1e-6)  # (B, K)
        cx = (mass.sum(-2) * xs).sum(-1) / total
        cy = (mass.sum(-1) * ys).sum(-1) / total
        centre = torch.stack([cx, cy], -1)  # (B, K, 2)
        # A keypoint that explains no ink stays where it is.
        centre = torch.where((total > 1e-6)[..., None], centre, kp[..., :2])
    return (keypoints[..., :2] - centre).pow(2).sum(-1).mean(1)


def task_weight(per_image_task_loss: Tensor, beta: float = 5.0) -> Tensor:
    r"""Per-image heatmap-loss weight w_b = exp(−β·L_task,b), detached (docs/design.md).

    Images whose patches already explain the task well (low loss) weigh more when the heatmap
    network regresses to their keypoints. Meant for eq. 9 losses in [0, 2]; with eq. 8's
    per-image sums it would be ~0 everywhere.

    Args:
        per_image_task_loss: ``(B,)`` per-image task losses.
        beta: sharpness β (5 in the official code), a finite number >= 0 (0: every weight 1).

    Returns:
        ``(B,)`` weights in (0, 1] for non-negative losses, without gradient.

    Raises:
        TypeError: ``per_image_task_loss`` is no tensor.
        ValueError: a ``beta`` that is no finite number >= 0, or a loss that is no floating
            ``(B,)`` tensor (``"per_image_task_loss must be a floating-point tensor of shape
            (B,), got torch.int64 of shape (2,)"``). Its values (NaN, negative) are not read: that
            would wait for the GPU every step.
    """
    beta = check_number(beta, "beta", positive=False)  # NaN gave NaN weights, < 0 inverted them
    loss = require_tensor(per_image_task_loss, "per_image_task_loss", "(B,)")
    if loss.ndim != 1 or not loss.is_floating_point():  # (B, K) or counts: not per-image losses
        raise ValueError(
            "per_image_task_loss must be a floating-point tensor of shape (B,), "
            f"got {loss.dtype} of shape {tuple(loss.shape)}"
        )
    return torch.exp(-beta * loss.detach())
