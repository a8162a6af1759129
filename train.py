"""Train a Deep Speech 2 model, optionally pruning it during training (Narang et al., ICLR 2017).

    python train.py experiment=demo
    python train.py model=ds2_gru_small pruning=gradual trainer.num_epochs=20
    python train.py trainer.resume=outputs/demo/2026-11-28_10-00-00      # continue a killed run
    torchrun --standalone --nproc_per_node=4 train.py experiment=demo  # data-parallel (docs/distributed.md)
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from training.config import register_configs
from training.distributed import distributed_session
from training.trainer import Trainer

register_configs()


def main(cfg: DictConfig) -> dict:
    """Build the run described by ``cfg`` (or resume it) and train it; returns the run summary.

    Under torchrun (WORLD_SIZE > 1) this process joins the process group first and trains its share.
    """
    with distributed_session(cfg.trainer.device, cfg.trainer.dist_timeout_minutes) as world:
        return Trainer(cfg, world).fit()


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def cli(cfg: DictConfig) -> None:
    main(cfg)


if __name__ == "__main__":
    cli()
