"""Utterance dataset and padded-batch collation.

Randomness (speed perturbation, random low-pass, SpecAugment) is drawn from a generator seeded by (seed, epoch, index), so
the same utterance in the same epoch is augmented identically with any number of DataLoader workers and
after a resume.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from data.audio import load_audio, resample
from data.features import (
    AugmentConfig,
    FeatureExtractor,
    FeatureNormalizer,
    check_augment,
    random_lowpass,
    random_vtlp,
    spec_augment,
)
from data.manifest import Utterance
from data.tokenizer import Tokenizer


@dataclass
class Batch:
    """features: (batch, num_features, max_frames), zero-padded; feature_lengths: (batch,);
    targets: (sum of target lengths,) concatenated label ids; target_lengths: (batch,); indices: (batch,)."""

    features: torch.Tensor
    feature_lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    indices: torch.Tensor

    def pin_memory(self) -> "Batch":
        return Batch(*(tensor.pin_memory() for tensor in vars(self).values()))


class SpeechDataset(torch.utils.data.Dataset):
    """Item ``i`` -> (normalised features (num_features, num_frames), label ids (num_labels,), i)."""

    def __init__(
        self,
        utterances: list[Utterance],
        extractor: FeatureExtractor,
        normalizer: FeatureNormalizer | None,
        tokenizer: Tokenizer,
        sample_rate: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        if augment is not None:
            check_augment(augment)
        self.utterances = utterances
        self.extractor, self.normalizer, self.tokenizer = extractor, normalizer, tokenizer
        self.sample_rate, self.augment, self.seed = sample_rate, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.utterances)

    def num_frames(self) -> list[int]:
        """Feature frames of every utterance, from the manifest durations (no audio is read)."""
        return [self.extractor.num_frames(round(utt.duration * self.sample_rate)) for utt in self.utterances]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        utt = self.utterances[index]
        waveform = load_audio(utt.audio_filepath, self.sample_rate)
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index)
        if self.augment is not None and self.augment.speed_perturb:
            waveform = self._perturb_speed(waveform, generator)
        features = self.extractor.log_spectrogram(waveform)
        if self.augment is not None:  # a vocal tract, then a microphone, before any normalisation
            features = random_vtlp(features, self.extractor.bin_hz, self.augment, generator,
                                   nyquist_hz=self.sample_rate / 2)
            features = random_lowpass(features, self.extractor.bin_hz, self.augment, generator)
        features = self.extractor.remove_channel(features)
        if self.normalizer is not None:
            features = self.normalizer(features)
        if self.augment is not None:
            features = spec_augment(features, self.augment, generator)
        return features, torch.tensor(self.tokenizer.encode(utt.text), dtype=torch.long), index

    def _perturb_speed(self, waveform: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Speed perturbation (Ko et al. 2015): resample so the audio plays ``factor`` times faster."""
        factors = list(self.augment.speed_perturb)
        factor = factors[int(torch.randint(len(factors), (1,), generator=generator))]
        if factor == 1.0:
            return waveform
        return resample(waveform, round(self.sample_rate * factor), self.sample_rate)


def collate(items: list[tuple[torch.Tensor, torch.Tensor, int]]) -> Batch:
    """Pad features on the time axis with zeros and concatenate labels (the layout CTCLoss takes)."""
    features, labels, indices = zip(*items)
    feature_lengths = torch.tensor([f.shape[1] for f in features], dtype=torch.long)
    padded = features[0].new_zeros(len(features), features[0].shape[0], int(feature_lengths.max()))
    for row, feature in enumerate(features):
        padded[row, :, : feature.shape[1]] = feature
    return Batch(
        features=padded,
        feature_lengths=feature_lengths,
        targets=torch.cat(labels),
        target_lengths=torch.tensor([len(label) for label in labels], dtype=torch.long),
        indices=torch.tensor(indices, dtype=torch.long),
    )
