"""Configs written by older versions of mistnet (a run's ``config.json``, a TOML preset), read
into the current keys: :func:`upgrade`, which :mod:`mistnet.config` applies to every file it reads.
"""

from __future__ import annotations

from typing import Any

from mistnet.errors import MistError

# Keys that older versions wrote into a run's config.json, with the values under which dropping
# them keeps the run's behaviour (options that were removed or merged into others).
_RETIRED = {
    "x_noise": 0.0,
    "target_sigma": 0.0,
    "weighting": "image",
    "lr_schedule": "constant",
    "stage_order": "paper",
}


# Keys renamed to say what they are (old name: new name): "k" is the instance count of model.k,
# so the x-step's keypoint keys say "keypoints"; lambda and the centring weight say what they
# weigh.
RENAMED = {
    "lr_k": "lr_keypoints",
    "k_iter": "keypoint_iters",
    "lam": "proximal_weight",
    "x_centre": "centre_weight",
}

# What training records from the data; older versions kept it in the model section.
_RECORDED = ("image_size", "class_names")


def upgrade(data: dict[str, Any], source: str, *, recorded: bool = True) -> dict[str, Any]:
    """Rewrite a config written by an older version (a run's ``config.json``, a TOML preset)
    into the current keys; ``source`` names it in errors.

    ``recorded``: a config an older version wrote (a run's ``config.json``), whose run-time
    options are dropped; else a file a user wrote (a TOML preset), which is told where they
    went.

    Raises:
        MistError: an old and a new name of one key, a retired key at another value than the
            one dropping it keeps, two different losses, or a run-time option or a recorded
            value (``model.image_size``) in a file that is not ``recorded``.
    """
    if not isinstance(data.get("train", {}), dict):
        return data  # from_dict refuses it
    model = data.get("model")
    if isinstance(model, dict) and "record" not in data and any(k in model for k in _RECORDED):
        if not recorded:  # else "unknown config section 'record'", a section not written
            key = next(k for k in _RECORDED if k in model)
            raise MistError(
                f"{source}: model.{key} is what training records from the data "
                f"(record.{key} of a run's config.json), not a setting; leave it out"
            )
        record = {key: model[key] for key in _RECORDED if key in model}
        model = {key: value for key, value in model.items() if key not in _RECORDED}
        data = {**data, "model": model, "record": record}
    train = dict(data.get("train", {}))
    for old, new in RENAMED.items():
        if old in train:
            if new in train:
                raise MistError(f"{source}: train.{old} is the old name of train.{new}; give one")
            train[new] = train.pop(old)
    for key, neutral in _RETIRED.items():
        if key in train and train.pop(key) != neutral:
            raise MistError(
                f"{source}: train.{key} was removed from mistnet; this run used a value other "
                f"than {neutral!r} and cannot be rebuilt"
            )
    train.pop("lr_final", None)  # only read by the cosine schedule, retired above
    # a user's file is told: dropped, a preset's threads = 1 would silently run on all cores
    if "threads" in train and not recorded:
        raise MistError(
            f"{source}: train.threads is now a run-time option: mist train --threads N "
            "(mistnet.fit(threads=N))"
        )
    train.pop("threads", None)  # a run-time option now (mist train --threads)
    if "task_loss" in train or "x_loss" in train:
        if "class_loss" in train:  # the old name's value took its place without a word
            old = "task_loss" if "task_loss" in train else "x_loss"
            raise MistError(f"{source}: train.{old} is the old name of train.class_loss; give one")
        loss = train.pop("task_loss", "eq9")
        if train.pop("x_loss", loss) != loss:
            raise MistError(f"{source}: different task and x-step losses are no longer supported")
        if loss != "recon":
            train["class_loss"] = loss
    return {**data, "train": train} if "train" in data else data
