"""scripts/export.py (sizes, files, WER/CER of the exports against the checkpoint) and scripts/bench_sparse.py
(a seconds-long smoke run of every table)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from .conftest import VARIANTS, write_checkpoint

REPO = Path(__file__).resolve().parents[2]


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_script_writes_files_sizes_and_an_evaluation(checkpoints, digits_manifest, tmp_path):
    report = script("export").main([str(checkpoints["rnn"]), "--dtype", "fp32", "int8", "--manifest",
                                    str(digits_manifest), "--out", str(tmp_path)])
    for dtype in ("fp32", "int8"):
        assert (tmp_path / f"tiny_rnn.{dtype}.sds2").is_file()
    fp32, int8 = report["exports"]["fp32"], report["exports"]["int8"]
    assert fp32["max_weight_error"] == 0 and int8["sparse_bytes"] < fp32["sparse_bytes"] < fp32["sparse_dense_fp32_bytes"]
    base, exported_fp32, _ = report["evaluation"]
    assert exported_fp32["same_hypotheses"] == exported_fp32["num_utterances"] == base["num_utterances"] == 8
    assert (exported_fp32["wer"], exported_fp32["cer"]) == (base["wer"], base["cer"])
    assert "| export int8 |" in (tmp_path / "results.md").read_text()
    assert "**all sparse matrices**" in (tmp_path / "sizes.md").read_text()
    assert json.loads((tmp_path / "export.json").read_text())["checkpoint"] == str(checkpoints["rnn"])


def test_export_script_rejects_a_bad_block_shape(checkpoints):
    with pytest.raises(SystemExit):
        script("export").main([str(checkpoints["rnn"]), "--block", "4by4"])


def test_bench_script_smoke_run_writes_every_table(digits_manifest, tmp_path, monkeypatch):
    monkeypatch.setitem(VARIANTS, "rnn_on_corpus", [
        "data.synth=null", f"data.train_manifest={digits_manifest}", f"data.dev_manifest={digits_manifest}",
        f"data.test_manifest={digits_manifest}"])
    checkpoint = write_checkpoint(tmp_path / "ckpt.pt", "rnn_on_corpus")
    out = tmp_path / "bench"
    results = script("bench_sparse").main([
        "--quick", "--rounds", "1", "--sparsities", "0", "0.9", "--batches", "1", "4", "--steps", "3", "--checkpoints",
        str(checkpoint), "--prune", "0.9", "--utterances", "2", "--out", str(out)])
    assert len(results["layers"]) == 2 * 2 * 2 and len(results["recurrence"]) == 2 * 2 * 2
    assert all(r["runtime_path"] in ("sparse", "sparse-1-thread", "dense") and r["dense_us"] > 0 for r in results["layers"])
    [row] = results["e2e"]
    assert row["utterances"] == 2 and row["rtf_dense"] > 0 and row["rtf_sparse"] > 0
    assert row["cer_sparse"] == pytest.approx(row["cer_dense"])  # fp32 export: the same transcripts
    for name in ("layers", "recurrence", "e2e"):
        assert (out / f"{name}.md").read_text().count("|") > 10 and (out / f"{name}.csv").is_file()
    assert (out / "layers.png").stat().st_size > 0
