"""Checks shared by corpus preparations: transcripts that keep their meaning, audio that decodes in full.

An input that cannot be used raises :class:`Skip` with a report kind (see :mod:`data.prep_report`); a usable
one that had to be changed comes back with the change described, so the caller can note it.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch

from data.audio import resample, write_audio
from data.text import ALPHABET, normalize_transcript

#: Punctuation that carries no spoken word and is dropped by normalisation (dashes become spaces).
DROPPABLE_PUNCTUATION = frozenset(".,;:!?\"()[]{}\u00ab\u00bb\u201e\u201c\u201d\u2018\u2019\u201a`\u00a1\u00bf-_/")
_KEEP = frozenset(ALPHABET)


class Skip(Exception):
    """An input preparation leaves out: ``kind`` is its report category, ``detail`` says why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def clean_transcript(raw: str) -> tuple[str, bool]:
    """Normalise ``raw`` to :data:`data.text.ALPHABET`; returns (text, whether more than case and spacing changed).

    Accents are folded and :data:`DROPPABLE_PUNCTUATION` dropped (dashes and slashes become spaces). Any other
    character (digits, symbols such as ``&`` or ``%``, letters with no a-z form) would lose a spoken word, so
    it raises ``Skip("out_of_alphabet")`` naming the characters; an empty result raises
    ``Skip("empty_transcript")``.
    """
    spaced = "".join(" " if unicodedata.category(ch) == "Pd" else ch for ch in raw)
    folded = unicodedata.normalize("NFKD", spaced).lower()
    bad = sorted({ch for ch in folded if not (ch in _KEEP or ch.isspace() or ch in DROPPABLE_PUNCTUATION
                                               or unicodedata.combining(ch))})
    if bad:
        raise Skip("out_of_alphabet", f"characters {''.join(bad)!r} in {raw.strip()!r}")
    text = normalize_transcript(spaced)
    if not text:
        raise Skip("empty_transcript", f"no words left in {raw.strip()!r}")
    return text, text != " ".join(raw.lower().split())


@dataclass(frozen=True)
class CheckedAudio:
    """Audio that decoded in full: where the usable file is, its duration, and what conversion was needed.

    audio_filepath: the original file, or the converted 16-bit mono WAV when ``changes`` is not empty.
    changes: ``(kind, detail)`` pairs: ``("resampled", "8000 Hz -> 16000 Hz")``, ``("downmixed", "2 channels")``.
    """

    audio_filepath: str
    duration: float
    changes: tuple[tuple[str, str], ...] = ()


def check_audio(path: str | Path, converted_path: str | Path, sample_rate: int = 16000) -> CheckedAudio:
    """Decode all of ``path``; mono audio at ``sample_rate`` is used as it is, anything else is averaged to mono,
    resampled and written to ``converted_path`` (atomically).

    Raises ``Skip("unreadable_audio")`` when the header or any frame fails to decode, fewer frames decode than
    the header promises (a truncated file) or a sample is not finite; ``Skip("empty_audio")`` when the file is
    0 bytes or holds no samples.
    """
    samples, file_rate = read_whole(path)
    changes = []
    if samples.shape[1] > 1:
        changes.append(("downmixed", f"{samples.shape[1]} channels averaged to mono"))
    if file_rate != sample_rate:
        changes.append(("resampled", f"{file_rate} Hz -> {sample_rate} Hz"))
    if not changes:
        return CheckedAudio(str(path), samples.shape[0] / file_rate)
    mono = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))
    converted = resample(mono, file_rate, sample_rate)
    write_audio(converted_path, converted, sample_rate)
    return CheckedAudio(str(converted_path), converted.shape[0] / sample_rate, tuple(changes))


def read_whole(path: str | Path) -> tuple[np.ndarray, int]:
    """All frames of ``path`` as float32 of shape (num_frames, num_channels) and its sample rate; raises Skip."""
    if Path(path).stat().st_size == 0:
        raise Skip("empty_audio", "the file is 0 bytes")
    try:
        info = soundfile.info(str(path))
        samples, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise Skip("unreadable_audio", f"cannot decode: {err}") from err
    if info.frames == 0 or samples.shape[0] == 0:
        raise Skip("empty_audio", "no samples")
    if samples.shape[0] < info.frames:
        raise Skip("unreadable_audio", f"truncated: header promises {info.frames} frames, {samples.shape[0]} decode")
    if not np.isfinite(samples).all():
        raise Skip("unreadable_audio", "samples that are not finite numbers")
    return samples, file_rate
