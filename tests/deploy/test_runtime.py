"""Export and the runtime: round trip of the deploy file, fp32 outputs equal to the masked dense model (DS2 RNN
and GRU, unstructured and block-pruned, native and fallback kernels), the int8 error bound, the planner."""
from __future__ import annotations

import time

import pytest
import torch

from deploy.export import export_model, max_weight_error, size_summary
from deploy.format import FORMAT_VERSION, is_sparse_name, load_bundle, save_bundle
from deploy.planner import Planner, column_bucket, pick, time_calls
from deploy.runtime import load_deployed
from training.inference import load_model

from .conftest import VARIANTS, random_batch, write_checkpoint

LENGTHS = [37, 50, 23]  # input frames: a padded batch of three


def export(checkpoint, folder, value_dtype="fp32", block=None):
    loaded = load_model(checkpoint)
    bundle = export_model(loaded, value_dtype, block)
    path = folder / f"model.{value_dtype}.sds2"
    save_bundle(path, bundle)
    return loaded, bundle, path


def outputs(model, num_features, lengths=LENGTHS, features=None):
    """Log-probabilities (zero on padded frames) and output lengths of a random padded batch (or ``features``)."""
    if features is None:
        features, lengths = random_batch(num_features, lengths)
    lengths = torch.as_tensor(lengths)
    with torch.no_grad():
        log_probs, out_lengths = model(features, lengths)
    mask = torch.arange(log_probs.shape[1])[None] < out_lengths[:, None]
    return log_probs * mask[..., None], out_lengths


@pytest.fixture(scope="module")
def fp32_exports(checkpoints, tmp_path_factory) -> dict:
    """variant -> (the checkpoint's masked dense model's outputs and lengths, the fp32 deploy file)."""
    folder = tmp_path_factory.mktemp("fp32_exports")
    exports = {}
    for variant, checkpoint in checkpoints.items():
        (folder / variant).mkdir()
        loaded, _, path = export(checkpoint, folder / variant)
        exports[variant] = (*outputs(loaded.model, 161), loaded.num_parameters(), path)
    return exports


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("policy", ["sparse", "dense"])
def test_fp32_export_equals_the_masked_dense_model(fp32_exports, variant, policy):
    expected, expected_lengths, num_parameters, path = fp32_exports[variant]
    deployed = load_deployed(path, policy=policy)
    got, got_lengths = outputs(deployed.model, 161)
    assert torch.equal(got_lengths, expected_lengths)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert deployed.num_parameters() == num_parameters


@pytest.mark.parametrize("variant", ["rnn", "gru"])
def test_fallback_kernels_give_the_same_outputs(fp32_exports, variant, fallback_kernels):
    expected, _, _, path = fp32_exports[variant]
    got, _ = outputs(load_deployed(path, policy="sparse").model, 161)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_an_utterance_gives_the_same_output_alone_and_in_a_padded_batch(fp32_exports):
    model = load_deployed(fp32_exports["gru"][3], policy="sparse").model
    features, lengths = random_batch(161, [40, 25, 31])
    batch, out_lengths = outputs(model, 161, lengths, features)
    alone, _ = outputs(model, 161, [40], features[:1])
    torch.testing.assert_close(batch[0, : out_lengths[0]], alone[0, : out_lengths[0]], rtol=0, atol=1e-5)


def test_deploy_file_round_trip(checkpoints, tmp_path):
    loaded, bundle, path = export(checkpoints["rnn"], tmp_path)
    raw = torch.load(path, weights_only=True)  # plain tensors only: no code runs on load
    assert raw["format"] == "sparse-ds2-deploy" and raw["version"] == FORMAT_VERSION
    again = load_bundle(path)
    assert set(again["sparse"]) == {n for n in loaded.model.state_dict() if is_sparse_name(n)}
    for name, matrix in bundle["sparse"].items():
        assert torch.equal(again["sparse"][name].to_dense(), matrix.to_dense())
        assert torch.equal(again["sparse"][name].to_dense(), loaded.model.state_dict()[name])
    for name, tensor in bundle["dense"].items():
        assert torch.equal(again["dense"][name], tensor)
    assert again["meta"]["source_step"] == 7 and again["meta"]["value_dtype"] == "fp32"
    summary = size_summary(bundle, path)
    assert summary["sparse_bytes"] < summary["sparse_dense_fp32_bytes"] and summary["file_bytes"] > 0


def test_int8_export_error_bound(checkpoints, tmp_path):
    loaded, bundle, path = export(checkpoints["rnn"], tmp_path, "int8")
    half_step = max(float(m.scales.max()) / 2 for m in bundle["sparse"].values())
    assert 0 < max_weight_error(loaded, bundle) <= half_step * (1 + 1e-5)
    expected, _ = outputs(loaded.model, 161)
    got, _ = outputs(load_deployed(path, policy="sparse").model, 161)
    probs_error = (got.exp() - expected.exp()).abs().max()
    assert 0 < probs_error < 0.05  # regression bound on the output probabilities of this model, not a proof
    summary = size_summary(bundle, path)
    assert summary["sparse_value_bytes"] == summary["stored_values"]  # one byte per stored value


def test_fp16_export_rounds_weights_to_nearest_and_stays_close(checkpoints, tmp_path):
    loaded, bundle, path = export(checkpoints["gru"], tmp_path, "fp16")
    state = loaded.model.state_dict()
    for name, matrix in bundle["sparse"].items():
        assert torch.all((matrix.to_dense() - state[name]).abs() <= state[name].abs() * 2.0 ** -11), name
    expected, _ = outputs(loaded.model, 161)
    got, _ = outputs(load_deployed(path, policy="sparse").model, 161)
    assert (got.exp() - expected.exp()).abs().max() < 1e-3


def test_block_pruned_checkpoint_exports_block_csr(checkpoints, tmp_path):
    loaded, bundle, _ = export(checkpoints["rnn_block"], tmp_path)
    state = loaded.model.state_dict()
    for name, matrix in bundle["sparse"].items():
        assert matrix.block == (4, 4), name
        blocks = state[name].view(8, 4, -1, 4).abs().amax(dim=(1, 3))  # 32-wide matrices: whole 4x4 blocks
        assert matrix.num_blocks == int(torch.count_nonzero(blocks)), name
    _, csr_bundle, _ = export(checkpoints["rnn_block"], tmp_path, block=(1, 1))
    assert all(m.block == (1, 1) for m in csr_bundle["sparse"].values())


def test_loading_anything_but_a_deploy_file_is_a_clear_error(checkpoints, tmp_path):
    with pytest.raises(ValueError, match="not a deploy file"):
        load_bundle(checkpoints["rnn"])
    torch.save({"format": "sparse-ds2-deploy", "version": 99}, tmp_path / "future.sds2")
    with pytest.raises(ValueError, match="version 99"):
        load_bundle(tmp_path / "future.sds2")
    with pytest.raises(FileNotFoundError):
        load_bundle(tmp_path / "missing.sds2")


def test_lstm_models_are_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setitem(VARIANTS, "lstm", ["model.rnn_type=lstm"])
    checkpoint = write_checkpoint(tmp_path / "lstm.pt", "lstm")
    with pytest.raises(ValueError, match="'lstm'"):
        export_model(load_model(checkpoint))


def test_planner_picks_the_faster_candidate_once_per_bucket():
    calls = {"slow": 0, "fast": 0}

    def slow():
        calls["slow"] += 1
        time.sleep(0.003)

    def fast():
        calls["fast"] += 1

    planner = Planner("auto")
    device = torch.device("cpu")
    assert planner.choose(("layer", 4), {"sparse": slow, "dense": fast}, device) == "dense"
    measured = calls["slow"]
    assert planner.choose(("layer", 4), {"sparse": slow, "dense": fast}, device) == "dense"
    assert calls["slow"] == measured  # the decision is remembered, not measured again
    assert Planner("sparse").choose("key", {"sparse": slow, "dense": fast}, device) == "sparse"
    assert [column_bucket(n) for n in (1, 2, 3, 4, 5, 1000)] == [1, 2, 4, 4, 8, 1024]
    with pytest.raises(ValueError, match="policy"):
        Planner("fastest")


def test_planner_keeps_dense_unless_sparse_wins_by_the_margin():
    assert pick({"dense": 1.0, "sparse": 0.95}, margin=1.1) == "dense"  # a near-tie stays dense
    assert pick({"dense": 1.0, "sparse": 0.95, "sparse-1-thread": 0.9}, margin=1.1) == "sparse-1-thread"
    assert pick({"dense": 1.0, "sparse": 0.95}, margin=1.0) == "sparse"
    assert pick({"sparse": 2.0, "sparse-1-thread": 1.0}, margin=1.1) == "sparse-1-thread"  # dense not measured
    with pytest.raises(ValueError, match="margin"):
        Planner("auto", margin=0.9)


def test_time_calls_interleaves_the_candidates():
    order = []
    timings = time_calls({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, torch.device("cpu"),
                         min_seconds=0.0, repeats=2)
    assert order == ["a", "b", "a", "b", "a", "b"]  # warm-up, then one call each per round
    assert set(timings) == {"a", "b"} and all(t >= 0 for t in timings.values())
