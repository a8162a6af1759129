"""Transcript normalisation to the Deep Speech 2 character alphabet (a-z, apostrophe, space)."""
from __future__ import annotations

import re
import unicodedata

#: Characters a normalised transcript may contain (the paper's 28 symbols; CTC blank is added by the tokenizer).
ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"

_ALLOWED = frozenset(ALPHABET)
_SEPARATORS = re.compile(r"[\s\-_/]+")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})


def normalize_transcript(text: str) -> str:
    """Lower-case, fold accents, turn hyphens and slashes into spaces, drop other punctuation.

    Returns a string over :data:`ALPHABET` with single spaces and no leading or trailing space
    (possibly empty). Digits and symbols are dropped, not spelled out: callers that care
    (corpus builders) should reject sentences containing them *before* normalising.
    """
    text = unicodedata.normalize("NFKD", text.translate(_QUOTES))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = _SEPARATORS.sub(" ", text)
    text = "".join(ch for ch in text if ch in _ALLOWED)
    text = re.sub(r"\s*'+\s*", lambda m: "'" if m.group(0) == "'" else " ", text)
    return " ".join(text.split())


def out_of_alphabet(text: str) -> set[str]:
    """The characters of ``text`` that are not in :data:`ALPHABET`."""
    return set(text) - _ALLOWED
