"""Typed config schema (Hydra structured configs); YAML files under configs/ supply the values.

Every field is checked against these dataclasses when a config is composed, so a misspelt key in a YAML
file or on the command line is an error that names the key, never a silently ignored setting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore

from data.config import DataConfig
from models.config import ModelConfig
from pruning.config import PruningConfig


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule.

    name: "sgd" (with Nesterov momentum, as Deep Speech 2) or "adamw".
    lr: peak learning rate, reached after ``warmup_steps`` linear warm-up steps.
    lr_decay_per_epoch: the rate is multiplied by this after every epoch (DS2 anneals by 1/1.2).
    cooldown_epochs: over the run's last so many epochs the rate also falls linearly to zero, so that the last
        checkpoints settle instead of sampling the noise of a still-large step (0 = off).
    max_grad_norm: gradients are clipped to this global L2 norm (0 = no clipping).
    """

    name: str = "sgd"
    lr: float = 3e-4
    momentum: float = 0.9
    nesterov: bool = True
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_decay_per_epoch: float = 1.0
    cooldown_epochs: float = 0.0
    max_grad_norm: float = 400.0


@dataclass
class TrainerConfig:
    """The training run.

    num_epochs: epochs over the training manifest.
    max_steps: stop after this many optimiser steps (0 = no limit); the run can be resumed afterwards.
    seed: seeds model initialisation, batch order and augmentation.
    device: "auto" (CUDA when available), "cpu" or "cuda[:N]"; under torchrun "auto"/"cuda" (GPU LOCAL_RANK).
    precision: "fp32", or "bf16"/"fp16" autocast on CUDA (CTC loss always in fp32).
    log_every_steps: TensorBoard scalars and a log line every so many steps.
    checkpoint_every_steps: also checkpoint mid-epoch every so many steps (0 = at epoch ends only).
    keep_checkpoints: how many of those periodic ``step<N>.pt`` files to keep.
    eval_every_epochs: dev-set WER/CER every so many epochs (and always after the last).
    resume: a run folder or checkpoint file to continue from; outputs then go to that run folder.
    output_dir: run folder (defaults to Hydra's run directory).
    progress: show a progress bar.
    threads: torch intra-op threads on CPU (0 = torch's default); per process under torchrun.
    dist_timeout_minutes: under torchrun, how long a process waits for the others at a collective (e.g. while
        rank 0 builds the corpus or writes a checkpoint) before the run fails.
    """

    num_epochs: int = 10
    max_steps: int = 0
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    log_every_steps: int = 10
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 2
    eval_every_epochs: int = 1
    resume: Optional[str] = None
    output_dir: str = "???"
    progress: bool = True
    threads: int = 0
    dist_timeout_minutes: float = 30.0


@dataclass
class TrainConfig:
    """The whole training configuration: ``train.py`` composes it from configs/config.yaml."""

    experiment_name: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def register_configs() -> None:
    """Make the schema available to configs/config.yaml's defaults list as ``train_schema``."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
