"""Pruning config schema (Hydra structured config; values in configs/pruning/*.yaml) and ``build_pruner``."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Union

from omegaconf import DictConfig, OmegaConf
from torch import nn

from pruning.calibration import load_reference_weights
from pruning.groups import GroupSettings, select_tensors
from pruning.methods import AgpPruner, BlockPruner, GradualPruner, HardPruner
from pruning.pruner import NoPruner, Pruner
from pruning.schedule import ScheduleSteps

log = logging.getLogger(__name__)


@dataclass
class GroupConfig:
    """One group of pruned tensors with its own hyper-parameters (the paper: one set per layer type).

    patterns: regular expressions (``re.search``) on parameter names; each must match at least one parameter.
    q: explicit threshold scale of Eq. 1 for this group (gradual/block); null = derive it.
    target_sparsity: overrides ``PruningConfig.target_sparsity`` for this group.
    ramp_multiple: overrides ``PruningConfig.ramp_multiple`` (phi / theta) for this group.
    block: overrides ``PruningConfig.block`` for this group.
    """

    patterns: list[str] = field(default_factory=list)
    q: Optional[float] = None
    target_sparsity: Optional[float] = None
    ramp_multiple: Optional[float] = None
    block: Optional[list[int]] = None


def default_groups() -> dict[str, GroupConfig]:
    """The paper's three layer types, by the project's DeepSpeech2 module names (rnns.<i>..., fc...)."""
    return {
        "recurrent": GroupConfig(patterns=[r"rnns\.\d+\..*weight_hh"]),
        "input": GroupConfig(patterns=[r"rnns\.\d+\..*weight_ih"]),
        "fc": GroupConfig(patterns=[r"^fc\.(linear|\d+)\.weight$"]),  # DeepSpeech2's fc.linear (or a Sequential)
    }


@dataclass
class PruningConfig:
    """Pruning during training (Narang et al. 2017 and follow-ups).

    method: "none" (dense baseline), "gradual" (Algorithm 1), "block" (block-sparse follow-up), "hard"
        (one-shot at ``start``) or "agp" (Zhu & Gupta 2017).
    groups: name -> GroupConfig. Biases, batch norm and convolutions are in no default group.
    scope: "tensor" (q percentiles and exact-sparsity cut-offs per tensor, as Eq. 1's "that weight array") or
        "group" (pooled over a group's tensors, which then share one threshold).
    start_epoch: start_itr in epochs (Table 1: after epoch 1); hard prunes here; AGP's t0.
    ramp_fraction: ramp_itr as a fraction of all training steps (Table 1: 0.25).
    end_fraction: end_itr as a fraction of all training steps (Table 1: 0.5); AGP's t0 + n dt.
    start_step, ramp_step, end_step: explicit step numbers; each overrides its epoch-based value when set.
    freq: masks are recomputed every ``freq`` steps (Table 1: 100; AGP's dt).
    ramp_multiple: phi / theta (Table 1: 1.5 to 2; 1.5 makes the final threshold ~ q).
    q_from: dense checkpoint whose weights give q (the paper); null = calibrate on the model's own weights at
        start_itr (deviation: no dense run needed).
    q_percentile: percentile of |w| (block: of block max |w|) taken as q (the paper: 90).
    target_sparsity: gradual/block: solve q so that the final threshold prunes this fraction of the reference
        weights; hard/agp: the sparsity reached (required). null = use q_percentile.
    initial_sparsity: AGP's s_i.
    block: block shape [rows, columns] of block pruning (e.g. [4, 4], [16, 16]); edge blocks may be smaller.
    freeze_pruned: mask gradients too (hooks), so pruned weights cannot come back; default false as the paper.
    """

    method: str = "none"
    groups: dict[str, GroupConfig] = field(default_factory=default_groups)
    scope: str = "tensor"
    start_epoch: float = 1.0
    ramp_fraction: float = 0.25
    end_fraction: float = 0.5
    start_step: Optional[int] = None
    ramp_step: Optional[int] = None
    end_step: Optional[int] = None
    freq: int = 100
    ramp_multiple: float = 1.5
    q_from: Optional[str] = None
    q_percentile: float = 90.0
    target_sparsity: Optional[float] = None
    initial_sparsity: float = 0.0
    block: list[int] = field(default_factory=lambda: [4, 4])
    freeze_pruned: bool = False


PRUNERS: dict[str, type[Pruner]] = {
    "none": NoPruner, "gradual": GradualPruner, "block": BlockPruner, "hard": HardPruner, "agp": AgpPruner,
}


def resolve_steps(cfg: PruningConfig, steps_per_epoch: int, num_epochs: int) -> ScheduleSteps:
    """Table 1's epoch-based start/ramp/end converted to steps; explicit ``*_step`` values win."""
    total = steps_per_epoch * num_epochs

    def pick(explicit: Optional[int], derived: float) -> int:
        return explicit if explicit is not None else round(derived)

    return ScheduleSteps(start=pick(cfg.start_step, cfg.start_epoch * steps_per_epoch),
                         ramp=pick(cfg.ramp_step, cfg.ramp_fraction * total),
                         end=pick(cfg.end_step, cfg.end_fraction * total), freq=cfg.freq)


def group_settings(cfg: PruningConfig, group: GroupConfig) -> GroupSettings:
    """A group's settings: its overrides, else the config-wide values."""
    block = cfg.block if group.block is None else group.block
    target = cfg.target_sparsity if group.target_sparsity is None else group.target_sparsity
    if len(block) != 2 or min(block) < 1:
        raise ValueError(f"pruning block must be two positive ints [rows, columns], got {list(block)}")
    if target is not None and not 0.0 <= target < 1.0:
        raise ValueError(f"target_sparsity must be in [0, 1), got {target}")
    if not 0.0 < cfg.q_percentile <= 100.0:
        raise ValueError(f"q_percentile must be in (0, 100], got {cfg.q_percentile}")
    return GroupSettings(
        q=group.q, q_percentile=cfg.q_percentile, target_sparsity=target, initial_sparsity=cfg.initial_sparsity,
        ramp_multiple=cfg.ramp_multiple if group.ramp_multiple is None else group.ramp_multiple,
        block=(int(block[0]), int(block[1])),
    )


def _as_schema(cfg: Union[PruningConfig, DictConfig]) -> PruningConfig:
    """A PruningConfig from the dataclass, a typed DictConfig (Hydra) or an untyped one (checked by merging)."""
    if isinstance(cfg, PruningConfig):
        return cfg
    if OmegaConf.get_type(cfg) is not PruningConfig:
        cfg = OmegaConf.merge(OmegaConf.structured(PruningConfig), cfg)
    return OmegaConf.to_object(cfg)


def build_pruner(cfg: Union[PruningConfig, DictConfig], model: nn.Module, steps_per_epoch: int,
                 num_epochs: int) -> Pruner:
    """The pruner ``cfg.method`` names, over ``model``'s parameters selected by ``cfg.groups``.

    Build it after moving the model to its device. Raises on unknown methods, patterns matching nothing,
    doubly matched parameters, impossible schedules and hard/agp groups without a target sparsity.
    """
    cfg = _as_schema(cfg)
    if cfg.method not in PRUNERS:
        raise ValueError(f"unknown pruning method {cfg.method!r}; known: {sorted(PRUNERS)}")
    if cfg.method == "none":
        return NoPruner()
    cls = PRUNERS[cfg.method]
    tensors = select_tensors(model, {name: list(group.patterns) for name, group in cfg.groups.items()})
    settings = {name: group_settings(cfg, group) for name, group in cfg.groups.items()}
    if issubclass(cls, AgpPruner):
        unset = [name for name, s in settings.items() if s.target_sparsity is None]
        if unset or cfg.q_from or any(s.q is not None for s in settings.values()):
            raise ValueError(f"pruning method {cfg.method!r} needs target_sparsity (unset for groups {unset}) "
                             "and takes no q_from or q")
    steps = resolve_steps(cfg, steps_per_epoch, num_epochs)
    log.info("pruning %s: %d tensors in groups %s, %s", cfg.method, len(tensors), list(settings), steps)
    pruner = cls(tensors, settings, steps, scope=cfg.scope, freeze_pruned=cfg.freeze_pruned)
    if cfg.q_from:
        pruner.calibrate(load_reference_weights(cfg.q_from, tensors))
    return pruner
