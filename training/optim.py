"""Optimiser and learning-rate schedule from the ``optim`` config group."""
from __future__ import annotations

from typing import Iterable

import torch

from training.config import OptimConfig


def build_optimizer(cfg: OptimConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum, as Deep Speech 2, or AdamW."""
    builders = {
        "sgd": lambda: torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        ),
        "adamw": lambda: torch.optim.AdamW(
            params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
        ),
    }
    if cfg.name not in builders:
        raise ValueError(f"unknown optimizer {cfg.name!r}; expected one of {sorted(builders)}")
    return builders[cfg.name]()


def build_lr_schedule(
    cfg: OptimConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, num_epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """lr(step) = lr * min(1, (step + 1) / warmup_steps) * lr_decay_per_epoch ** epoch(step) * cooldown(step),
    cooldown(step) = min(1, (total_steps - step) / cooldown_steps): the rate falls linearly towards zero over the
    last ``cooldown_epochs`` epochs of the ``num_epochs``-epoch run (1 throughout when 0).

    Stepped once per optimiser step; a pure function of the step, so resuming restores it exactly.
    """
    if not 0 <= cfg.cooldown_epochs <= num_epochs:
        raise ValueError(f"optim.cooldown_epochs={cfg.cooldown_epochs} must lie between 0 and the run's "
                         f"{num_epochs} epochs")
    steps_per_epoch = max(1, steps_per_epoch)
    total_steps = num_epochs * steps_per_epoch
    cooldown_steps = round(cfg.cooldown_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
        cooldown = min(1.0, max(0.0, (total_steps - step) / cooldown_steps)) if cooldown_steps > 0 else 1.0
        return warmup * cfg.lr_decay_per_epoch ** (step // steps_per_epoch) * cooldown

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
