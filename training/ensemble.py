"""Posterior fusion of CTC models (an ensemble): per utterance and frame, the mean of the models' output
probabilities,

    log p(k | t) = log (1/M) sum_m p_m(k | t),

decoded like one model's log-probabilities. The models must share the tokenizer and the frame rate (the front-end's
strides), so that class k and frame t mean the same in each. CTC models trained apart need not put their spikes on
the same frames: one may emit every character two frames later than another, and the mean of a spike and a blank is
a blank. :func:`estimate_delays` finds each model's constant delay against the first from their posteriors alone
(no transcripts), and :func:`fuse_posteriors` shifts the models by it before averaging; spikes that still disagree
cost characters in greedy decoding, which a beam search over a lexicon repairs (docs/real_speech.md measures both).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from data.tokenizer import BLANK_ID, Tokenizer
from training.scoring import greedy_decode

#: log-probability of a class in a padded frame: finite, so that sums and the decoders stay finite
_LOG_ZERO = -1e4


def check_compatible(tokenizers: Sequence[Tokenizer], names: Sequence[str]) -> None:
    """Raise ValueError naming the first model whose tokenizer differs from the first one's."""
    reference = tokenizers[0].state_dict()
    for tokenizer, name in zip(tokenizers[1:], names[1:]):
        if tokenizer.state_dict() != reference:
            raise ValueError(f"ensemble: {name} has another tokenizer than {names[0]}; posteriors cannot be averaged")


def shift_frames(log_probs: torch.Tensor, delay: int) -> torch.Tensor:
    """(frames, num_classes) log-probabilities moved ``delay`` frames earlier (later when negative); the frames
    that open up are certain blanks. Same shape."""
    if delay == 0:
        return log_probs
    blank = torch.full_like(log_probs[:1], _LOG_ZERO)
    blank[0, BLANK_ID] = 0.0
    padding = blank.expand(min(abs(delay), len(log_probs)), -1)
    if delay > 0:
        return torch.cat([log_probs[delay:], padding])
    return torch.cat([padding, log_probs[:delay]])


def estimate_delays(per_model: Sequence[Sequence[torch.Tensor]], max_delay: int = 4) -> list[int]:
    """Each model's delay against model 0, in frames: the shift d in [-max_delay, max_delay] that maximises the
    expected agreement on non-blank classes, sum_u sum_t sum_(k != blank) p_0(k | t) p_m(k | t + d), over all
    utterances u. ``per_model[m][u]``: (frames, num_classes) log-probabilities. Returns [0, d_1, ...]."""
    _check_shapes(per_model)
    non_blank = [[_non_blank_probs(log_probs) for log_probs in emissions] for emissions in per_model]
    candidates = range(-max_delay, max_delay + 1)
    delays = [0]
    for probs in non_blank[1:]:
        delays.append(max(candidates, key=lambda d: (_agreement(non_blank[0], probs, d), -abs(d))))
    return delays


def _non_blank_probs(log_probs: torch.Tensor) -> torch.Tensor:
    """(frames, num_classes) log-probabilities -> probabilities with the blank column zeroed, same shape."""
    probs = log_probs.exp()
    probs[:, BLANK_ID] = 0.0
    return probs


def _agreement(reference: Sequence[torch.Tensor], other: Sequence[torch.Tensor], delay: int) -> float:
    """sum_u sum_t sum_k reference[u][t, k] other[u][t + delay, k] over the frames where both exist (frames
    shifted in from outside are blanks, which agree on no non-blank class)."""
    total = 0.0
    for ref, probs in zip(reference, other):
        overlap = len(ref) - abs(delay)
        if overlap > 0:
            ref_frames, other_frames = (ref[:overlap], probs[delay:]) if delay >= 0 else (ref[-delay:], probs[:overlap])
            total += float((ref_frames * other_frames).sum())
    return total


def fuse_posteriors(per_model: Sequence[Sequence[torch.Tensor]], delays: Sequence[int] | None = None
                    ) -> list[torch.Tensor]:
    """``per_model[m][u]``: model m's (frames, num_classes) log-probabilities of utterance u -> per utterance the log
    of the models' mean probabilities, (frames, num_classes), each model first moved ``delays[m]`` frames earlier
    (:func:`estimate_delays`; default: none)."""
    _check_shapes(per_model)
    delays = [0] * len(per_model) if delays is None else list(delays)
    if len(delays) != len(per_model):
        raise ValueError(f"ensemble: {len(delays)} delays for {len(per_model)} models")
    fused = []
    for frames in zip(*per_model):
        shifted = [shift_frames(log_probs, delay) for log_probs, delay in zip(frames, delays)]
        fused.append(torch.logsumexp(torch.stack(shifted), dim=0) - math.log(len(frames)))
    return fused


def _check_shapes(per_model: Sequence[Sequence[torch.Tensor]]) -> None:
    """ValueError unless there are two or more models with same-shaped log-probabilities for every utterance."""
    if len(per_model) < 2:
        raise ValueError(f"an ensemble needs at least two models, got {len(per_model)}")
    if len({len(emissions) for emissions in per_model}) != 1:
        raise ValueError(f"ensemble: the models scored different numbers of utterances {[len(e) for e in per_model]}")
    for index, frames in enumerate(zip(*per_model)):
        shapes = sorted({tuple(f.shape) for f in frames})
        if len(shapes) != 1:
            raise ValueError(f"ensemble: utterance {index} has log-probabilities of shapes {shapes} across the "
                             "models: their frame rates or output classes differ")


def greedy_texts(emissions: Sequence[torch.Tensor], tokenizer: Tokenizer) -> list[str]:
    """Best-path transcripts of per-utterance (frames, num_classes) log-probabilities."""
    return [greedy_decode(log_probs[None], torch.tensor([len(log_probs)]), tokenizer)[0] for log_probs in emissions]
