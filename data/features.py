"""Deep Speech 2 input features: log spectrograms, global normalisation and SpecAugment.

Default: log linear (power) spectrogram with 161 bins from 20 ms Hann windows and a 10 ms hop at 16 kHz,
as in Deep Speech 2. Log-mel filterbanks are an option. Mean and variance per bin are computed on the
training set and stored with the model (checkpoint ``feature_stats``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torchaudio.transforms as T

_LOG_FLOOR = 1e-6


@dataclass
class FeatureConfig:
    """Front-end features.

    kind: "linear" (log power spectrogram, n_fft//2 + 1 bins) or "mel" (log-mel filterbank).
    window_ms / hop_ms: analysis window and hop; 20 / 10 ms in the paper.
    num_mel_bins: bins of the mel filterbank (kind="mel" only).
    stats_utterances: how many training utterances estimate the normalisation statistics (0 = all).
    """

    kind: str = "linear"
    window_ms: float = 20.0
    hop_ms: float = 10.0
    num_mel_bins: int = 80
    stats_utterances: int = 500


class FeatureExtractor(torch.nn.Module):
    """Waveform (num_samples,) at ``sample_rate`` -> log spectrogram (num_features, num_frames)."""

    def __init__(self, cfg: FeatureConfig, sample_rate: int = 16000) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.win_length = round(sample_rate * cfg.window_ms / 1000)
        self.hop_length = round(sample_rate * cfg.hop_ms / 1000)
        kinds = {
            "linear": lambda: T.Spectrogram(n_fft=self.win_length, hop_length=self.hop_length, power=2.0),
            "mel": lambda: T.MelSpectrogram(
                sample_rate, n_fft=self.win_length, hop_length=self.hop_length, n_mels=cfg.num_mel_bins
            ),
        }
        if cfg.kind not in kinds:
            raise ValueError(f"unknown feature kind {cfg.kind!r}; expected one of {sorted(kinds)}")
        self.spectrogram = kinds[cfg.kind]()
        self.num_features = self.win_length // 2 + 1 if cfg.kind == "linear" else cfg.num_mel_bins

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (centred STFT: 1 + num_samples // hop)."""
        return 1 + num_samples // self.hop_length

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(num_samples,) float -> (num_features, num_frames) float32."""
        return torch.log(self.spectrogram(waveform) + _LOG_FLOOR)


class FeatureNormalizer:
    """Per-bin global mean/variance normalisation; ``mean`` and ``std`` have shape (num_features,)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean, self.std = mean.float(), std.float().clamp_min(1e-5)

    @classmethod
    def fit(cls, features: list[torch.Tensor]) -> "FeatureNormalizer":
        """Statistics over all frames of a list of (num_features, num_frames) tensors."""
        frames = torch.cat(features, dim=1).double()
        return cls(frames.mean(dim=1), frames.std(dim=1))

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """(num_features, num_frames) -> same shape, zero mean and unit variance per bin."""
        return (features - self.mean[:, None]) / self.std[:, None]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "FeatureNormalizer":
        return cls(state["mean"], state["std"])


@dataclass
class AugmentConfig:
    """Training-only augmentation (always off at evaluation).

    speed_perturb: speed factors drawn uniformly from this list (e.g. [0.9, 1.0, 1.1]); empty = off.
    freq_masks / freq_mask_width: SpecAugment frequency masks, count and maximum width in bins.
    time_masks / time_mask_width: SpecAugment time masks, count and maximum width in frames.
    """

    speed_perturb: list[float] = field(default_factory=list)
    freq_masks: int = 0
    freq_mask_width: int = 27
    time_masks: int = 0
    time_mask_width: int = 40


def spec_augment(features: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) frequency and time masking of a (num_features, num_frames) tensor.

    Masks are filled with 0, the normalised mean. Randomness comes from ``generator`` only, so a resumed
    run draws the same masks as an uninterrupted one.
    """
    features = features.clone()
    for axis, count, width in ((0, cfg.freq_masks, cfg.freq_mask_width), (1, cfg.time_masks, cfg.time_mask_width)):
        size = features.shape[axis]
        for _ in range(count):
            span = int(torch.randint(0, min(width, size) + 1, (1,), generator=generator))
            start = int(torch.randint(0, size - span + 1, (1,), generator=generator))
            features.narrow(axis, start, span).zero_()
    return features
