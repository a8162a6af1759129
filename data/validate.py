"""Manifest validation: every utterance a CTC model cannot (or should not) train on, named and counted.

Problems found (pitfalls 2 and 11): missing audio file, unreadable audio, empty transcript, characters
outside the tokenizer's alphabet, longer than the duration cap, and audio too short for its transcript:
fewer output frames after the model's front-end than label length plus adjacent repeats, which makes the
CTC loss infinite.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from data.audio import AudioError, audio_duration
from data.manifest import Utterance
from data.text import out_of_alphabet

PROBLEM_KINDS = ("missing_audio", "unreadable_audio", "empty_transcript", "out_of_alphabet",
                 "too_long", "too_short_for_transcript")


@dataclass
class ValidationReport:
    """Utterances kept, and for each problem kind the (audio_filepath, detail) pairs that were skipped."""

    total: int = 0
    kept: list[Utterance] = field(default_factory=list)
    problems: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))

    @property
    def num_skipped(self) -> int:
        return self.total - len(self.kept)

    def counts(self) -> dict[str, int]:
        return {kind: len(self.problems.get(kind, ())) for kind in PROBLEM_KINDS}

    def summary(self) -> str:
        """One line: kept/total and the count of each problem kind that occurred."""
        found = ", ".join(f"{kind}={n}" for kind, n in self.counts().items() if n)
        return f"{len(self.kept)}/{self.total} utterances kept" + (f"; skipped: {found}" if found else "")

    def details(self, limit: int = 20) -> str:
        """Up to ``limit`` offending files per problem kind, one per line."""
        lines = []
        for kind in PROBLEM_KINDS:
            for path, detail in self.problems.get(kind, [])[:limit]:
                lines.append(f"{kind}: {path}: {detail}")
        return "\n".join(lines)


def validate_utterances(
    utterances: list[Utterance],
    label_ids: Callable[[str], list[int]],
    output_frames: Callable[[float], int],
    max_duration: float = float("inf"),
) -> ValidationReport:
    """Check each utterance; ``label_ids`` encodes a transcript (raising ValueError on unknown characters),
    ``output_frames`` maps a duration in seconds to the model's number of output frames."""
    report = ValidationReport(total=len(utterances))
    for utt in utterances:
        problem = _find_problem(utt, label_ids, output_frames, max_duration)
        if problem is None:
            report.kept.append(utt)
        else:
            report.problems[problem[0]].append((utt.audio_filepath, problem[1]))
    return report


def _find_problem(utt: Utterance, label_ids, output_frames, max_duration) -> tuple[str, str] | None:
    if not Path(utt.audio_filepath).is_file():
        return "missing_audio", "file not found"
    try:
        duration = audio_duration(utt.audio_filepath)
    except AudioError as err:
        return "unreadable_audio", str(err)
    if duration <= 0:
        return "unreadable_audio", "no samples"
    if not utt.text.strip():
        return "empty_transcript", "transcript is empty"
    bad = out_of_alphabet(utt.text)
    if bad:
        return "out_of_alphabet", f"characters {''.join(sorted(bad))!r} in {utt.text!r}"
    if duration > max_duration:
        return "too_long", f"{duration:.2f} s > max_duration {max_duration} s"
    try:
        labels = label_ids(utt.text)
    except ValueError as err:
        return "out_of_alphabet", str(err)
    needed = ctc_min_frames(labels)
    available = output_frames(duration)
    if available < needed:
        return "too_short_for_transcript", f"{available} output frames < {needed} needed by CTC"
    return None


def output_frames_counter(
    num_frames: Callable[[int], int], sample_rate: int, output_lengths: Callable[[torch.Tensor], torch.Tensor]
) -> Callable[[float], int]:
    """Duration in seconds -> model output frames: feature frames (``num_frames`` of a sample count)
    passed through the model's ``output_lengths``."""

    def output_frames(duration: float) -> int:
        frames = torch.tensor([num_frames(round(duration * sample_rate))])
        return int(output_lengths(frames)[0])

    return output_frames


def ctc_min_frames(labels: list[int]) -> int:
    """Fewest frames CTC needs for ``labels``: one per label plus a blank between each adjacent repeat."""
    repeats = sum(1 for previous, current in zip(labels, labels[1:]) if previous == current)
    return len(labels) + repeats
