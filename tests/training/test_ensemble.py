"""Posterior fusion (training/ensemble.py): the mean of probabilities on a hand-worked frame, the errors for models
that cannot be fused, and evaluate.py --ensemble on a model with itself (fusion must change nothing)."""
import json
import math

import pytest
import torch

import evaluate
from data.tokenizer import CharTokenizer
from training.ensemble import check_compatible, fuse_posteriors, greedy_texts

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
