"""JSONL manifests, one utterance a line: ``{"audio_filepath", "duration", "text"}`` (NeMo's convention).

Relative audio paths are resolved against the manifest's folder, so a corpus folder can be moved whole.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from data.atomic import atomic_path


class ManifestError(ValueError):
    """A manifest line is not valid JSON or lacks a field; the message names file and line."""


@dataclass(frozen=True)
class Utterance:
    """One manifest entry. ``audio_filepath`` is absolute once read."""

    audio_filepath: str
    duration: float
    text: str


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a JSONL manifest; relative ``audio_filepath`` values are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    root = path.resolve().parent
    utterances = []
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if line.strip():
                utterances.append(_parse_line(line, root, f"{path}:{line_number}"))
    return utterances


def _parse_line(line: str, root: Path, where: str) -> Utterance:
    try:
        entry = json.loads(line)
        audio, duration, text = entry["audio_filepath"], float(entry["duration"]), entry["text"]
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: not valid JSON ({err.msg})") from err
    except KeyError as err:
        raise ManifestError(f"{where}: missing field {err}") from err
    except (TypeError, ValueError) as err:
        raise ManifestError(f"{where}: bad field value ({err})") from err
    if not isinstance(text, str):
        raise ManifestError(f"{where}: 'text' must be a string")
    return Utterance(audio_filepath=str(root / audio), duration=duration, text=text)


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> None:
    """Write a manifest atomically; audio paths under the manifest's folder are stored relative to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.resolve().parent
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        out.writelines(_lines(utterances, root))


def _lines(utterances: Iterable[Utterance], root: Path) -> Iterator[str]:
    for utt in utterances:
        audio = Path(utt.audio_filepath)
        if audio.is_absolute() and audio.resolve().is_relative_to(root):
            audio = audio.resolve().relative_to(root)
        record = {"audio_filepath": str(audio), "duration": round(utt.duration, 4), "text": utt.text}
        yield json.dumps(record, ensure_ascii=False) + "\n"
