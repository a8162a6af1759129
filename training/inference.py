"""Rebuild a trained model and its front-end from a checkpoint alone."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from data.audio import load_audio
from data.config import DataConfig
from data.dataset import SpeechDataset
from data.manifest import Utterance
from data.validate import ValidationReport
from models.config import ModelConfig, build_model
from training.checkpoint import load_checkpoint
from training.pipeline import Frontend, validated
from training.scoring import greedy_decode


@dataclass
class LoadedModel:
    """A model in eval mode with the front-end it was trained with, and the checkpoint it came from."""

    model: torch.nn.Module
    frontend: Frontend
    data_cfg: DataConfig
    model_cfg: ModelConfig
    checkpoint: dict

    @property
    def name(self) -> str:
        return self.checkpoint["config"].get("experiment_name") or Path(self.checkpoint["path"]).parents[1].name

    def num_parameters(self) -> tuple[int, int]:
        """(total, nonzero) parameter counts: the nonzero count is what pruning leaves."""
        params = list(self.model.parameters())
        return sum(p.numel() for p in params), sum(int(torch.count_nonzero(p)) for p in params)

    def transcribe(self, audio_path: str | Path) -> str:
        """Greedy transcript of one audio file."""
        return transcribe_file(self.model, self.frontend, audio_path, self.data_cfg.sample_rate)


def evaluation_data(loaded: LoadedModel, utterances: list[Utterance], source: str
                    ) -> tuple[ValidationReport, SpeechDataset]:
    """The usable ``utterances`` for ``loaded`` (a :class:`LoadedModel` or anything with its ``model``, ``frontend``
    and ``data_cfg``, such as deploy/runtime.py's DeployedModel; no length limit; skips counted and logged under
    ``source``) and their un-augmented dataset."""
    report = validated(utterances, loaded.frontend, loaded.model.output_lengths, math.inf, source)
    return report, loaded.frontend.dataset(report.kept, loaded.data_cfg, train=False)


@torch.no_grad()
def transcribe_file(model: torch.nn.Module, frontend: Frontend, audio_path: str | Path, sample_rate: int) -> str:
    """Greedy transcript of one audio file by ``model`` (anything with DeepSpeech2's forward), batch 1."""
    device = next(model.parameters()).device
    features = frontend.normalizer(frontend.extractor(load_audio(audio_path, sample_rate)))  # (F, T)
    lengths = torch.tensor([features.shape[1]], device=device)
    log_probs, out_lengths = model(features[None].to(device), lengths)
    return greedy_decode(log_probs, out_lengths, frontend.tokenizer)[0]


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Checkpoint file or run folder (``best.pt`` preferred) -> :class:`LoadedModel`."""
    return model_from_checkpoint(load_checkpoint(path, prefer=("best.pt", "last.pt")), device)


def model_from_checkpoint(checkpoint: dict, device: torch.device | str = "cpu") -> LoadedModel:
    """A loaded checkpoint dict (training/checkpoint.py ``load_checkpoint``) -> :class:`LoadedModel`."""
    config = checkpoint["config"]
    # typed nodes, not objects: unset manifest paths ("???") of a synthetic corpus stay unset
    data_cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), config["data"])
    model_cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), config["model"])
    frontend = Frontend.from_checkpoint(data_cfg, checkpoint)
    model = build_model(model_cfg, frontend.extractor.num_features, frontend.tokenizer.num_classes)
    model.load_state_dict(checkpoint["model"])
    return LoadedModel(model.to(device).eval(), frontend, data_cfg, model_cfg, checkpoint)
