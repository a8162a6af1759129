"""Schema of the ``data`` config group."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from data.features import AugmentConfig, FeatureConfig
from data.fsdd import FsddConfig
from data.synth import SynthConfig
from data.tokenizer import TokenizerConfig


@dataclass
class DataConfig:
    """Where the manifests are and how utterances become batches.

    name: corpus name (used in output paths and tables).
    train_manifest / dev_manifest / test_manifest: JSONL manifests (relative paths resolve against the
        directory train.py was started from).
    synth: when set, the built-in synthetic corpus is built (once, cached) into ``corpus_dir`` first and the
        manifest paths point into it.
    fsdd: when set, the connected-digits corpus is built from FSDD recordings (once, cached) into ``corpus_dir``
        first, the same way.
    corpus_dir: where a built corpus lives.
    sample_rate: audio is resampled to this rate on loading.
    max_duration: longer utterances are skipped (counted) in training.
    max_frames_per_batch: padded feature frames per batch (batch size x longest utterance); under torchrun the
        global batch of one optimizer step, split across the processes.
    sortagrad: first epoch in increasing duration (Deep Speech 2).
    num_workers: DataLoader worker processes.
    """

    name: str = "custom"
    train_manifest: str = "???"
    dev_manifest: str = "???"
    test_manifest: str = "???"
    synth: Optional[SynthConfig] = None
    fsdd: Optional[FsddConfig] = None
    corpus_dir: str = "corpora/${data.name}"
    sample_rate: int = 16000
    max_duration: float = 20.0
    max_frames_per_batch: int = 20000
    sortagrad: bool = True
    num_workers: int = 1
    features: FeatureConfig = field(default_factory=FeatureConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
