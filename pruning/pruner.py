"""The object that owns the masks: ``Pruner`` (shared machinery) and ``NoPruner`` (the dense baseline).

Masks are boolean tensors held by the pruner, never by the model: the model's parameters and state_dict keys
stay as they are (no ``torch.nn.utils.prune``, no parametrizations), so nn.GRU/nn.LSTM flat weights keep
working and dense code loads pruned checkpoints strictly. Masks are applied in place after every optimizer step.
Subclasses (pruning/methods.py) say when masks are due (schedule) and compute them (criterion).
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Optional

import torch

from pruning.groups import GroupSettings, PrunedTensor
from pruning.schedule import ScheduleSteps


class Pruner:
    """Owns one boolean keep-mask per pruned tensor, its threshold and the history of mask updates.

    Call ``step(step)`` right after every ``optimizer.step()`` with the number of optimizer steps completed.
    Gradients are not masked (a pruned weight can come back at the next update, as in the paper) unless
    ``freeze_pruned``, which masks gradients with hooks. Masks live on the parameters' devices: build the
    pruner after moving the model. ``scope`` is "tensor" (percentiles and exact-sparsity cut-offs per tensor)
    or "group" (pooled over all tensors of a group, which then share one threshold).
    """

    method = "base"

    def __init__(self, tensors: list[PrunedTensor], settings: dict[str, GroupSettings],
                 steps: Optional[ScheduleSteps], *, scope: str = "tensor", freeze_pruned: bool = False) -> None:
        if scope not in ("tensor", "group"):
            raise ValueError(f"pruning scope must be 'tensor' or 'group', got {scope!r}")
        self.tensors, self.settings, self.steps, self.scope = tensors, settings, steps, scope
        self._check_steps()
        self.masks = {t.name: torch.ones_like(t.param, dtype=torch.bool) for t in tensors}
        self.thresholds = {t.name: 0.0 for t in tensors}
        self.history: list[dict[str, Any]] = []
        self._hooks = [t.param.register_hook(lambda grad, mask=self.masks[t.name]: grad * mask)
                       for t in tensors] if freeze_pruned else []

    # ------------------------------------------------------------------ what subclasses provide
    def _check_steps(self) -> None:
        """Reject a schedule this method cannot run (raises ValueError)."""

    def _due(self, step: int) -> bool:
        """Whether masks are recomputed at ``step`` (a schedule function)."""
        raise NotImplementedError

    def _compute(self, step: int) -> dict[str, tuple[torch.Tensor, float]]:
        """New (keep-mask, threshold) per tensor name, from the current weights."""
        raise NotImplementedError

    def _prepare(self, step: int) -> None:
        """Called at every step before ``_due`` (e.g. calibration when pruning starts)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``_extra_state`` saved."""

    # ------------------------------------------------------------------ public interface
    def step(self, step: int) -> bool:
        """Recompute the masks if the schedule says so at ``step``, then apply them; True if a mask changed."""
        self._prepare(step)
        due, changed = self._due(step), False
        if due:
            for name, (mask, threshold) in self._compute(step).items():
                changed |= not torch.equal(mask, self.masks[name])
                self.masks[name].copy_(mask)
                self.thresholds[name] = threshold
        self.apply()
        if due:
            self.history.extend({"step": step, "group": group, **stats} for group, stats in self._group_stats())
        return changed

    def updates_masks_at(self, step: int) -> bool:
        """Whether ``step(step)`` recomputes the masks (a pure function of the schedule, so the same on every
        data-parallel process: the trainer compares mask checksums across processes exactly then)."""
        return self._due(step)

    @torch.no_grad()
    def apply(self) -> None:
        """``param.mul_(mask)`` in place for every pruned tensor (keeps cuDNN flat weights intact)."""
        for t in self.tensors:
            t.param.mul_(self.masks[t.name])

    def sparsity(self) -> float:
        """Fraction of zero weights over all pruned tensors (0.0 when nothing is pruned)."""
        numel = sum(t.param.numel() for t in self.tensors)
        if numel == 0:
            return 0.0
        nonzeros = torch.stack([torch.count_nonzero(t.param).cpu() for t in self.tensors]).sum()
        return 1.0 - int(nonzeros) / numel

    def report(self) -> list[dict[str, Any]]:
        """One row per pruned tensor: name, shape, nonzeros, numel, sparsity, threshold, group."""
        rows = []
        for t in self.tensors:
            nonzeros, numel = int(torch.count_nonzero(t.param)), t.param.numel()
            rows.append({"name": t.name, "shape": list(t.param.shape), "nonzeros": nonzeros, "numel": numel,
                         "sparsity": 1.0 - nonzeros / numel, "threshold": self.thresholds[t.name],
                         "group": t.group})
        return rows

    def scalars(self) -> dict[str, float]:
        """TensorBoard scalars: ``sparsity/<group>``, ``threshold/<group>`` and ``sparsity/all``."""
        out: dict[str, float] = {}
        for group, stats in self._group_stats():
            out[f"sparsity/{group}"], out[f"threshold/{group}"] = stats["sparsity"], stats["threshold"]
        if self.tensors:
            out["sparsity/all"] = self.sparsity()
        return out

    def state_dict(self) -> dict[str, Any]:
        """Masks (copies), thresholds, history and method-specific state (e.g. calibrated q/theta/phi)."""
        return {"method": self.method, "masks": {n: m.detach().clone() for n, m in self.masks.items()},
                "thresholds": dict(self.thresholds), "history": copy.deepcopy(self.history),
                **self._extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` output bit for bit (masks are copied onto their current devices).

        Does not touch the model: its weights come from the model's own checkpoint.
        """
        if state["method"] != self.method:
            raise ValueError(f"pruning state is for method {state['method']!r}, this pruner is {self.method!r}")
        missing, unexpected = set(self.masks) - set(state["masks"]), set(state["masks"]) - set(self.masks)
        if missing or unexpected:
            raise ValueError(f"pruning state masks differ: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        for name, mask in self.masks.items():
            if state["masks"][name].shape != mask.shape:
                raise ValueError(f"pruning mask {name!r}: shape {tuple(state['masks'][name].shape)} in the state, "
                                 f"{tuple(mask.shape)} in the model")
            mask.copy_(state["masks"][name])
        self.thresholds = dict(state["thresholds"])
        self.history = copy.deepcopy(state["history"])
        self._load_extra_state(state)

    # ------------------------------------------------------------------ helpers
    def chunks(self) -> Iterator[list[PrunedTensor]]:
        """Units sharing one threshold: each tensor alone (scope "tensor") or each whole group (scope "group")."""
        for group in self.settings:
            members = [t for t in self.tensors if t.group == group]
            yield from ([[t] for t in members] if self.scope == "tensor" else [members])

    def _group_stats(self) -> Iterator[tuple[str, dict[str, float]]]:
        """Per group: fraction of zero weights and mean threshold over the group's tensors."""
        for group in self.settings:
            members = [t for t in self.tensors if t.group == group]
            zeros = sum(t.param.numel() - int(torch.count_nonzero(t.param)) for t in members)
            yield group, {"sparsity": zeros / sum(t.param.numel() for t in members),
                          "threshold": sum(self.thresholds[t.name] for t in members) / len(members)}


class NoPruner(Pruner):
    """Method "none", the dense baseline: no tensors, never due; same interface so the loop has no ifs."""

    method = "none"

    def __init__(self) -> None:
        super().__init__([], {}, None)

    def _due(self, step: int) -> bool:
        return False
