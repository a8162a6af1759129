"""Re-estimated batch-norm statistics (training/batch_norm.py): the statistics of the norms' own inputs, dropout
off, nothing else changed; scripts/average_checkpoints.py --batch-norm-utterances; evaluate.py --adapt-batch-norm."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import evaluate
from data.manifest import read_manifest
from training.batch_norm import recompute_batch_norm
from training.checkpoint import load_checkpoint
from training.inference import load_model

ROOT = Path(__file__).resolve().parents[2]


def norms_of(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def dev_dataset(loaded, tiny_corpus):
    return loaded.frontend.dataset(read_manifest(tiny_corpus["dev"]), loaded.data_cfg, train=False)


def test_statistics_are_those_of_the_norms_inputs_and_nothing_else_changes(tiny_run, tiny_corpus):
    loaded = load_model(tiny_run)
    model, dataset = loaded.model, dev_dataset(loaded, tiny_corpus)
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    inputs = {}
    hooks = [norm.register_forward_hook(lambda m, args, out: inputs.setdefault(m, args[0].detach()))
             for norm in norms_of(model)]
    assert recompute_batch_norm(model, dataset, torch.device("cpu"), max_frames_per_batch=10**7) == len(inputs) == 3
    for hook in hooks:
        hook.remove()
    for norm, x in inputs.items():  # one batch: the running statistics are that batch's, over the valid frames
        x = x.transpose(0, 1).reshape(x.shape[1], -1)  # (num_valid, C[, L]) -> (C, values)
        torch.testing.assert_close(norm.running_mean, x.mean(dim=1))
        torch.testing.assert_close(norm.running_var, x.var(dim=1, unbiased=True))
        assert norm.momentum == 0.1 and not norm.training
    assert not model.training
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())


def test_dropout_is_off_while_measuring(tiny_run, tiny_corpus):
    loaded = load_model(tiny_run)
    loaded.model.dropout.p = 0.5
    dataset = dev_dataset(loaded, tiny_corpus)
    runs = []
    for _ in range(2):
        recompute_batch_norm(loaded.model, dataset, torch.device("cpu"), max_frames_per_batch=2000)
        runs.append([norm.running_var.clone() for norm in norms_of(loaded.model)])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_average_with_training_statistics(tiny_run, tmp_path):
    spec = importlib.util.spec_from_file_location("average_checkpoints", ROOT / "scripts" / "average_checkpoints.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    last = tiny_run / "checkpoints" / "last.pt"
    script.main([str(last), str(last), "--out", str(tmp_path / "plain.pt")])
    script.main([str(last), str(last), "--out", str(tmp_path / "bn.pt"), "--batch-norm-utterances", "5"])
    plain, recomputed = load_checkpoint(tmp_path / "plain.pt"), load_checkpoint(tmp_path / "bn.pt")
    assert recomputed["batch_norm_statistics"] == {"split": "train", "utterances": 5, "seed": 0}
    means = [name for name in plain["model"] if name.endswith("running_mean")]
    assert means and all(not torch.equal(plain["model"][n], recomputed["model"][n]) for n in means)
    weights = [name for name in plain["model"] if name.endswith("weight")]
    assert all(torch.equal(plain["model"][n], recomputed["model"][n]) for n in weights)


def test_evaluate_adapts_to_the_split_and_says_so(tiny_run, tmp_path):
    [plain] = evaluate.main([str(tiny_run), "--split", "dev", "--out", str(tmp_path / "plain")])
    [adapted] = evaluate.main([str(tiny_run), "--split", "dev", "--adapt-batch-norm", "--out", str(tmp_path / "bn")])
    assert not plain["batch_norm_adapted"] and adapted["batch_norm_adapted"]
    assert adapted["loss"] != plain["loss"]
    assert "--adapt-batch-norm" in (tmp_path / "bn" / "results.md").read_text()
    assert json.loads((tmp_path / "bn" / "results.json").read_text())[0]["batch_norm_adapted"] is True


def test_evaluate_adapts_each_split_once_for_greedy_beam_and_tuning(tiny_run, tmp_path, monkeypatch):
    pytest.importorskip("flashlight.lib.text.decoder.kenlm", reason="needs the optional extra 'lm'")
    passes = []

    def counted(model, dataset, *args, **kwargs):
        passes.append(len(dataset))
        return recompute_batch_norm(model, dataset, *args, **kwargs)

    monkeypatch.setattr(evaluate, "recompute_batch_norm", counted)
    [row] = evaluate.main([str(tiny_run), "--split", "test", "--adapt-batch-norm", "--beam", "4", "--lm", "train", "--tune",
                           "--tune-lm-weights", "0", "--tune-word-scores", "0", "--out", str(tmp_path / "bn")])
    assert row["batch_norm_adapted"] and row["beam_wer"] >= 0
    assert len(passes) == 2            # test (greedy and beam share the adapted copy) and dev (tuning)
