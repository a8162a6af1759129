"""Pruning inside the real training loop: sparsity reached, masks in checkpoints, true nonzero counts in evaluation."""
import json

import pytest
import torch

import evaluate
from train import main
from training.checkpoint import load_checkpoint
from training.compose import compose_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gradual_run(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("gradual")
    overrides = [
        "model=ds2_tiny", "data=synth_tiny", "data.synth=null", f"data.train_manifest={tiny_corpus['train']}",
        f"data.dev_manifest={tiny_corpus['dev']}", f"data.test_manifest={tiny_corpus['test']}",
        "data.num_workers=0", "data.max_frames_per_batch=3000", f"trainer.output_dir={out}", "trainer.progress=false",
        "trainer.log_every_steps=1", "trainer.num_epochs=6", "trainer.eval_every_epochs=3", "optim=adamw",
        "pruning=gradual", "pruning.start_step=2", "pruning.ramp_step=8", "pruning.end_step=20", "pruning.freq=2",
        "pruning.target_sparsity=0.8",
    ]
    return out, main(compose_config(overrides))


def test_gradual_run_reaches_its_target_sparsity_and_reports_it(gradual_run):
    out, summary = gradual_run
    assert summary["sparsity"] == pytest.approx(0.8, abs=0.02)
    report = json.loads((out / "pruning_report.json").read_text())
    assert {row["group"] for row in report["tensors"]} == {"input", "recurrent", "fc"}
    assert (out / "sparsity_schedule.png").stat().st_size > 0
    sparsity = [r["sparsity"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert sparsity[0] == 0 and sparsity == sorted(sparsity)  # grows while masks update, then stays


def test_checkpointed_weights_are_masked_and_masks_are_saved(gradual_run):
    out, _ = gradual_run
    state = load_checkpoint(out)
    masks = state["pruning"]["masks"]
    assert masks, "no masks in the checkpoint"
    for name, mask in masks.items():
        weight = state["model"][name]
        assert torch.equal(weight[~mask], torch.zeros_like(weight[~mask])), name
    assert not any("mask" in key or key.endswith("_orig") for key in state["model"])  # model keys stay dense


def test_evaluation_reports_the_true_nonzero_count(gradual_run, tiny_corpus, tmp_path):
    out, _ = gradual_run
    [row] = evaluate.main([str(out / "checkpoints" / "last.pt"), "--manifest", str(tiny_corpus["dev"]),
                           "--out", str(tmp_path)])
    state = load_checkpoint(out)
    zeros = sum(int((~mask).sum()) for mask in state["pruning"]["masks"].values())
    assert row["params"] - row["nonzero_params"] >= zeros > 0
