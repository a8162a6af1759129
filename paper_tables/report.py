"""The tables: one record per row (ours next to the paper's), Table 3 and the gradual-vs-hard table as markdown,
CSV and JSON."""
from __future__ import annotations

import json
from pathlib import Path

from data.atomic import write_csv_atomic, write_text_atomic
from paper_tables.evaluation import disk_sizes
from paper_tables.rows import PAPER_GRADUAL_OVER_HARD, ROWS_BY_NAME
from paper_tables.runner import RowRun


def relative(baseline_cer: float | None, cer: float) -> float | None:
    """The paper's relative performance: (CER_baseline - CER) / CER_baseline (positive = better than baseline)."""
    return None if not baseline_cer else (baseline_cer - cer) / baseline_cer


def row_record(run: RowRun, scores: dict[str, dict]) -> dict:
    """Everything the tables show about one row, as a flat dict (a CSV line)."""
    row, dev, test = run.row, scores["dev"], scores["test"]
    record = {
        "row": row.name, "family": row.family, "method": row.method, "width": row.width, "units": test["units"],
        "params": test["params"], "nonzero_params": test["nonzero_params"], "sparsity": test["sparsity"],
        "pruned_sparsity": run.pruned_sparsity() if row.method != "dense" else 0.0,
        "dev_cer": dev["cer"], "dev_wer": dev["wer"], "test_cer": test["cer"], "test_wer": test["wer"],
        "train_minutes": run.train_seconds() / 60, **disk_sizes(run, test["params"]),
        "checkpoint": test["checkpoint"],
    }
    if row.paper:
        record.update(paper_units=row.paper.units, paper_params_m=row.paper.params_m, paper_cer=row.paper.cer,
                      paper_relative=row.paper.relative)
    return record


def add_relative(records: list[dict]) -> None:
    """Relative dev and test CER of every row against its family's dense baseline row (when it was run)."""
    by_name = {r["row"]: r for r in records}
    for record in records:
        base = by_name.get(ROWS_BY_NAME[record["row"]].baseline)
        for split in ("dev", "test"):
            record[f"{split}_relative"] = relative(base and base[f"{split}_cer"], record[f"{split}_cer"])


def _pct(value: float | None, signed: bool = False) -> str:
    return "" if value is None else (f"{100 * value:+.2f}%" if signed else f"{100 * value:.2f}")


def table3_markdown(records: list[dict]) -> str:
    lines = [
        "| row | width | units | params | nonzero | sparsity (pruned matrices) | dev CER | test CER | test WER | relative (dev) "
        "| relative (test) | train min | MB dense | MB sparse | paper units | paper params | paper CER | paper relative |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"rnn": 0, "gru": 1, "dense": 0, "gradual": 1}
    shown = sorted((r for r in records if r["method"] != "hard"),
                   key=lambda r: (order[r["family"]], order[r["method"]], r["units"]))
    for r in shown:
        paper = (f"{r['paper_units']} | {r['paper_params_m']} M | {r['paper_cer']:.2f} | {r['paper_relative']:+.2f}%"
                 if "paper_cer" in r else " | | | ")
        lines.append(
            f"| {r['row']} | {r['width']} | {r['units']} | {r['params'] / 1e6:.3f} M | {r['nonzero_params'] / 1e6:.3f} M "
            f"| {100 * r['pruned_sparsity']:.1f}% | {_pct(r['dev_cer'])} | {_pct(r['test_cer'])} | {_pct(r['test_wer'])} "
            f"| {_pct(r['dev_relative'], True)} | {_pct(r['test_relative'], True)} | {r['train_minutes']:.1f} "
            f"| {r['size_dense_mb']:.2f} | {r['size_sparse_mb']:.2f} | {paper} |")
    return "\n".join(lines)


def gradual_vs_hard(records: list[dict]) -> list[dict]:
    """One record per hard row: its CERs next to its gradual row's, and how much better gradual is, relative
    to hard: (CER_hard - CER_gradual) / CER_hard (the paper: gradual better by 7-9%)."""
    by_name = {r["row"]: r for r in records}
    pairs = []
    for hard in (r for r in records if r["method"] == "hard"):
        gradual = by_name.get(ROWS_BY_NAME[hard["row"]].matches)
        if gradual is None:
            continue
        pairs.append({
            "width": hard["width"], "units": hard["units"], "gradual_row": gradual["row"], "hard_row": hard["row"],
            "gradual_nonzero": gradual["nonzero_params"], "hard_nonzero": hard["nonzero_params"],
            **{f"{kind}_{split}_cer": row[f"{split}_cer"] for kind, row in (("gradual", gradual), ("hard", hard))
               for split in ("dev", "test")},
            **{f"gradual_gain_{split}": relative(hard[f"{split}_cer"], gradual[f"{split}_cer"])
               for split in ("dev", "test")},
        })
    return pairs


def table4_markdown(pairs: list[dict]) -> str:
    lines = ["| width | units | nonzero gradual / hard | gradual dev CER | hard dev CER | gradual test CER "
             "| hard test CER | gradual better by (dev) | gradual better by (test) | paper |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        lines.append(
            f"| {p['width']} | {p['units']} | {p['gradual_nonzero'] / 1e6:.3f} M / {p['hard_nonzero'] / 1e6:.3f} M "
            f"| {_pct(p['gradual_dev_cer'])} | {_pct(p['hard_dev_cer'])} | {_pct(p['gradual_test_cer'])} "
            f"| {_pct(p['hard_test_cer'])} | {_pct(p['gradual_gain_dev'], True)} | {_pct(p['gradual_gain_test'], True)} "
            f"| {PAPER_GRADUAL_OVER_HARD} |")
    return "\n".join(lines)


def write_tables(out: Path, header: str, records: list[dict]) -> tuple[str, str]:
    """``table3.{md,csv,json}`` and ``table4.{md,csv,json}`` (gradual vs hard) in ``out``; returns the markdown."""
    pairs = gradual_vs_hard(records)
    table3 = f"{header}\n\n## Table 3: dense, sparse and larger sparse models\n\n{table3_markdown(records)}\n"
    table4 = f"{header}\n\n## Gradual vs hard pruning at equal nonzero parameters\n\n{table4_markdown(pairs)}\n"
    for name, markdown, data in (("table3", table3, records), ("table4", table4, pairs)):
        write_text_atomic(out / f"{name}.md", markdown)
        write_text_atomic(out / f"{name}.json", json.dumps(data, indent=2) + "\n")
        write_csv_atomic(out / f"{name}.csv", data)
    return table3, table4
