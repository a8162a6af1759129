"""From a ``data`` config to validated datasets: corpus, manifests, tokenizer, feature statistics."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from data.audio import load_audio
from data.config import DataConfig
from data.dataset import SpeechDataset
from data.features import FeatureExtractor, FeatureNormalizer
from data.fsdd import build_fsdd_corpus
from data.manifest import Utterance
from data.synth import build_synth_corpus
from data.tokenizer import Tokenizer, build_tokenizer, tokenizer_from_state_dict
from data.validate import ValidationReport, output_frames_counter, validate_utterances

log = logging.getLogger(__name__)


def manifest_paths(cfg: DataConfig, progress: bool = True) -> dict[str, Path]:
    """Paths of the train/dev/test manifests, building the synthetic or FSDD digits corpus first when configured."""
    if cfg.synth is not None:
        return {split: Path(p) for split, p in build_synth_corpus(cfg.synth, cfg.corpus_dir, progress).items()}
    if cfg.fsdd is not None:
        return build_fsdd_corpus(cfg.fsdd, cfg.corpus_dir, progress)
    return {"train": Path(cfg.train_manifest), "dev": Path(cfg.dev_manifest), "test": Path(cfg.test_manifest)}


@dataclass
class Frontend:
    """What turns audio and text into model inputs and targets; stored in every checkpoint."""

    extractor: FeatureExtractor
    normalizer: FeatureNormalizer
    tokenizer: Tokenizer

    def state_dict(self) -> dict:
        return {"feature_stats": self.normalizer.state_dict(), "tokenizer": self.tokenizer.state_dict()}

    @classmethod
    def from_checkpoint(cls, cfg: DataConfig, state: dict) -> "Frontend":
        return cls(
            FeatureExtractor(cfg.features, cfg.sample_rate),
            FeatureNormalizer.from_state_dict(state["feature_stats"]),
            tokenizer_from_state_dict(state["tokenizer"]),
        )

    def dataset(self, utterances: list[Utterance], cfg: DataConfig, train: bool, seed: int = 0) -> SpeechDataset:
        """Dataset with augmentation only when ``train``."""
        augment = cfg.augment if train else None
        return SpeechDataset(
            utterances, self.extractor, self.normalizer, self.tokenizer, cfg.sample_rate, augment, seed
        )


def fit_frontend(cfg: DataConfig, train: list[Utterance], seed: int, progress: bool = True) -> Frontend:
    """Train the tokenizer on the training transcripts and estimate feature statistics on a random subset."""
    extractor = FeatureExtractor(cfg.features, cfg.sample_rate)
    tokenizer = build_tokenizer(cfg.tokenizer, (utt.text for utt in train))
    count = cfg.features.stats_utterances or len(train)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()[:count]
    features = [
        extractor(load_audio(train[i].audio_filepath, cfg.sample_rate))
        for i in tqdm(order, desc="feature statistics", disable=not progress, leave=False)
    ]
    log.info("feature statistics from %d training utterances; tokenizer %s with %d classes",
             len(features), cfg.tokenizer.kind, tokenizer.num_classes)
    return Frontend(extractor, FeatureNormalizer.fit(features), tokenizer)


def validated(
    utterances: list[Utterance],
    frontend: Frontend,
    output_lengths: Callable[[torch.Tensor], torch.Tensor],
    max_duration: float,
    name: str,
) -> ValidationReport:
    """Validate a split and log what is skipped (counted, with the first offending files)."""
    extractor = frontend.extractor
    output_frames = output_frames_counter(extractor.num_frames, extractor.sample_rate, output_lengths)
    report = validate_utterances(utterances, frontend.tokenizer.encode, output_frames, max_duration)
    log.info("%s: %s", name, report.summary())
    if report.num_skipped:
        log.warning("%s: skipped utterances:\n%s", name, report.details(limit=10))
    if not report.kept:
        raise ValueError(f"{name}: no usable utterances left after validation ({report.summary()})")
    return report
