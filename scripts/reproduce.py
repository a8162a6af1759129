"""Regenerate the paper's Table 3 and its gradual-vs-hard comparison: train every row (resumably), evaluate all
rows on the same dev and test manifests, write tables, CSV/JSON and plots.

    python scripts/reproduce.py --table cpu             # 12 rows on the built-in synth corpus, ~2 h on 2 CPU cores
    python scripts/reproduce.py --table smoke           # the same driver on the tiny corpus, minutes
    python scripts/reproduce.py --table paper --set trainer.device=cuda   # paper widths on LibriSpeech (GPU)
    python scripts/reproduce.py --table cpu --rows rnn_dense rnn_sparse   # a subset

Rows train one after another in ``<out>/runs/<row>/`` (default out: ``results/table3_<table>``); run the same
command again after a kill and finished rows are skipped, the interrupted one resumes. Outputs in ``<out>``:
table3.md/.csv/.json (all rows; the markdown shows dense and gradual rows with the paper's numbers),
table4.md/.csv/.json (gradual vs hard at equal nonzero counts), cer_vs_params.png, loss_curves.png, sparsity.png.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from paper_tables.evaluation import evaluate_row  # noqa: E402
from paper_tables.plots import plot_cer_vs_params, plot_loss_curves, plot_sparsity  # noqa: E402
from paper_tables.report import add_relative, row_record, write_tables  # noqa: E402
from paper_tables.rows import ROWS, ROWS_BY_NAME, SCALES  # noqa: E402
from paper_tables.runner import RowRun, train_rows  # noqa: E402
from training.checkpoint import code_version  # noqa: E402

log = logging.getLogger("reproduce")


def select_rows(names: list[str] | None) -> list:
    """The requested rows in table order, plus the gradual rows that requested hard rows need."""
    if not names:
        return list(ROWS)
    unknown = sorted(set(names) - set(ROWS_BY_NAME))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; known: {list(ROWS_BY_NAME)}")
    wanted = set(names) | {ROWS_BY_NAME[n].matches for n in names if ROWS_BY_NAME[n].matches}
    return [row for row in ROWS if row.name in wanted]


def header(table: str, command: str, wall_seconds: float) -> str:
    scale = SCALES[table]
    threads = torch.get_num_threads()
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores ({threads} torch threads)"
               + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    return (f"# Narang et al. 2017, Table 3 at scale `{table}`\n\n{scale.description}.\n\n"
            f"- command: `{command}`\n- commit: {code_version()}, {time.strftime('%Y-%m-%d %H:%M')}\n"
            f"- machine: {machine}, torch {torch.__version__}\n"
            f"- this invocation: {wall_seconds / 60:.1f} min (training time per row in the table; rows finished by "
            f"earlier invocations were skipped)\n"
            f"- CER/WER in %, corpus-level, greedy decoding, final checkpoint (last.pt) of each row; relative = "
            f"(CER_dense - CER) / CER_dense against the family's dense row; MB sparse = pruned matrices in CSR "
            f"(fp32 values, int16 column indices, int32 row pointers), everything else dense fp32")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", choices=sorted(SCALES), default="cpu", help="which scale to run (default: cpu)")
    parser.add_argument("--rows", nargs="+", help="only these rows (and the gradual rows their hard rows match)")
    parser.add_argument("--out", type=Path, help="output folder (default: results/table3_<table>)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="Hydra overrides for every row, e.g. trainer.device=cuda data.num_workers=4")
    parser.add_argument("--restart", nargs="+", default=[], metavar="ROW",
                        help="delete these rows' run folders and train them again")
    parser.add_argument("--device", default="auto", help="evaluation device")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    tic = time.time()
    out = args.out or Path("results") / f"table3_{args.table}"
    rows = select_rows(args.rows)
    runs = {row.name: RowRun(row, (out / "runs" / row.name).resolve()) for row in rows}
    for name in args.restart:
        if name not in runs:
            raise SystemExit(f"--restart {name}: not among the selected rows {list(runs)}")
        shutil.rmtree(runs[name].run_dir, ignore_errors=True)

    train_rows(runs, SCALES[args.table], args.set)
    records = [row_record(run, evaluate_row(run, args.device)) for run in runs.values()]
    add_relative(records)
    command = "python scripts/reproduce.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table3, table4 = write_tables(out, header(args.table, command, time.time() - tic), records)
    plot_cer_vs_params(records, out / "cer_vs_params.png")
    plot_loss_curves(list(runs.values()), out / "loss_curves.png")
    plot_sparsity(list(runs.values()), out / "sparsity.png")
    print(table3.split("\n## ")[1], "\n\n## " + table4.split("\n## ")[1], sep="")
    log.info("tables and plots in %s", out)
    return records


if __name__ == "__main__":
    main()
