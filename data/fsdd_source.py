"""Reading the Free Spoken Digit Dataset: ``{digit}_{speaker}_{index}.wav`` files, each checked and counted.

Skipped (counted in the report, file named): names that do not follow the pattern (``unrecognised_name``),
speakers no split uses (``unused_speaker``), audio that does not decode in full (``unreadable_audio``) or holds
no samples (``empty_audio``). Noted: multi-channel recordings (``downmixed``) and recordings at another rate than
the corpus's (``resampled``: every FSDD file, which are 8 kHz; the resampling happens when utterances are made).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.prep_checks import Skip, read_whole
from data.prep_report import PreparationReport

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NAME = re.compile(r"(\d)_([A-Za-z0-9]+)_(\d+)\.wav")


@dataclass(frozen=True, eq=False)
class Recording:
    """One isolated digit: file ``name``, ``speaker``, ``digit`` 0-9, mono ``samples`` (float32, (num_samples,))
    at ``sample_rate``."""

    name: str
    speaker: str
    digit: int
    samples: np.ndarray
    sample_rate: int


def recordings_dir(source_dir: str | Path) -> Path:
    """``<source_dir>/recordings`` (the FSDD repository's layout) or ``source_dir`` itself."""
    source_dir = Path(source_dir)
    folder = source_dir / "recordings" if (source_dir / "recordings").is_dir() else source_dir
    if not folder.is_dir():
        raise FileNotFoundError(f"FSDD source folder not found: {source_dir} (clone "
                                "https://github.com/Jakobovski/free-spoken-digit-dataset and point source_dir at it)")
    return folder


def source_listing(source_dir: str | Path) -> list[tuple[str, int]]:
    """(name, size in bytes) of every file of the source, sorted: identifies the source without decoding it."""
    return sorted((p.name, p.stat().st_size) for p in recordings_dir(source_dir).iterdir() if p.is_file())


def scan_recordings(source_dir: str | Path, speakers: set[str],
                    sample_rate: int = 16000) -> tuple[list[Recording], PreparationReport]:
    """Every usable recording of ``speakers`` (sorted by name) and the report of what was skipped or changed."""
    folder = recordings_dir(source_dir)
    report = PreparationReport("FSDD recordings")
    recordings = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        report.examined += 1
        match = _NAME.fullmatch(path.name)
        if match is None:
            report.skip("unrecognised_name", path, "expected {digit}_{speaker}_{index}.wav")
            continue
        if match.group(2) not in speakers:
            report.skip("unused_speaker", path, f"speaker {match.group(2)!r} is in no split")
            continue
        try:
            samples, file_rate = read_whole(path)
        except Skip as skip:
            report.skip(skip.kind, path, skip.detail)
            continue
        if samples.shape[1] > 1:
            report.note("downmixed", path, f"{samples.shape[1]} channels averaged to mono")
        if file_rate != sample_rate:
            report.note("resampled", path, f"{file_rate} Hz -> {sample_rate} Hz")
        recordings.append(Recording(path.name, match.group(2), int(match.group(1)),
                                    np.ascontiguousarray(samples.mean(axis=1)), file_rate))
    report.kept = len(recordings)
    report.hours = sum(len(r.samples) / r.sample_rate for r in recordings) / 3600
    return recordings, report
