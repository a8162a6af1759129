"""Audio I/O behind one pair of functions (soundfile), resampling and time stretching (torchaudio)."""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile
import torch
from torchaudio.functional import phase_vocoder

from data.atomic import atomic_path


class AudioError(ValueError):
    """An audio file is missing, unreadable or empty; the message names the file."""


def resample(samples: torch.Tensor, orig_sample_rate: int, new_sample_rate: int) -> torch.Tensor:
    """Band-limited sinc resampling of a (..., time) waveform."""
    if orig_sample_rate == new_sample_rate:
        return samples
    return _resampler(orig_sample_rate, new_sample_rate)(samples)


@lru_cache(maxsize=16)
def _resampler(orig_sample_rate: int, new_sample_rate: int) -> torch.nn.Module:
    """The sinc filter kernel of a rate pair is computed once, not on every call."""
    import torchaudio.transforms as T

    return T.Resample(orig_sample_rate, new_sample_rate)


def load_audio(path: str | Path, sample_rate: int = 16000) -> torch.Tensor:
    """Read an audio file as a mono float32 waveform of shape (num_samples,) in [-1, 1].

    Multi-channel audio is averaged to mono; other sample rates are resampled to ``sample_rate``.
    Raises :class:`AudioError` naming the file when it is missing, unreadable or has no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        samples, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    if samples.shape[0] == 0:
        raise AudioError(f"audio file has no samples: {path}")
    waveform = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))
    return resample(waveform, file_rate, sample_rate)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (no decoding). Raises :class:`AudioError`."""
    try:
        info = soundfile.info(str(path))
    except Exception as err:
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    return info.frames / info.samplerate


def write_audio(path: str | Path, samples: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write a mono waveform in [-1, 1] as 16-bit PCM WAV, atomically (temp file, then rename)."""
    data = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    data = np.clip(data.astype(np.float32), -1.0, 1.0)
    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), data, sample_rate, subtype="PCM_16", format="WAV")


def time_stretch(wave: np.ndarray, factor: float, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """``wave`` (float32, (num_samples,)) lasting ``factor`` times as long at the same pitch (phase vocoder);
    returned as it is when ``factor`` is 1."""
    if factor == 1.0:
        return wave
    window = torch.hann_window(n_fft)
    spec = torch.stft(torch.from_numpy(wave), n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, n_fft // 2 + 1)[:, None]
    stretched = phase_vocoder(spec, 1 / factor, advance)
    return torch.istft(stretched, n_fft, hop, window=window, length=round(len(wave) * factor)).numpy()
