"""Posterior fusion (training/ensemble.py): the mean of probabilities on a hand-worked frame, the errors for models
that cannot be fused, and evaluate.py --ensemble on a model with itself (fusion must change nothing)."""
import json
import math

import pytest
import torch

import evaluate
from data.tokenizer import CharTokenizer
from training.ensemble import check_compatible, estimate_delays, fuse_posteriors, greedy_texts, shift_frames

TOKENIZER = CharTokenizer()


def log_probs(rows: list[list[float]]) -> torch.Tensor:
    """(frames, 29) log-probabilities putting the given probabilities on classes 0, 1, 2 ("blank", " ", "'")."""
    full = torch.full((len(rows), 29), 1e-9)
    full[:, :3] = torch.tensor(rows)
    return torch.log(full / full.sum(-1, keepdim=True))


def test_fusion_is_the_mean_of_the_probabilities():
    a = [log_probs([[0.8, 0.2, 0.0]]), log_probs([[0.1, 0.1, 0.8]])]
    b = [log_probs([[0.2, 0.6, 0.2]]), log_probs([[0.1, 0.1, 0.8]])]
    fused = fuse_posteriors([a, b])
    assert fused[0].exp()[0, :3].tolist() == pytest.approx([0.5, 0.4, 0.1], abs=1e-6)
    assert torch.allclose(fused[1], a[1], atol=1e-6)  # models that agree keep their posteriors
    assert torch.allclose(fused[0].exp().sum(-1), torch.ones(1))


def spiky_emissions(num_frames: int, seed: int) -> torch.Tensor:
    """(num_frames, 29) CTC-like log-probabilities: blank, except a confident character every 5th frame."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.zeros(num_frames, 29)
    logits[:, 0] = 6.0
    spikes = torch.arange(2, num_frames - 2, 5)
    logits[spikes, torch.randint(1, 29, (len(spikes),), generator=generator)] = 12.0
    return logits.log_softmax(-1)


def test_a_model_that_emits_later_is_aligned_before_fusion():
    first = [spiky_emissions(40, seed) for seed in range(3)]
    late = [shift_frames(log_probs, -2) for log_probs in first]  # every spike two frames later
    assert torch.allclose(shift_frames(late[0], 2)[:-2], first[0][:-2])
    assert estimate_delays([first, late]) == [0, 2]
    assert estimate_delays([first, first]) == [0, 0]
    short = [torch.zeros(3, 29).log_softmax(-1)]  # fewer frames than the largest shift tried
    early = [shift_frames(log_probs, 3) for log_probs in first + short]  # every spike three frames earlier
    assert estimate_delays([first + short, late + short, early]) == [0, 2, -3]
    tokenizer = CharTokenizer()
    unaligned = greedy_texts(fuse_posteriors([first, late]), tokenizer)
    aligned = greedy_texts(fuse_posteriors([first, late], [0, 2]), tokenizer)
    assert aligned == greedy_texts(first, tokenizer) != unaligned  # the mean of a spike and a blank is a blank
    with pytest.raises(ValueError, match="1 delays for 2 models"):
        fuse_posteriors([first, late], [0])


def test_models_that_cannot_be_fused_are_named():
    one = [log_probs([[0.5, 0.5, 0.0]])]
    with pytest.raises(ValueError, match="at least two models"):
        fuse_posteriors([one])
    with pytest.raises(ValueError, match="different numbers of utterances"):
        fuse_posteriors([one, one * 2])
    with pytest.raises(ValueError, match=r"utterance 0 .*frame rates"):
        fuse_posteriors([one, [log_probs([[0.5, 0.5, 0.0]] * 2)]])

    class OtherTokenizer(CharTokenizer):
        def state_dict(self):
            return {"kind": "other"}

    with pytest.raises(ValueError, match="ensemble: b has another tokenizer than a"):
        check_compatible([TOKENIZER, OtherTokenizer()], ["a", "b"])


def test_greedy_texts_merge_repeats_and_drop_blanks():
    ids = [TOKENIZER.encode("ab")[0]] * 2 + [0] + [TOKENIZER.encode("b")[0]]
    emissions = torch.full((len(ids), 29), -30.0)
    emissions[torch.arange(len(ids)), ids] = 0.0
    assert greedy_texts([emissions], TOKENIZER) == ["ab"]


@pytest.mark.slow
def test_an_ensemble_of_a_model_with_itself_scores_as_the_model(tiny_run, tmp_path):
    out = tmp_path / "eval"
    rows = evaluate.main([str(tiny_run), str(tiny_run), "--names", "a", "b", "--ensemble", "--out", str(out)])
    single, fused = rows[0], rows[2]
    assert fused["name"] == "ensemble" and fused["members"] == ["a", "b"]
    assert (fused["wer"], fused["cer"]) == (single["wer"], single["cer"])
    assert fused["params"] == 2 * single["params"] and math.isclose(fused["sparsity"], single["sparsity"])
    ensemble_hyps = [json.loads(line)["hypothesis"] for line in (out / "ensemble.hyps.jsonl").read_text().splitlines()]
    assert ensemble_hyps == [json.loads(line)["hypothesis"] for line in (out / "a.hyps.jsonl").read_text().splitlines()]
    assert "| ensemble |" in (out / "results.md").read_text()
    with pytest.raises(SystemExit):
        evaluate.main([str(tiny_run), "--ensemble", "--out", str(out)])
