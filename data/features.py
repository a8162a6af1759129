"""Deep Speech 2 input features: log spectrograms, global normalisation, SpecAugment, random vocal tract length
perturbation and random low-pass.

Default: log linear (power) spectrogram with 161 bins from 20 ms Hann windows and a 10 ms hop at 16 kHz,
as in Deep Speech 2. Log-mel filterbanks are an option. Mean and variance per bin are computed on the
training set and stored with the model (checkpoint ``feature_stats``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torchaudio.transforms as T

_LOG_FLOOR = 1e-6
_MIN_UTTERANCE_STD = 0.1  # natural-log units: a tenth of the spread of a noise-only bin (pi / sqrt(6) ~ 1.28)


@dataclass
class FeatureConfig:
    """Front-end features.

    kind: "linear" (log power spectrogram, n_fft//2 + 1 bins) or "mel" (log-mel filterbank).
    window_ms / hop_ms: analysis window and hop; 20 / 10 ms in the paper.
    num_mel_bins: bins of the mel filterbank (kind="mel" only).
    stats_utterances: how many training utterances estimate the normalisation statistics (0 = all).
    utterance_mean: subtract every bin's mean over the utterance from the log spectrogram (cepstral mean
        normalisation in the spectral domain) before the global statistics: a fixed channel, such as a
        microphone's frequency response, adds a constant to every frame's log spectrum and is removed.
    utterance_variance: also divide every bin by its standard deviation over the utterance (cepstral mean and
        variance normalisation, CMVN; needs ``utterance_mean``): a recording whose speech barely rises above the
        noise in some band (a dull microphone, a soft voice) gets that band's contrast back. Floored at
        ``_MIN_UTTERANCE_STD`` so that a constant bin (digital silence) stays constant.
    max_frequency_hz: keep only the band up to this frequency (linear: the bins at or below it; mel: the
        filterbank's upper edge); null = up to the Nyquist frequency. Recordings made at 8 kHz and resampled
        hold nothing but noise above 4 kHz: cutting it halves the linear bins, and the convolutions' cost.
    """

    kind: str = "linear"
    window_ms: float = 20.0
    hop_ms: float = 10.0
    num_mel_bins: int = 80
    stats_utterances: int = 500
    utterance_mean: bool = False
    utterance_variance: bool = False
    max_frequency_hz: Optional[float] = None


class FeatureExtractor(torch.nn.Module):
    """Waveform (num_samples,) at ``sample_rate`` -> log spectrogram (num_features, num_frames)."""

    def __init__(self, cfg: FeatureConfig, sample_rate: int = 16000) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.win_length = round(sample_rate * cfg.window_ms / 1000)
        self.hop_length = round(sample_rate * cfg.hop_ms / 1000)
        max_hz = sample_rate / 2 if cfg.max_frequency_hz is None else cfg.max_frequency_hz
        linear_hz = torch.linspace(0, sample_rate / 2, self.win_length // 2 + 1)
        if not linear_hz[1] <= max_hz <= sample_rate / 2:
            raise ValueError(f"features.max_frequency_hz={cfg.max_frequency_hz} must lie between the first bin "
                             f"({float(linear_hz[1]):g} Hz) and the Nyquist frequency ({sample_rate / 2:g} Hz)")
        kinds = {
            "linear": lambda: T.Spectrogram(n_fft=self.win_length, hop_length=self.hop_length, power=2.0),
            "mel": lambda: T.MelSpectrogram(sample_rate, n_fft=self.win_length, hop_length=self.hop_length,
                                            n_mels=cfg.num_mel_bins, f_max=max_hz),
        }
        if cfg.kind not in kinds:
            raise ValueError(f"unknown feature kind {cfg.kind!r}; expected one of {sorted(kinds)}")
        self.spectrogram = kinds[cfg.kind]()
        if cfg.utterance_variance and not cfg.utterance_mean:
            raise ValueError("features.utterance_variance=true needs features.utterance_mean=true (CMVN divides the "
                             "mean-free log spectrum)")
        self.utterance_mean = cfg.utterance_mean
        self.utterance_variance = cfg.utterance_variance
        #: how many of the transform's bins are kept (linear: those at or below max_frequency_hz)
        self.num_features = int((linear_hz <= max_hz).sum()) if cfg.kind == "linear" else cfg.num_mel_bins
        #: (num_features,) centre frequency of every bin in Hz (a mel filter's: the frequency it weighs most)
        self.bin_hz = (linear_hz[: self.num_features] if cfg.kind == "linear"
                       else linear_hz[self.spectrogram.mel_scale.fb.argmax(dim=0)])

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (centred STFT: 1 + num_samples // hop)."""
        return 1 + num_samples // self.hop_length

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(num_samples,) float -> (num_features, num_frames) float32: :meth:`log_spectrogram`, then
        :meth:`remove_channel`."""
        return self.remove_channel(self.log_spectrogram(waveform))

    @torch.no_grad()
    def log_spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """(num_samples,) float -> (num_features, num_frames) log power, floored at log(1e-6)."""
        return torch.log(self.spectrogram(waveform)[: self.num_features] + _LOG_FLOOR)

    def remove_channel(self, log_power: torch.Tensor) -> torch.Tensor:
        """(num_features, num_frames) -> same shape: with ``utterance_mean`` minus every bin's mean over frames,
        with ``utterance_variance`` then divided by every bin's standard deviation over frames; else as it is."""
        if not self.utterance_mean:
            return log_power
        centred = log_power - log_power.mean(dim=1, keepdim=True)
        if not self.utterance_variance:
            return centred
        return centred / centred.std(dim=1, keepdim=True, correction=0).clamp_min(_MIN_UTTERANCE_STD)


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
    lowpass_prob: chance that an utterance is heard through a random low-pass filter (a muffled microphone), see
        :func:`random_lowpass`; 0 = off. lowpass_cutoff_hz: [low, high] range of the cutoff, drawn log-uniformly.
        lowpass_db_per_octave: [low, high] range of the roll-off above it. lowpass_max_db: the deepest attenuation.
    vtlp_prob: chance that an utterance's frequency axis is warped by a random factor, as by a longer or shorter
        vocal tract (:func:`random_vtlp`); 0 = off. vtlp_alpha: [low, high] range of the factor, drawn uniformly.
        vtlp_boundary_hz: where the warp turns from proportional to the segment that keeps the Nyquist frequency.
    """

    speed_perturb: list[float] = field(default_factory=list)
    freq_masks: int = 0
    freq_mask_width: int = 27
    time_masks: int = 0
    time_mask_width: int = 40
    lowpass_prob: float = 0.0
    lowpass_cutoff_hz: list[float] = field(default_factory=lambda: [500.0, 4000.0])
    lowpass_db_per_octave: list[float] = field(default_factory=lambda: [6.0, 24.0])
    lowpass_max_db: float = 40.0
    vtlp_prob: float = 0.0
    vtlp_alpha: list[float] = field(default_factory=lambda: [0.9, 1.1])
    vtlp_boundary_hz: float = 4800.0


def check_augment(cfg: AugmentConfig) -> None:
    """Raise ValueError naming the field when an augmentation setting is out of range."""
    for name in ("lowpass_cutoff_hz", "lowpass_db_per_octave", "vtlp_alpha"):
        values = list(getattr(cfg, name))
        if len(values) != 2 or not 0 < values[0] <= values[1]:
            raise ValueError(f"augment.{name} must be [low, high] with 0 < low <= high, got {values}")
    if not 0 <= cfg.lowpass_prob <= 1 or cfg.lowpass_max_db < 0:
        raise ValueError(f"augment.lowpass_prob must be in [0, 1] and lowpass_max_db >= 0, got "
                         f"{cfg.lowpass_prob} and {cfg.lowpass_max_db}")
    if not 0 <= cfg.vtlp_prob <= 1 or cfg.vtlp_boundary_hz <= 0:
        raise ValueError(f"augment.vtlp_prob must be in [0, 1] and vtlp_boundary_hz > 0, got "
                         f"{cfg.vtlp_prob} and {cfg.vtlp_boundary_hz}")
    if any(factor <= 0 for factor in cfg.speed_perturb):
        raise ValueError(f"augment.speed_perturb factors must be > 0, got {list(cfg.speed_perturb)}")


def random_lowpass(log_power: torch.Tensor, bin_hz: torch.Tensor, cfg: AugmentConfig,
                   generator: torch.Generator) -> torch.Tensor:
    """With probability ``cfg.lowpass_prob``, filter an un-normalised (num_features, num_frames) log power
    spectrogram through a random low-pass: bins above the cutoff f_c lose s * log2(f / f_c) dB (at most
    ``lowpass_max_db``), floored like the features. ``bin_hz``: (num_features,) bin frequencies. Otherwise, or
    with ``lowpass_prob`` 0 (no draws), returned as it is.

    A filter multiplies the power spectrum, so it adds to the log spectrum: the same as filtering the audio. Real
    microphones differ most above 1 kHz, where the consonants are; a few training speakers cover few of them.
    """
    if cfg.lowpass_prob <= 0 or float(torch.rand((), generator=generator)) >= cfg.lowpass_prob:
        return log_power
    (low_hz, high_hz), (low_slope, high_slope) = cfg.lowpass_cutoff_hz, cfg.lowpass_db_per_octave
    uniform = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    cutoff_hz = math.exp(math.log(low_hz) + uniform[0] * (math.log(high_hz) - math.log(low_hz)))
    slope = low_slope + uniform[1] * (high_slope - low_slope)
    octaves = torch.log2(bin_hz.clamp_min(1.0) / cutoff_hz).clamp_min(0.0)
    attenuation_db = (slope * octaves).clamp_max(cfg.lowpass_max_db)
    return (log_power - attenuation_db[:, None] * (math.log(10) / 10)).clamp_min(math.log(_LOG_FLOOR))


def vtlp_warp(hz: torch.Tensor, alpha: float, boundary_hz: float, nyquist_hz: float) -> torch.Tensor:
    """The piecewise-linear frequency warp of VTLP (Jaitly & Hinton 2013): f -> alpha * f up to
    f_b = boundary_hz * min(alpha, 1) / alpha, then the straight line from (f_b, alpha * f_b) to the Nyquist
    frequency, which stays where it is. ``hz``: any shape; the result has the same shape and is increasing in f."""
    knee = boundary_hz * min(alpha, 1.0) / alpha
    upper = nyquist_hz - (nyquist_hz - alpha * knee) / (nyquist_hz - knee) * (nyquist_hz - hz)
    return torch.where(hz <= knee, alpha * hz, upper)


def interpolate(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along the first axis (numpy.interp per column): ``xp`` (n,) increasing,
    ``fp`` (n, m), ``x`` (k,) -> (k, m); ``x`` outside [xp[0], xp[-1]] takes the end values."""
    x = x.clamp(float(xp[0]), float(xp[-1]))
    right = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)
    left = right - 1
    weight = ((x - xp[left]) / (xp[right] - xp[left]).clamp_min(1e-12))[:, None].to(fp.dtype)
    return fp[left] * (1 - weight) + fp[right] * weight


def random_vtlp(log_power: torch.Tensor, bin_hz: torch.Tensor, cfg: AugmentConfig,
                generator: torch.Generator, nyquist_hz: float = 8000.0) -> torch.Tensor:
    """With probability ``cfg.vtlp_prob``, vocal tract length perturbation of a (num_features, num_frames) log
    power spectrogram: a factor alpha is drawn from ``cfg.vtlp_alpha`` and the energy at frequency f moves to
    :func:`vtlp_warp` (f) (alpha > 1: formants move up, as for a shorter vocal tract), read off by linear
    interpolation between bins. ``bin_hz``: (num_features,) increasing bin frequencies. Otherwise, or with
    ``vtlp_prob`` 0 (no draws), returned as it is.

    Speed perturbation also moves the formants, but always together with tempo and pitch; a few training speakers
    cover few vocal tracts, and VTLP varies them alone.
    """
    if cfg.vtlp_prob <= 0 or float(torch.rand((), generator=generator)) >= cfg.vtlp_prob:
        return log_power
    low, high = cfg.vtlp_alpha
    alpha = low + float(torch.rand((), generator=generator, dtype=torch.float64)) * (high - low)
    warped_hz = vtlp_warp(bin_hz.double(), alpha, cfg.vtlp_boundary_hz, nyquist_hz)
    return interpolate(bin_hz.double(), warped_hz, log_power)


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
