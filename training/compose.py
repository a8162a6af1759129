"""Compose the training config outside a Hydra app (scripts and tests), with the same schema checks."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from training.config import register_configs

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """configs/config.yaml with ``overrides`` (e.g. ["model=ds2_rnn_paper", "model.rnn_hidden_size=704"])."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides or []))
