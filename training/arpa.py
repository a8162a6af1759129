"""Back-off n-gram models in the ARPA text format: an in-memory model, its writer, its reader and its queries.

An n-gram ``g = (w_1, ..., w_n)`` has ``log10 P(w_n | w_1..w_{n-1})`` and, when it is the context of longer
n-grams, a ``log10`` back-off weight. The probability of a word after a context is the back-off recursion

    P(w | h) = P_table(h w)                    if h w is listed
             = b(h) * P(w | h without its first word)   otherwise (b(h) = 1 when h is not listed)

which is how KenLM, and so flashlight-text's decoder, reads the file. Words outside the unigrams are ``<unk>``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data.atomic import atomic_path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
#: log10 probability written for ``<s>``, which is never predicted (the convention of SRILM and KenLM)
NEVER = -99.0

Ngram = tuple[str, ...]


class ArpaError(ValueError):
    """An ARPA file that cannot be read; the message names the file and line."""


@dataclass
class NgramModel:
    """``log10_probs[n - 1]`` and ``log10_backoffs[n - 1]`` map n-grams of order n to log10 values."""

    log10_probs: list[dict[Ngram, float]]
    log10_backoffs: list[dict[Ngram, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.log10_probs or not self.log10_probs[0]:
            raise ValueError("an n-gram model needs at least one unigram")
        self.log10_backoffs += [{} for _ in range(self.order - len(self.log10_backoffs))]

    @property
    def order(self) -> int:
        return len(self.log10_probs)

    @property
    def vocabulary(self) -> list[str]:
        """The unigrams, in file order (``<s>``, ``</s>`` and ``<unk>`` included when listed)."""
        return [gram[0] for gram in self.log10_probs[0]]

    def log10_prob(self, context: Sequence[str], word: str) -> float:
        """log10 P(word | context) by the back-off recursion; unknown words count as ``<unk>``."""
        unigrams = self.log10_probs[0]
        word, *history = (w if (w,) in unigrams else UNK for w in (word, *context))
        if (word,) not in unigrams:
            raise KeyError(f"the model has no {UNK} for out-of-vocabulary words")
        history = tuple(history[-(self.order - 1):]) if self.order > 1 else ()
        backoff = 0.0
        for start in range(len(history) + 1):
            gram = history[start:] + (word,)
            if gram in self.log10_probs[len(gram) - 1]:
                return backoff + self.log10_probs[len(gram) - 1][gram]
            backoff += self.log10_backoffs[len(gram) - 2].get(history[start:], 0.0)
        raise AssertionError("unreachable: the unigram of a known word is listed")

    def sentence_log10_prob(self, words: Sequence[str]) -> float:
        """log10 P(words </s> | <s>)."""
        history = [BOS]
        total = 0.0
        for word in [*words, EOS]:
            total += self.log10_prob(history, word)
            history.append(word)
        return total


def write_arpa(model: NgramModel, path: str | Path) -> None:
    """Write ``model`` as an ARPA file atomically (log10 values with 7 decimals, back-offs only where non-zero)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        out.write("\\data\\\n")
        for n, probs in enumerate(model.log10_probs, start=1):
            out.write(f"ngram {n}={len(probs)}\n")
        for n, (probs, backoffs) in enumerate(zip(model.log10_probs, model.log10_backoffs), start=1):
            out.write(f"\n\\{n}-grams:\n")
            for gram, log10_prob in probs.items():
                backoff = backoffs.get(gram, 0.0)
                tail = f"\t{backoff:.7f}" if n < model.order and backoff != 0.0 else ""
                out.write(f"{log10_prob:.7f}\t{' '.join(gram)}{tail}\n")
        out.write("\n\\end\\\n")


def read_arpa(path: str | Path) -> NgramModel:
    """Read an ARPA file (as written by KenLM, SRILM or :func:`write_arpa`); checks the declared counts."""
    path = Path(path)
    if not path.is_file():
        raise ArpaError(f"ARPA file not found: {path}")
    declared: list[int] = []
    probs: list[dict[Ngram, float]] = []
    backoffs: list[dict[Ngram, float]] = []
    section = None  # "data", an order n >= 1, or "end"
    with path.open(encoding="utf-8") as lines:
        for line_number, raw in enumerate(lines, start=1):
            line = raw.strip()
            where = f"{path}:{line_number}"
            if not line or section == "end":
                continue
            if line == "\\data\\":
                section = "data"
            elif line == "\\end\\":
                section = "end"
            elif line.startswith("\\") and line.endswith("-grams:"):
                section = _section_order(line, len(probs), where)
                probs.append({})
                backoffs.append({})
            elif section == "data":
                declared.append(_declared_count(line, len(declared), where))
            elif isinstance(section, int):
                _read_entry(line, section, probs[-1], backoffs[-1], where)
            else:
                raise ArpaError(f"{where}: text before the \\data\\ header: {line[:60]!r}")
    if section != "end":
        raise ArpaError(f"{path}: no \\end\\ marker (truncated file?)")
    found = [len(p) for p in probs]
    if found != declared:
        raise ArpaError(f"{path}: header declares n-gram counts {declared} but the file lists {found}")
    return NgramModel(probs, backoffs)


def _section_order(line: str, num_read: int, where: str) -> int:
    try:
        order = int(line[1:-len("-grams:")])
    except ValueError:
        raise ArpaError(f"{where}: bad section header {line!r}") from None
    if order != num_read + 1:
        raise ArpaError(f"{where}: section {order}-grams follows {num_read}-grams")
    return order


def _declared_count(line: str, num_read: int, where: str) -> int:
    key, _, value = line.partition("=")
    if key.split() != ["ngram", str(num_read + 1)] or not value.strip().isdigit():
        raise ArpaError(f"{where}: expected 'ngram {num_read + 1}=<count>', got {line!r}")
    return int(value)


def _read_entry(line: str, order: int, probs: dict, backoffs: dict, where: str) -> None:
    parts = line.split()
    if len(parts) not in (order + 1, order + 2):
        raise ArpaError(f"{where}: a {order}-gram line needs a log10 probability, {order} words and an optional "
                        f"back-off; got {line!r}")
    try:
        values = [float(parts[0])] + ([float(parts[-1])] if len(parts) == order + 2 else [])
    except ValueError:
        raise ArpaError(f"{where}: not a number in {line!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ArpaError(f"{where}: non-finite value in {line!r}")
    gram = tuple(parts[1:order + 1])
    probs[gram] = values[0]
    if len(values) == 2 and values[1] != 0.0:
        backoffs[gram] = values[1]
