"""The threshold scale q of Eq. 1 and the slopes theta and phi derived from it.

Three sources of q, per group:
- ``q`` given explicitly in the config;
- the ``q_percentile`` (90) percentile of the scores (|w|, or block max |w|) of reference weights: those of a
  trained dense checkpoint (``q_from``, the paper) or, by default, the model's own weights when pruning starts
  (a deviation from the paper: no dense run needed);
- ``target_sparsity``: q is solved so that the final threshold equals that quantile of the reference scores
  (exactly, via ``schedule.q_for_final_threshold``), so the final sparsity equals the target if the weight
  distribution does not move (a deviation from the paper's "about 90%").
"""
from __future__ import annotations

import torch

from pruning.criterion import kth_smallest
from pruning.groups import GroupSettings, PrunedTensor
from pruning.schedule import ScheduleSteps, eq1_theta, q_for_final_threshold


def threshold_scale(scores: list[torch.Tensor], settings: GroupSettings, steps: ScheduleSteps) -> dict[str, float]:
    """{"q", "theta", "phi"} for one unit (a tensor, or a pooled group): theta by Eq. 1, phi = m * theta."""
    if settings.q is not None:
        q = settings.q
    elif settings.target_sparsity is not None:
        final = kth_smallest(scores, settings.target_sparsity)
        q = q_for_final_threshold(final, settings.ramp_multiple, steps)
    else:
        q = kth_smallest(scores, settings.q_percentile / 100)
    theta = eq1_theta(q, steps)
    return {"q": q, "theta": theta, "phi": settings.ramp_multiple * theta}


def load_reference_weights(path: str, tensors: list[PrunedTensor]) -> dict[str, torch.Tensor]:
    """The pruned tensors' weights in a dense checkpoint (project format: ``torch.load(path)["model"]``)."""
    state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    missing = [t.name for t in tensors if t.name not in state]
    if missing:
        raise ValueError(f"q_from checkpoint {path} lacks the pruned tensors {missing}")
    for t in tensors:
        if state[t.name].shape != t.param.shape:
            raise ValueError(f"q_from checkpoint {path}: {t.name} has shape {tuple(state[t.name].shape)}, "
                             f"the model {tuple(t.param.shape)}")
    return {t.name: state[t.name] for t in tensors}
