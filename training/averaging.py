"""Checkpoint averaging: the element-wise mean of the model weights of several checkpoints of one run.

The weights of the last checkpoints of a run, taken a few hundred steps apart while the learning rate decays, lie
around a minimum; their mean usually sits closer to it than any one of them (Polyak averaging; the checkpoint
averaging of fairseq and ESPnet; Izmailov et al. 2018). Floating-point tensors are averaged, integer ones (batch
norm's ``num_batches_tracked``) are taken from the newest checkpoint. Pruned weights stay pruned: the newest
checkpoint's masks are applied to the mean, so a weight zero in it is zero in the average.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch


def average_checkpoints(checkpoints: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The newest of ``checkpoints`` (by step) with ``model`` replaced by the mean of all their models.

    Optimizer, scheduler and sampler states are dropped: an average is for evaluation and export, not for resuming.
    Raises ValueError when the checkpoints are not of one model (different tensor names or shapes).
    """
    if not checkpoints:
        raise ValueError("no checkpoints to average")
    newest = max(checkpoints, key=lambda c: c["step"])
    names = list(newest["model"])
    for checkpoint in checkpoints:
        model = checkpoint["model"]
        if list(model) != names or any(model[n].shape != newest["model"][n].shape for n in names):
            raise ValueError(f"{checkpoint.get('path', 'a checkpoint')}: not the same model as "
                             f"{newest.get('path', 'the newest checkpoint')} (tensor names or shapes differ)")
    averaged = OrderedDict()
    for name in names:
        tensors = [checkpoint["model"][name] for checkpoint in checkpoints]
        if tensors[0].is_floating_point():
            averaged[name] = torch.stack([t.double() for t in tensors]).mean(dim=0).to(tensors[0].dtype)
        else:
            averaged[name] = newest["model"][name].clone()
    for name, mask in newest.get("pruning", {}).get("masks", {}).items():
        averaged[name] = averaged[name] * mask.to(averaged[name].dtype)
    dropped = ("optimizer", "scheduler", "scaler", "sampler", "rng", "path")
    return {**{k: v for k, v in newest.items() if k not in dropped}, "model": averaged,
            "averaged_from": [{"path": c.get("path"), "step": c["step"]} for c in checkpoints]}
