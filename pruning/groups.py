"""Which tensors are pruned: parameters selected by regular expressions on their names, one group per layer type.

The paper uses one hyper-parameter set per layer type (recurrent matrices, input matrices, fully connected).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from torch import nn


@dataclass(frozen=True, eq=False)
class PrunedTensor:
    """One pruned parameter: its name in ``model.named_parameters()``, its group and the parameter itself."""

    name: str
    group: str
    param: nn.Parameter


@dataclass(frozen=True)
class GroupSettings:
    """Hyper-parameters of one group: the config's values with the group's overrides applied.

    q: explicit threshold scale of Eq. 1 (gradual/block), or None to derive it.
    q_percentile: q = this percentile of the scores (|w| or block max) when neither q nor target_sparsity is set.
    target_sparsity: final sparsity (gradual/block solve q for it; hard/agp prune to it exactly), or None.
    initial_sparsity: AGP's s_i.
    ramp_multiple: phi / theta (Table 1: 1.5 to 2).
    block: block shape (rows, columns) of block pruning.
    """

    q: Optional[float]
    q_percentile: float
    target_sparsity: Optional[float]
    initial_sparsity: float
    ramp_multiple: float
    block: tuple[int, int]


def _matches(pattern: str, group: str, names: list[str]) -> list[str]:
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"pruning group {group!r}: invalid pattern {pattern!r}: {error}") from None
    hits = [name for name in names if regex.search(name)]
    if not hits:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ValueError(f"pruning group {group!r}: pattern {pattern!r} matches no parameter (parameters: {shown})")
    return hits


def select_tensors(model: nn.Module, patterns: dict[str, list[str]]) -> list[PrunedTensor]:
    """Parameters whose names ``re.search`` one of a group's patterns, in ``named_parameters()`` order.

    Errors (never silent): a group without patterns, a pattern matching nothing, a parameter matched by two
    groups, a matched parameter with fewer than 2 dimensions (biases and batch norm are never pruned).
    """
    params = dict(model.named_parameters())
    owner: dict[str, str] = {}
    for group, group_patterns in patterns.items():
        if not group_patterns:
            raise ValueError(f"pruning group {group!r} has no patterns")
        for pattern in group_patterns:
            for name in _matches(pattern, group, list(params)):
                if owner.setdefault(name, group) != group:
                    raise ValueError(f"parameter {name!r} is matched by pruning groups {owner[name]!r} and {group!r}")
    for name, group in owner.items():
        if params[name].dim() < 2:
            raise ValueError(f"pruning group {group!r} matches {name!r} of shape {tuple(params[name].shape)}: "
                             "only matrices and filters can be pruned (biases and batch norm never are)")
    return [PrunedTensor(name, owner[name], param) for name, param in params.items() if name in owner]
