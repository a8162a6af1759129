"""End-to-end training on the tiny synthetic corpus: smoke run, kill-and-resume, evaluate.py outputs."""
import json

import pytest
import torch

import evaluate
from train import main
from training.checkpoint import load_checkpoint
from training.compose import compose_config

pytestmark = pytest.mark.slow


def train_losses(run_dir) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


@pytest.fixture(scope="module")
def overfit_data(overfit_manifest) -> list[str]:
    """Model and data overrides: ds2_tiny on 8 training utterances, validated on the same 8."""
    return [
        "model=ds2_tiny", "data=synth_tiny", "data.synth=null", f"data.train_manifest={overfit_manifest}",
        f"data.dev_manifest={overfit_manifest}", f"data.test_manifest={overfit_manifest}", "data.num_workers=0",
        "data.features.stats_utterances=0", "data.max_frames_per_batch=100000", "trainer.progress=false",
    ]


@pytest.fixture(scope="module")
def overfit_run(overfit_data, tmp_path_factory):
    """60 full-batch steps on the 8 utterances: enough to start spelling them out."""
    out = tmp_path_factory.mktemp("overfit_run")
    overrides = [
        *overfit_data, f"trainer.output_dir={out}", "trainer.log_every_steps=1", "trainer.num_epochs=60",
        "trainer.eval_every_epochs=60", "optim=adamw", "optim.lr=3e-3", "optim.warmup_steps=0",
        "optim.lr_decay_per_epoch=1.0",
    ]
    return out, main(compose_config(overrides))


def test_training_lowers_the_loss_and_the_error_on_the_training_utterances(
    overfit_run, overfit_data, overfit_manifest, tmp_path
):
    out, summary = overfit_run
    losses = train_losses(out)
    assert losses[max(losses)] < 0.5 * losses[1]
    untrained = tmp_path / "untrained"
    main(compose_config([*overfit_data, f"trainer.output_dir={untrained}", "trainer.max_steps=1",
                         "trainer.num_epochs=1"]))
    rows = evaluate.main([str(untrained / "checkpoints" / "last.pt"), str(out / "checkpoints" / "best.pt"),
                          "--names", "untrained", "trained", "--manifest", str(overfit_manifest),
                          "--baseline", "untrained", "--out", str(tmp_path / "eval")])
    untrained_cer, trained_cer = rows[0]["cer"], rows[1]["cer"]
    # measured at commit 8c49b6c: untrained 1.91, trained 0.76; a model that only emits blanks scores exactly 1.0
    assert trained_cer < 0.85 and trained_cer < 0.5 * untrained_cer, (untrained_cer, trained_cer)
    assert summary["best_dev_cer"] == pytest.approx(trained_cer, abs=1e-9)


def test_evaluate_writes_hypotheses_results_and_table(overfit_run, overfit_manifest, tmp_path):
    out, _ = overfit_run
    rows = evaluate.main([str(out), "--manifest", str(overfit_manifest), "--out", str(tmp_path)])
    [row] = rows
    hyps = [json.loads(line) for line in (tmp_path / f"{row['name']}.hyps.jsonl").read_text().splitlines()]
    assert len(hyps) == 8 and {"reference", "hypothesis", "audio_filepath"} <= set(hyps[0])
    assert json.loads((tmp_path / "results.json").read_text())[0]["cer"] == row["cer"]
    assert row["name"] in (tmp_path / "results.md").read_text()
    assert row["params"] == row["nonzero_params"] > 0  # dense model


def test_checkpoint_holds_everything_a_resume_needs(overfit_run):
    out, _ = overfit_run
    state = load_checkpoint(out)
    for key in ("model", "optimizer", "scheduler", "sampler", "rng", "step", "epoch", "config",
                "feature_stats", "tokenizer", "pruning", "code_version", "format_version"):
        assert key in state, key
    assert state["step"] > 0 and state["config"]["model"]["name"]
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_killed_pruned_run_resumes_to_the_same_losses_masks_and_thresholds(tiny_corpus, tmp_path, tiny_run_overrides):
    extra = ["trainer.num_epochs=2", "data.max_frames_per_batch=3000", "data.augment.freq_masks=1",
             "data.augment.time_masks=1", "trainer.checkpoint_every_steps=3", "pruning=gradual",
             "pruning.start_step=2", "pruning.ramp_step=4", "pruning.end_step=9", "pruning.freq=2",
             "pruning.target_sparsity=0.5"]
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    overrides = lambda out: tiny_run_overrides(tiny_corpus["train"], tiny_corpus["dev"], out, *extra)  # noqa: E731
    main(compose_config(overrides(full_dir)))
    full = train_losses(full_dir)
    # "kill" after 5 steps: the last checkpoint is at step 3, so steps 4-5 are redone after resuming
    main(compose_config([*overrides(cut_dir), "trainer.max_steps=5"]))
    (cut_dir / "checkpoints" / "last.pt").unlink()
    (cut_dir / "checkpoints" / "step3.pt").rename(cut_dir / "checkpoints" / "last.pt")
    main(compose_config([*overrides(tmp_path / "ignored"), f"trainer.resume={cut_dir}"]))
    resumed = train_losses(cut_dir)
    assert sorted(resumed) == sorted(full) and len(full) > 5
    assert all(resumed[step] == full[step] for step in full), [(s, full[s], resumed[s]) for s in full]
    final_full, final_resumed = load_checkpoint(full_dir), load_checkpoint(cut_dir)
    for name, tensor in final_full["model"].items():
        assert torch.equal(tensor, final_resumed["model"][name]), name
    masks, resumed_masks = final_full["pruning"]["masks"], final_resumed["pruning"]["masks"]
    assert masks and all(torch.equal(mask, resumed_masks[name]) for name, mask in masks.items())
    assert final_full["pruning"]["thresholds"] == final_resumed["pruning"]["thresholds"]
    assert final_full["pruning"]["history"] == final_resumed["pruning"]["history"]


def test_evaluate_finds_the_test_split_of_a_synthetic_corpus_from_the_checkpoint(tiny_corpus, tmp_path):
    corpus_dir = tiny_corpus["train"].parent
    out = tmp_path / "run"
    main(compose_config(["model=ds2_tiny", "data=synth_tiny", f"data.corpus_dir={corpus_dir}", "data.num_workers=0",
                         f"trainer.output_dir={out}", "trainer.progress=false", "trainer.max_steps=1"]))
    [row] = evaluate.main([str(out), "--split", "test", "--out", str(tmp_path / "eval")])
    assert row["manifest"] == str(tiny_corpus["test"]) and row["num_utterances"] == 8


def test_averaged_checkpoint_evaluates_and_refuses_to_resume(overfit_run, overfit_data, tmp_path):
    from training.averaging import average_checkpoints
    from training.checkpoint import save_checkpoint
    from training.inference import load_model

    out, _ = overfit_run
    first, last = (load_checkpoint(out / "checkpoints" / name) for name in ("best.pt", "last.pt"))
    path = tmp_path / "average.pt"
    save_checkpoint(path, {k: v for k, v in average_checkpoints([first, last]).items() if k != "format_version"})
    loaded = load_model(path)
    weight = next(name for name, t in first["model"].items() if t.is_floating_point() and t.dim() == 2)
    assert torch.allclose(loaded.model.state_dict()[weight], (first["model"][weight] + last["model"][weight]) / 2)
    with pytest.raises(ValueError, match="average of checkpoints"):
        main(compose_config([*overfit_data, f"trainer.resume={path}"]))
