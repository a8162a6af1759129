"""Sentences for the built-in corpus: essential-generators' Markov text, kept where espeak reads it as written."""
from __future__ import annotations

import contextlib
import random
import re
from dataclasses import dataclass
from typing import Iterator

from essential_generators import DocumentGenerator, document_generator, markov_textgen

from data.text import normalize_transcript

# Characters espeak-ng speaks exactly as the normalised transcript spells them (punctuation only shapes prosody).
_SPOKEN_AS_WRITTEN = re.compile(r"[A-Za-z .,;:!?'\"()-]+")
# Read letter by letter or as numbers ("NASA", "XIV"), or expanded ("Dr." -> "doctor", "U.S." -> "u s").
_ACRONYM = re.compile(r"\b[A-Z]{2,}")
_ABBREVIATION = re.compile(
    r"\b(?:[A-Za-z]\.){2,}|\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|Ft|Co|No|vs|etc|Inc|Ltd|Gen|Gov|Lt|Col|Sgt|Prof|Rev)\."
)
_DRAWS_PER_SENTENCE = 100  # give up after this many generator draws per sentence asked for


@dataclass(frozen=True)
class Sentence:
    """prompt: the text the synthesiser reads (punctuation kept); text: its normalised transcript."""

    prompt: str
    text: str


def speakable_transcript(sentence: str, min_words: int, max_words: int) -> str | None:
    """The normalised transcript of ``sentence``, or None when a synthesiser would not read it as written
    (digits, symbols, non-ASCII letters, acronyms, abbreviations) or it has fewer than ``min_words`` or more
    than ``max_words`` words."""
    if not _SPOKEN_AS_WRITTEN.fullmatch(sentence) or _ACRONYM.search(sentence) or _ABBREVIATION.search(sentence):
        return None
    text = normalize_transcript(sentence)
    return text if min_words <= len(text.split()) <= max_words else None


def generate_sentences(counts: dict[str, int], seed: int, min_words: int, max_words: int) -> dict[str, list[Sentence]]:
    """``counts[group]`` sentences for each group, drawn in the dict's order from one seeded stream.

    No normalised transcript appears twice, within or across groups, so a group drawn first never shares a
    sentence with a later one. Raises ``RuntimeError`` if the generator cannot supply enough sentences.
    """
    generator = DocumentGenerator()  # loads the Markov model: ~4 s, ~450 MB, freed on return
    with _module_random(random.Random(f"{seed}:sentences")):
        unique = _unique_sentences(generator, min_words, max_words)
        return {group: [next(unique) for _ in range(count)] for group, count in counts.items()}


def _unique_sentences(generator: DocumentGenerator, min_words: int, max_words: int) -> Iterator[Sentence]:
    seen: set[str] = set()
    draws = 0
    while True:
        draws += 1
        if draws > _DRAWS_PER_SENTENCE * (len(seen) + 10):
            raise RuntimeError(f"too few speakable sentences of {min_words}-{max_words} words after {draws} draws")
        prompt = generator.sentence()
        text = speakable_transcript(prompt, min_words, max_words)
        if text is not None and text not in seen:
            seen.add(text)
            yield Sentence(prompt, text)


@contextlib.contextmanager
def _module_random(rng: random.Random) -> Iterator[None]:
    """Make essential-generators draw from ``rng``: it calls the module-level ``random`` functions of these
    two modules (checked for essential-generators 1.0), which this swaps for ``rng`` and then restores."""
    modules = (document_generator, markov_textgen)
    saved = [module.random for module in modules]
    for module in modules:
        module.random = rng
    try:
        yield
    finally:
        for module, original in zip(modules, saved):
            module.random = original
