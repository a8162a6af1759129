"""The Table 3 driver: row configs, table arithmetic, and the smoke table end to end (train, skip, resume guard)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from paper_tables.evaluation import disk_sizes
from paper_tables.report import add_relative, gradual_vs_hard, relative
from paper_tables.rows import ROWS, ROWS_BY_NAME
from paper_tables.runner import RowRun
from training.compose import compose_config

REPO = Path(__file__).resolve().parents[2]


def load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reproduce_script", REPO / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("folder", ["table3_cpu", "table3_paper"])
def test_every_row_has_a_config_with_its_method_and_the_papers_width_ratio(folder):
    widths = {}
    for row in ROWS:
        cfg = compose_config([f"experiment={folder}/{row.name}"])
        assert cfg.pruning.method == {"dense": "none"}.get(row.method, row.method), row.name
        assert cfg.model.rnn_type == row.family
        assert cfg.model.fc_hidden_size == cfg.model.rnn_hidden_size
        widths[row.name] = cfg.model.rnn_hidden_size
    ratios = {"0.4 H": 0.4, "1.45 H": 1.45, "1.75 H": 1.75, "1.39 G": 1.39}
    for row in ROWS:
        if row.width in ratios:
            assert widths[row.name] / widths[row.baseline] == pytest.approx(ratios[row.width], abs=0.01), row.name
    assert {widths["rnn_hard_big"], widths["rnn_sparse_big"]} == {widths["rnn_sparse_big"]}
    if folder == "table3_paper":  # the paper's widths exactly
        assert [widths[n] for n in ("rnn_dense", "rnn_dense_small", "rnn_sparse_medium", "rnn_sparse_big")] == [
            1760, 704, 2560, 3072]
        assert widths["gru_sparse_medium"] == 3568


def test_hard_rows_match_a_gradual_row_of_the_same_width():
    for row in ROWS:
        if row.method == "hard":
            partner = ROWS_BY_NAME[row.matches]
            assert partner.method == "gradual" and partner.width == row.width
            assert ROWS.index(partner) < ROWS.index(row)  # trained before the hard row needs its sparsity


def test_select_rows_adds_the_gradual_row_a_hard_row_needs_and_rejects_unknown_rows():
    script = load_script()
    assert [r.name for r in script.select_rows(["rnn_hard_medium", "rnn_dense"])] == [
        "rnn_dense", "rnn_sparse_medium", "rnn_hard_medium"]
    with pytest.raises(SystemExit, match="unknown rows"):
        script.select_rows(["rnn_huge"])


def test_relative_performance_is_the_papers_definition():
    assert relative(10.67, 12.88) == pytest.approx(-0.2071, abs=1e-4)  # the paper's RNN sparse row
    assert relative(None, 0.5) is None
    records = [{"row": "rnn_dense", "dev_cer": 0.4, "test_cer": 0.5},
               {"row": "rnn_sparse", "dev_cer": 0.5, "test_cer": 0.4},
               {"row": "gru_sparse", "dev_cer": 0.3, "test_cer": 0.3}]
    add_relative(records)
    assert records[1]["dev_relative"] == pytest.approx(-0.25) and records[1]["test_relative"] == pytest.approx(0.2)
    assert records[2]["dev_relative"] is None  # its baseline gru_dense was not run


def test_gradual_vs_hard_pairs_rows_and_measures_the_gain_relative_to_hard():
    records = [
        {"row": "rnn_sparse", "method": "gradual", "width": "H", "units": 8, "nonzero_params": 10,
         "dev_cer": 0.30, "test_cer": 0.40},
        {"row": "rnn_hard", "method": "hard", "width": "H", "units": 8, "nonzero_params": 10,
         "dev_cer": 0.33, "test_cer": 0.40},
        {"row": "rnn_hard_big", "method": "hard", "width": "1.75 H", "units": 14, "nonzero_params": 20,
         "dev_cer": 0.3, "test_cer": 0.3},  # its gradual row was not run: no pair
    ]
    (pair,) = gradual_vs_hard(records)
    assert pair["gradual_row"] == "rnn_sparse" and pair["hard_row"] == "rnn_hard"
    assert pair["gradual_gain_dev"] == pytest.approx(0.03 / 0.33)
    assert pair["gradual_gain_test"] == pytest.approx(0.0)


def test_disk_sizes_count_csr_bytes_for_pruned_matrices_and_fp32_for_the_rest(tmp_path):
    run = RowRun(ROWS_BY_NAME["rnn_sparse"], tmp_path)
    tensors = [{"name": "w", "shape": [100, 200], "numel": 20000, "nonzeros": 2000}]
    (tmp_path / "pruning_report.json").write_text(json.dumps({"tensors": tensors}))
    sizes = disk_sizes(run, total_params=25000)
    assert sizes["size_dense_mb"] == pytest.approx(25000 * 4 / 1e6)
    # 5000 dense params * 4 B + 2000 nonzeros * (4 B value + 2 B column) + 101 row pointers * 4 B
    assert sizes["size_sparse_mb"] == pytest.approx((5000 * 4 + 2000 * 6 + 101 * 4) / 1e6)


@pytest.fixture(scope="module")
def smoke_table(tiny_corpus, tmp_path_factory):
    """The smoke table for a dense, a gradual and a hard row (the hard row pulls in its gradual row)."""
    out = tmp_path_factory.mktemp("table3_smoke")
    argv = ["--table", "smoke", "--rows", "rnn_dense", "rnn_hard", "--out", str(out),
            "--set", f"data.corpus_dir={tiny_corpus['train'].parent}", "trainer.threads=2", "trainer.progress=false"]
    records = load_script().main(argv)
    return out, argv, records


def test_smoke_table_trains_evaluates_and_writes_tables_and_plots(smoke_table):
    out, _, records = smoke_table
    by_row = {r["row"]: r for r in records}
    assert list(by_row) == ["rnn_dense", "rnn_sparse", "rnn_hard"]
    assert by_row["rnn_dense"]["pruned_sparsity"] == 0 and by_row["rnn_dense"]["dev_relative"] == 0
    sparse, hard = by_row["rnn_sparse"], by_row["rnn_hard"]
    assert sparse["pruned_sparsity"] > 0.5
    # the hard row is pruned to the sparsity its gradual row reached: the same nonzero count within 0.5%
    assert hard["nonzero_params"] == pytest.approx(sparse["nonzero_params"], rel=5e-3)
    assert sparse["size_sparse_mb"] < 0.5 * sparse["size_dense_mb"]
    for record in records:
        assert 0 <= record["test_cer"] and record["train_minutes"] > 0
    for name in ("table3.md", "table3.csv", "table3.json", "table4.md", "table4.csv", "table4.json",
                 "cer_vs_params.png", "loss_curves.png", "sparsity.png"):
        assert (out / name).stat().st_size > 0, name
    assert "| rnn_sparse | H |" in (out / "table3.md").read_text()
    assert "| H |" in (out / "table4.md").read_text() and "7-9%" in (out / "table4.md").read_text()


def test_smoke_table_rerun_skips_finished_rows_and_refuses_changed_settings(smoke_table):
    out, argv, records = smoke_table
    attempts = {r["row"]: len(json.loads((out / "runs" / r["row"] / "row.json").read_text())["attempts"])
                for r in records}
    again = load_script().main(argv)
    assert [r["test_cer"] for r in again] == [r["test_cer"] for r in records]
    for row, count in attempts.items():
        assert len(json.loads((out / "runs" / row / "row.json").read_text())["attempts"]) == count, row
    with pytest.raises(RuntimeError, match="--restart rnn_dense"):
        load_script().main([*argv, "optim.lr=5e-4"])
