"""Greedy CTC decoding and the one corpus-level scorer used by validation and by evaluate.py (pitfall 7).

WER and CER are corpus-level: total word (character) edits over total reference words (characters), not a
mean of per-utterance rates. Transcripts are compared exactly as normalised by data.text; no further
normalisation happens here.
"""
from __future__ import annotations

from dataclasses import dataclass

import jiwer
import torch

from data.tokenizer import BLANK_ID, Tokenizer


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer: Tokenizer) -> list[str]:
    """Best path decoding: argmax per frame, merge repeats, drop blanks.

    log_probs: (batch, time, num_classes); lengths: (batch,) valid frames per utterance.
    """
    best = log_probs.argmax(dim=-1).cpu()
    texts = []
    for path, length in zip(best, lengths.tolist()):
        path = torch.unique_consecutive(path[:length])
        texts.append(tokenizer.decode(i for i in path.tolist() if i != BLANK_ID))
    return texts


@dataclass
class Scores:
    """Corpus-level error rates in [0, inf) (fractions, not percent) and the counts behind them."""

    wer: float
    cer: float
    num_utterances: int
    num_words: int
    num_chars: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(vars(self))


def score(references: list[str], hypotheses: list[str]) -> Scores:
    """Corpus WER and CER of ``hypotheses`` against non-empty ``references`` (same order)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references or any(not ref.strip() for ref in references):
        raise ValueError("references must be a non-empty list of non-empty transcripts")
    words = jiwer.process_words(references, hypotheses)
    chars = jiwer.process_characters(references, hypotheses)
    return Scores(
        wer=words.wer,
        cer=chars.cer,
        num_utterances=len(references),
        num_words=sum(len(ref.split()) for ref in references),
        num_chars=sum(len(ref) for ref in references),
    )
