"""N-gram language models estimated from transcripts: interpolated modified Kneser-Ney (Chen & Goodman, 1998), over
words, or over characters (``unit="char"``: a sentence is its characters, the space written ``|`` as the decoder's
word separator, for a lexicon-free beam search that can spell words no transcript holds).

For an n-gram ``h w`` with (adjusted) count ``a(h w)`` after the context ``h``:

    P(w | h) = max(a(h w) - D_n(a(h w)), 0) / T(h) + gamma(h) * P(w | h')          (h' = h without its first word)
    T(h) = sum_v a(h v),   gamma(h) = (D_1 N_1(h .) + D_2 N_2(h .) + D_3 N_3+(h .)) / T(h)

and at order 1 the lower-order distribution is uniform over the vocabulary (``<unk>`` included, ``<s>`` excluded).
The highest order counts raw occurrences; lower orders count distinct left neighbours (continuation counts),
except n-grams starting with ``<s>``, which have none and keep raw counts (KenLM's convention). The discounts of
each order come from its counts of counts n_1..n_4:  Y = n_1 / (n_1 + 2 n_2),  D_k = k - (k + 1) Y n_{k+1} / n_k.

Written as a back-off model (:mod:`training.arpa`), the back-off weight of a context is the probability mass its
listed words leave, renormalised over the lower order:  b(h) = (1 - sum_w P(w | h)) / (1 - sum_w P(w | h')), the
sums over the listed ``h w``. Without pruning this equals gamma(h); with pruning it keeps every context normalised.
"""
from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from data.manifest import read_manifest
from data.text import normalize_transcript
from training.arpa import BOS, EOS, NEVER, UNK, Ngram, NgramModel, write_arpa

log = logging.getLogger(__name__)

UNITS = ("word", "char")
#: the space in a character LM: ARPA files separate their tokens with spaces (the decoder's separator token)
CHAR_SEPARATOR = "|"

#: used when the counts of counts cannot give discounts in (0, k) (tiny corpora); KenLM's --discount_fallback
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def count_ngrams(sentences: Iterable[Sequence[str]], order: int) -> list[Counter[Ngram]]:
    """Raw counts of every n-gram, n = 1..order, of the sentences padded as ``<s> w_1 .. w_k </s>``."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    counts: list[Counter[Ngram]] = [Counter() for _ in range(order)]
    for index, words in enumerate(sentences):
        reserved = {BOS, EOS, UNK}.intersection(words)
        if reserved:
            raise ValueError(f"sentence {index} contains the reserved token(s) {sorted(reserved)}: {' '.join(words)!r}")
        padded = (BOS, *words, EOS)
        for n in range(1, order + 1):
            counts[n - 1].update(padded[i:i + n] for i in range(len(padded) - n + 1))
    return counts


def adjusted_counts(raw: list[Counter[Ngram]]) -> list[dict[Ngram, int]]:
    """Raw counts at the highest order; continuation counts N_1+(. g) below it, raw for n-grams starting with <s>."""
    adjusted = [dict(counts) for counts in raw]
    for n in range(len(raw) - 1):
        continuation = Counter(gram[1:] for gram in raw[n + 1])
        adjusted[n] = {gram: count if gram[0] == BOS else continuation[gram] for gram, count in raw[n].items()}
    return adjusted


def discounts(counts: Iterable[int], label: str = "n-grams") -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts (D_1, D_2, D_3+) from one order's counts; the fallback (logged, naming
    ``label``) when they are degenerate."""
    n = Counter(c for c in counts if c <= 4)
    if all(n[k] > 0 for k in (1, 2, 3)):
        y = n[1] / (n[1] + 2 * n[2])
        estimate = tuple(k - (k + 1) * y * n[k + 1] / n[k] for k in (1, 2, 3))
        if all(0 < d < k for k, d in zip((1, 2, 3), estimate)):
            return estimate
    log.warning("%s: counts of counts n1..n4 = %s give no modified Kneser-Ney discounts in (0, k); using %s",
                label, [n[k] for k in (1, 2, 3, 4)], FALLBACK_DISCOUNTS)
    return FALLBACK_DISCOUNTS


def interpolated_probs(adjusted: list[dict[Ngram, int]]) -> list[dict[Ngram, float]]:
    """P(w | h) of every counted n-gram ``h w`` (linear, not log), and of ``<unk>``; ``<s>`` is left out."""
    probs: list[dict[Ngram, float]] = []
    for n, counts in enumerate(adjusted, start=1):
        grams = {gram: count for gram, count in counts.items() if gram != (BOS,)}
        d1, d2, d3 = discounts(grams.values(), f"{n}-grams")
        discount = {1: d1, 2: d2}
        totals: dict[Ngram, float] = defaultdict(float)
        gammas: dict[Ngram, float] = defaultdict(float)
        for gram, count in grams.items():
            totals[gram[:-1]] += count
            gammas[gram[:-1]] += discount.get(count, d3)
        gammas = {h: mass / totals[h] for h, mass in gammas.items()}
        if n == 1:
            vocabulary_size = len(grams) + ((UNK,) not in grams)
            lower = {gram: 1 / vocabulary_size for gram in grams}
        else:
            lower = {gram: probs[-1][gram[1:]] for gram in grams}
        probs.append({
            gram: (count - discount.get(count, d3)) / totals[gram[:-1]] + gammas[gram[:-1]] * lower[gram]
            for gram, count in grams.items()
        })
        if n == 1:
            probs[0].setdefault((UNK,), gammas[()] / vocabulary_size)
    return probs


def prune(raw: list[Counter[Ngram]], min_count: int) -> list[set[Ngram]]:
    """N-grams kept per order: orders >= 2 need ``min_count`` raw occurrences, unless they are the prefix
    (context) or the suffix (back-off) of a kept longer n-gram; unigrams are all kept."""
    kept: list[set[Ngram]] = [set() for _ in raw]
    for n in range(len(raw) - 1, -1, -1):
        kept[n] = {gram for gram, count in raw[n].items() if n == 0 or count >= min_count}
        if n + 1 < len(raw):
            kept[n] |= {gram[:-1] for gram in kept[n + 1]} | {gram[1:] for gram in kept[n + 1]}
    return kept


def kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3, min_count: int = 1) -> NgramModel:
    """Estimate an interpolated modified Kneser-Ney model of ``order`` and write it as a back-off model."""
    raw = count_ngrams(sentences, order)
    if not raw[0]:
        raise ValueError("no sentences to estimate a language model from")
    log.info("estimating Kneser-Ney probabilities of %s n-grams", "/".join(str(len(c)) for c in raw))
    probs = interpolated_probs(adjusted_counts(raw))
    kept = prune(raw, min_count)
    kept[0] |= {(UNK,)}
    kept[0].discard((BOS,))
    probs = [{gram: p for gram, p in order_probs.items() if gram in keep} for order_probs, keep in zip(probs, kept)]
    backoffs: list[dict[Ngram, float]] = []
    for n in range(1, order):
        left: dict[Ngram, float] = defaultdict(lambda: 1.0)  # 1 - sum of P(w | h) over the listed h w
        lower_left: dict[Ngram, float] = defaultdict(lambda: 1.0)  # 1 - sum of P(w | h') over the same w
        for gram, p in probs[n].items():
            left[gram[:-1]] -= p
            lower_left[gram[:-1]] -= probs[n - 1][gram[1:]]
        backoffs.append({h: left[h] / lower_left[h] for h in left})
    log10_probs = [{gram: math.log10(p) for gram, p in sorted(order_probs.items())} for order_probs in probs]
    log10_probs[0] = {(BOS,): NEVER, **log10_probs[0]}
    return NgramModel(log10_probs, [{h: math.log10(b) for h, b in sorted(bs.items())} for bs in backoffs])


def source_sentences(sources: Sequence[str | Path], unit: str = "word") -> list[list[str]]:
    """The words (or characters, spaces as ``|``) of every non-empty transcript of the sources: JSONL manifests,
    or plain-text files (any other suffix) of one sentence per line, normalised to the alphabet like transcripts.
    Empty transcripts and lines are counted and logged."""
    if unit not in UNITS:
        raise ValueError(f"LM unit must be one of {UNITS}, got {unit!r}")
    sentences, empty = [], 0
    for source in sources:
        for text in _source_texts(Path(source)):
            words = text.split()
            if words:
                sentences.append(words if unit == "word" else list(CHAR_SEPARATOR.join(words)))
            else:
                empty += 1
    if empty:
        log.warning("skipped %d empty transcripts in %s", empty, ", ".join(map(str, sources)))
    return sentences


def _source_texts(path: Path) -> Iterable[str]:
    """Transcripts of a manifest (``.jsonl``) or the normalised lines of a text file."""
    if path.suffix == ".jsonl":
        return (utterance.text for utterance in read_manifest(path))
    if not path.is_file():
        raise FileNotFoundError(f"LM text file not found: {path}")
    with path.open(encoding="utf-8") as lines:
        raw = lines.read().splitlines()
    with_digits = sum(any(ch.isdigit() for ch in line) for line in raw)
    if with_digits:
        log.warning("%s: %d of %d lines hold digits, which normalisation drops (spell numbers out beforehand)",
                    path, with_digits, len(raw))
    return [normalize_transcript(line) for line in raw]


def build_lm(sources: Sequence[str | Path], out: str | Path, order: int = 3, min_count: int = 1,
             unit: str = "word") -> NgramModel:
    """Estimate a Kneser-Ney model over ``unit`` on the transcripts of ``sources`` (JSONL manifests or text
    files, see :func:`source_sentences`) and write it to ``out`` (ARPA)."""
    sentences = source_sentences(sources, unit)
    counting = tqdm(sentences, desc="counting n-grams", unit=" sentences", disable=len(sentences) < 10_000)
    model = kneser_ney(counting, order, min_count)
    write_arpa(model, out)
    log.info("%s %d-gram LM from %d transcripts: %s n-grams -> %s", unit, order, len(sentences),
             "/".join(str(len(p)) for p in model.log10_probs), out)
    return model
