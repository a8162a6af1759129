"""What a corpus preparation kept, left out and changed: counted, with the files named (JSON + markdown).

Nothing is dropped silently: every input that does not reach a manifest is a *skip* of some kind (unreadable
audio, an id without audio, ...) and every kept input that was altered is a *note* (resampled, downmixed,
transcript normalised beyond case). Skips list every file in the JSON report; notes list the first
:data:`MAX_NOTE_EXAMPLES` per kind, since a whole corpus may be noted (FSDD is all 8 kHz).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.atomic import write_text_atomic

MAX_NOTE_EXAMPLES = 50
_MD_EXAMPLES = 10
_MD_NOTE_EXAMPLES = 3


@dataclass
class PreparationReport:
    """One section (a LibriSpeech subset, the FSDD source scan...) of a preparation report.

    name: the section's name. examined: inputs looked at (utterance ids, audio files).
    kept / hours: utterances that reached the manifest and their total duration.
    skipped / notes: kind -> list of [file, detail]; ``note_counts`` counts every note, listed or not.
    """

    name: str
    examined: int = 0
    kept: int = 0
    hours: float = 0.0
    skipped: dict[str, list[list[str]]] = field(default_factory=dict)
    notes: dict[str, list[list[str]]] = field(default_factory=dict)
    note_counts: dict[str, int] = field(default_factory=dict)

    def skip(self, kind: str, path: str | Path, detail: str) -> None:
        """Record an input left out of the manifest."""
        self.skipped.setdefault(kind, []).append([str(path), detail])

    def note(self, kind: str, path: str | Path, detail: str) -> None:
        """Record a kept input that preparation changed."""
        self.note_counts[kind] = self.note_counts.get(kind, 0) + 1
        examples = self.notes.setdefault(kind, [])
        if len(examples) < MAX_NOTE_EXAMPLES:
            examples.append([str(path), detail])

    def skip_counts(self) -> dict[str, int]:
        return {kind: len(items) for kind, items in sorted(self.skipped.items())}

    @property
    def num_skipped(self) -> int:
        return sum(len(items) for items in self.skipped.values())

    def summary(self) -> str:
        """One line: kept, hours, and the count of every skip and note kind."""
        skips = ", ".join(f"{kind}={n}" for kind, n in self.skip_counts().items()) or "none"
        notes = ", ".join(f"{kind}={n}" for kind, n in sorted(self.note_counts.items())) or "none"
        return f"{self.name}: {self.kept} utterances, {self.hours:.3f} h; skipped: {skips}; notes: {notes}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "examined": self.examined, "kept": self.kept, "hours": round(self.hours, 4),
            "skip_counts": self.skip_counts(), "note_counts": dict(sorted(self.note_counts.items())),
            "skipped": dict(sorted(self.skipped.items())), "notes": dict(sorted(self.notes.items())),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> PreparationReport:
        return cls(record["name"], record["examined"], record["kept"], record["hours"],
                   {k: list(v) for k, v in record["skipped"].items()}, {k: list(v) for k, v in record["notes"].items()},
                   dict(record["note_counts"]))

    def markdown(self) -> str:
        counts = f"{self.examined} examined, **{self.kept} kept** ({self.hours:.3f} h), {self.num_skipped} skipped."
        lines = [f"## {self.name}", "", counts, ""]
        for title, counts, items, limit in (("skipped", self.skip_counts(), self.skipped, _MD_EXAMPLES),
                                            ("notes (kept, changed)", self.note_counts, self.notes, _MD_NOTE_EXAMPLES)):
            if not counts:
                continue
            lines += [f"| {title} | count | first files |", "|---|---|---|"]
            for kind, count in sorted(counts.items()):
                shown = "; ".join(f"`{path}`: {detail}" for path, detail in items[kind][:limit])
                more = f" (+{count - limit} more)" if count > limit else ""
                lines.append(f"| {kind} | {count} | {_escape(shown)}{more} |")
            lines.append("")
        return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_report(path_stem: str | Path, title: str, sections: Iterable[PreparationReport]) -> list[Path]:
    """Write ``<path_stem>.json`` and ``<path_stem>.md`` atomically, each only when its content changed.

    Returns the files actually written (empty when both were up to date, so a rerun changes nothing).
    """
    sections = list(sections)
    record = {"title": title, "sections": [s.to_dict() for s in sections]}
    text_md = "\n".join([f"# {title}", "", *(s.markdown() for s in sections)])
    written = []
    for suffix, text in ((".json", json.dumps(record, indent=2, ensure_ascii=False) + "\n"), (".md", text_md)):
        path = Path(f"{path_stem}{suffix}")
        if write_text_if_changed(path, text):
            written.append(path)
    return written


def write_text_if_changed(path: str | Path, text: str) -> bool:
    """Atomically write ``text`` unless ``path`` already holds exactly it; whether it wrote."""
    path = Path(path)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_text_atomic(path, text)
    return True
