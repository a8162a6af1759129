import math

import pytest
import torch

from data.tokenizer import CharTokenizer
from training.loss import ctc_losses, ctc_min_frames_batch
from training.scoring import greedy_decode, score

TOKENIZER = CharTokenizer()


def one_hot_log_probs(paths: list[list[int]], num_classes: int = 29) -> torch.Tensor:
    """(batch, time, classes) log-probs whose argmax follows ``paths`` (padded with blanks)."""
    time = max(len(p) for p in paths)
    log_probs = torch.full((len(paths), time, num_classes), -10.0)
    for b, path in enumerate(paths):
        for t in range(time):
            log_probs[b, t, path[t] if t < len(path) else 0] = 0.0
    return log_probs


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    a, b, space = TOKENIZER.encode("a")[0], TOKENIZER.encode("b")[0], TOKENIZER.encode(" ")[0]
    paths = [[a, a, 0, a, b, b, space, 0, b], [0, 0, 0], [a, b, a, a]]
    log_probs = one_hot_log_probs(paths)
    assert greedy_decode(log_probs, torch.tensor([9, 3, 2]), TOKENIZER) == ["aab b", "", "ab"]


def test_corpus_level_scores_on_a_hand_worked_example():
    # utterance 1: 1 substitution out of 3 words; utterance 2: empty hypothesis, 2 deletions out of 2 words.
    scores = score(["the cat sat", "a dog"], ["the cat sit", ""])
    assert scores.wer == pytest.approx(3 / 5)  # corpus level; the per-utterance mean would be (1/3 + 1) / 2
    # characters: 1 substitution ("a"->"i") of 11, then 5 deletions of 5
    assert scores.cer == pytest.approx(6 / 16)
    assert (scores.num_utterances, scores.num_words, scores.num_chars) == (2, 5, 16)


def test_score_rejects_empty_references_and_length_mismatch():
    with pytest.raises(ValueError, match="non-empty"):
        score(["ok", ""], ["ok", "x"])
    with pytest.raises(ValueError, match="2 references but 1"):
        score(["a", "b"], ["a"])


def test_ctc_loss_flags_infeasible_utterances_instead_of_returning_inf():
    targets = torch.tensor([1, 1, 2, 3, 4, 5])  # "aa" needs 3 frames; "bcde" needs 4
    target_lengths = torch.tensor([2, 4])
    assert ctc_min_frames_batch(targets, target_lengths).tolist() == [3, 4]
    log_probs = torch.randn(2, 5, 29).log_softmax(-1).requires_grad_()
    losses, feasible = ctc_losses(log_probs, torch.tensor([5, 3]), targets, target_lengths)
    assert feasible.tolist() == [True, False]
    values = losses.detach().tolist()
    assert math.isfinite(values[0]) and values[0] > 0 and values[1] == 0
    losses[feasible].mean().backward()
    assert torch.isfinite(log_probs.grad).all()
