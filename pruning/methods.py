"""The pruning methods: each pairs a schedule (pruning/schedule.py) with a criterion (pruning/criterion.py)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

from pruning.calibration import threshold_scale
from pruning.criterion import (
    block_scores, expand_block_mask, kth_smallest, magnitude_scores, smallest_masks, threshold_mask,
)
from pruning.groups import PrunedTensor
from pruning.pruner import Pruner
from pruning.schedule import (
    agp_due, agp_sparsity, check_agp, check_gradual, check_hard, gradual_due, gradual_threshold, hard_due,
    last_gradual_update,
)

log = logging.getLogger(__name__)


class GradualPruner(Pruner):
    """Narang et al. 2017, Algorithm 1: ``mask = |W| > eps(itr)`` at update steps, eps ramping linearly.

    q (hence theta and phi) is calibrated once per unit (see ``Pruner.chunks``): from a dense checkpoint when
    ``calibrate`` is called at build time (``q_from``), else from the model's own weights at the first step
    >= start_itr.
    """

    method = "gradual"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calibration: dict[str, dict[str, float]] = {}

    def _check_steps(self) -> None:
        check_gradual(self.steps)

    def _scores(self, t: PrunedTensor, weight: torch.Tensor) -> torch.Tensor:
        return magnitude_scores(weight)

    def _to_weight_mask(self, t: PrunedTensor, mask: torch.Tensor) -> torch.Tensor:
        return mask

    def calibrate(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Derive and log q, theta, phi (and the final threshold) per unit from ``weights`` (name -> tensor)."""
        last = last_gradual_update(self.steps)
        for chunk in self.chunks():
            settings = self.settings[chunk[0].group]
            scale = threshold_scale([self._scores(t, weights[t.name]) for t in chunk], settings, self.steps)
            final = gradual_threshold(last, scale["theta"], scale["phi"], self.steps)
            for t in chunk:
                self.calibration[t.name] = dict(scale)
                log.info("pruning %s [%s] %s: q=%.6g theta=%.6g phi=%.6g, final threshold %.6g at step %d",
                         self.method, t.group, t.name, scale["q"], scale["theta"], scale["phi"], final, last)

    def _prepare(self, step: int) -> None:
        if not self.calibration and step >= self.steps.start:
            self.calibrate({t.name: t.param for t in self.tensors})

    def _due(self, step: int) -> bool:
        return gradual_due(step, self.steps)

    def _compute(self, step: int) -> dict[str, tuple[torch.Tensor, float]]:
        out = {}
        for t in self.tensors:
            scale = self.calibration[t.name]
            eps = gradual_threshold(step, scale["theta"], scale["phi"], self.steps)
            out[t.name] = (self._to_weight_mask(t, threshold_mask(self._scores(t, t.param), eps)), eps)
        return out

    def _extra_state(self) -> dict[str, Any]:
        return {"calibration": {name: dict(scale) for name, scale in self.calibration.items()}}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.calibration = {name: dict(scale) for name, scale in state["calibration"].items()}


class BlockPruner(GradualPruner):
    """Block-sparse RNNs (Narang, Undersander, Diamos 2017): Algorithm 1's threshold against each block's max
    |w|; a block below it is zeroed whole. q is a percentile of block maxima, so targets count blocks."""

    method = "block"

    def _scores(self, t: PrunedTensor, weight: torch.Tensor) -> torch.Tensor:
        return block_scores(weight, self.settings[t.group].block)

    def _to_weight_mask(self, t: PrunedTensor, mask: torch.Tensor) -> torch.Tensor:
        return expand_block_mask(mask, t.param.shape, self.settings[t.group].block)


class AgpPruner(Pruner):
    """Zhu & Gupta 2017: magnitude pruning to exactly s_t (cubic in t) every freq steps from start to end."""

    method = "agp"

    def _target(self, step: int, group: str) -> float:
        settings = self.settings[group]
        return agp_sparsity(step, settings.initial_sparsity, settings.target_sparsity, self.steps)

    def _check_steps(self) -> None:
        check_agp(self.steps)

    def _due(self, step: int) -> bool:
        return agp_due(step, self.steps)

    def _compute(self, step: int) -> dict[str, tuple[torch.Tensor, float]]:
        out = {}
        for chunk in self.chunks():
            sparsity = self._target(step, chunk[0].group)
            scores = [magnitude_scores(t.param) for t in chunk]
            cutoff = kth_smallest(scores, sparsity)
            out.update({t.name: (mask, cutoff) for t, mask in zip(chunk, smallest_masks(scores, sparsity))})
        return out


class HardPruner(AgpPruner):
    """The paper's hard-pruning baseline: at step ``start`` prune each unit to exactly its target sparsity
    (smallest |w| first), then keep the masks fixed."""

    method = "hard"

    def _target(self, step: int, group: str) -> float:
        return self.settings[group].target_sparsity

    def _check_steps(self) -> None:
        check_hard(self.steps)

    def _due(self, step: int) -> bool:
        return hard_due(step, self.steps)
