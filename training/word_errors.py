"""Which words a model gets wrong: word-level edits from the same alignment as the corpus WER (jiwer's).

Every reference word is aligned to one hypothesis word (a hit or a substitution) or to none (a deletion); every
unaligned hypothesis word is an insertion. The counts add up to the WER's numerator:
substitutions + deletions + insertions = WER x reference words. :func:`read_hyps` reads the transcripts from
evaluate.py's ``<name>.hyps.jsonl``.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import jiwer

#: stands for the missing side of an edit: (word, GAP) is a deletion, (GAP, word) an insertion
GAP = "<gap>"


@dataclass
class WordEdits:
    """pairs: Counter of (reference word, hypothesis word) over all aligned positions, hits included."""

    pairs: Counter

    @classmethod
    def of(cls, references: list[str], hypotheses: list[str]) -> "WordEdits":
        """Align every (reference, hypothesis) pair of transcripts, in order, and count the word pairs."""
        if len(references) != len(hypotheses):
            raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
        pairs: Counter = Counter()
        for reference, hypothesis in zip(references, hypotheses):
            output = jiwer.process_words(reference, hypothesis)
            ref_words, hyp_words = output.references[0], output.hypotheses[0]
            for chunk in output.alignments[0]:
                refs = ref_words[chunk.ref_start_idx:chunk.ref_end_idx]
                hyps = hyp_words[chunk.hyp_start_idx:chunk.hyp_end_idx]
                if chunk.type in ("equal", "substitute"):
                    pairs.update(zip(refs, hyps))
                elif chunk.type == "delete":
                    pairs.update((word, GAP) for word in refs)
                else:
                    pairs.update((GAP, word) for word in hyps)
        return cls(pairs)

    @property
    def num_reference_words(self) -> int:
        return sum(count for (ref, _), count in self.pairs.items() if ref != GAP)

    @property
    def num_errors(self) -> int:
        return sum(count for (ref, hyp), count in self.pairs.items() if ref != hyp)

    def errors(self) -> list[tuple[str, str, int]]:
        """(reference, hypothesis, count) of every kind of error, most frequent first."""
        found = [(ref, hyp, count) for (ref, hyp), count in self.pairs.items() if ref != hyp]
        return sorted(found, key=lambda row: (-row[2], row[0], row[1]))

    def per_reference_word(self) -> list[tuple[str, int, int]]:
        """(reference word, occurrences, times not recognised) for every reference word, by occurrences."""
        seen: Counter = Counter()
        wrong: Counter = Counter()
        for (ref, hyp), count in self.pairs.items():
            if ref != GAP:
                seen[ref] += count
                wrong[ref] += count * (ref != hyp)
        return sorted(((word, seen[word], wrong[word]) for word in seen), key=lambda row: (-row[1], row[0]))


def read_hyps(path: Path, field: str) -> tuple[list[str], list[str]]:
    """(references, hypotheses) of a hyps.jsonl file; ValueError naming the file and line when a line is not JSON
    or lacks ``field``."""
    references, hypotheses = [], []
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON line ({error})") from None
            if field not in row:
                raise ValueError(f"{path}:{number}: no {field!r} field (fields: {', '.join(sorted(row))}); "
                                 "beam hypotheses exist only for evaluate.py --beam runs")
            references.append(row["reference"])
            hypotheses.append(row[field])
    if not references:
        raise ValueError(f"{path}: no utterances")
    return references, hypotheses
