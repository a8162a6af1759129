"""Posterior fusion of CTC models (an ensemble): per utterance and frame, the mean of the models' output
probabilities,

    log p(k | t) = log (1/M) sum_m p_m(k | t),

decoded like one model's log-probabilities. The models must share the tokenizer and the frame rate (the front-end's
strides), so that class k and frame t mean the same in each. CTC models trained apart need not put their spikes on
the same frames: greedy decoding of fused posteriors can then lose characters where the spikes disagree, and a beam
search over a lexicon repairs most of it (docs/real_speech.md measures both).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from data.tokenizer import Tokenizer
from training.scoring import greedy_decode


def check_compatible(tokenizers: Sequence[Tokenizer], names: Sequence[str]) -> None:
    """Raise ValueError naming the first model whose tokenizer differs from the first one's."""
    reference = tokenizers[0].state_dict()
    for tokenizer, name in zip(tokenizers[1:], names[1:]):
        if tokenizer.state_dict() != reference:
            raise ValueError(f"ensemble: {name} has another tokenizer than {names[0]}; posteriors cannot be averaged")


def fuse_posteriors(per_model: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """``per_model[m][u]``: model m's (frames, num_classes) log-probabilities of utterance u -> per utterance the log
    of the models' mean probabilities, (frames, num_classes)."""
    if len(per_model) < 2:
        raise ValueError(f"an ensemble needs at least two models, got {len(per_model)}")
    if len({len(emissions) for emissions in per_model}) != 1:
        raise ValueError(f"ensemble: the models scored different numbers of utterances {[len(e) for e in per_model]}")
    fused = []
    for index, frames in enumerate(zip(*per_model)):
        shapes = sorted({tuple(f.shape) for f in frames})
        if len(shapes) != 1:
            raise ValueError(f"ensemble: utterance {index} has log-probabilities of shapes {shapes} across the "
                             "models: their frame rates or output classes differ")
        fused.append(torch.logsumexp(torch.stack(frames), dim=0) - math.log(len(frames)))
    return fused


def greedy_texts(emissions: Sequence[torch.Tensor], tokenizer: Tokenizer) -> list[str]:
    """Best-path transcripts of per-utterance (frames, num_classes) log-probabilities."""
    return [greedy_decode(log_probs[None], torch.tensor([len(log_probs)]), tokenizer)[0] for log_probs in emissions]
