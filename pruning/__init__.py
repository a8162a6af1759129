"""Pruning during training (Narang et al., ICLR 2017, and follow-ups).

- ``schedule``: when and how much (pure functions of the global optimizer step).
- ``criterion``: which weights (pure functions: weights -> scores -> keep-masks).
- ``pruner`` / ``methods``: the objects that own the masks and apply them after every optimizer step.
- ``config``: the Hydra schema ``PruningConfig`` and ``build_pruner``; ``report``: tables and plots.
"""
from pruning.config import GroupConfig, PruningConfig, build_pruner
from pruning.pruner import NoPruner, Pruner

__all__ = ["GroupConfig", "NoPruner", "Pruner", "PruningConfig", "build_pruner"]
