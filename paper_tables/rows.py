"""The rows of the paper's Table 3 and of its gradual-vs-hard comparison, with the paper's numbers, and the scales
at which ``scripts/reproduce.py`` runs them.

A row is one training run: ``configs/experiment/<scale config folder>/<row name>.yaml``. Paper numbers are dev
CER on 2100 h of internal English speech after 20 epochs (../shared/docs/paper.md); "relative" is
(CER_baseline - CER) / CER_baseline against the dense row of the same family.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class PaperNumbers:
    """One row of the paper's Table 3: units, parameters (nonzero for sparse rows), dev CER (%), relative (%)."""

    units: int
    params_m: float
    cer: float
    relative: float


@dataclass(frozen=True)
class Row:
    """name: config file stem; family: "rnn" or "gru" (its dense baseline is ``<family>_dense``);
    method: "dense", "gradual" or "hard"; width: the width as a multiple of the baseline's ("0.4 H");
    matches: for hard rows, the gradual row whose nonzero count they are pruned to."""

    name: str
    family: str
    method: str
    width: str
    paper: Optional[PaperNumbers] = None
    matches: Optional[str] = None

    @property
    def baseline(self) -> str:
        return f"{self.family}_dense"


# In training order: the rows behind the paper's main claims first (dense vs sparse vs hard at the baseline
# width), so that a partial run already answers something. Tables group them by family and method.
ROWS: tuple[Row, ...] = (
    Row("rnn_dense", "rnn", "dense", "H", PaperNumbers(1760, 67.0, 10.67, 0.0)),
    Row("rnn_sparse", "rnn", "gradual", "H", PaperNumbers(1760, 8.3, 12.88, -20.71)),
    Row("rnn_hard", "rnn", "hard", "H", matches="rnn_sparse"),
    Row("rnn_dense_small", "rnn", "dense", "0.4 H", PaperNumbers(704, 11.6, 14.50, -35.89)),
    Row("rnn_sparse_medium", "rnn", "gradual", "1.45 H", PaperNumbers(2560, 11.1, 10.59, 0.75)),
    Row("rnn_hard_medium", "rnn", "hard", "1.45 H", matches="rnn_sparse_medium"),
    Row("rnn_dense_medium", "rnn", "dense", "1.45 H", PaperNumbers(2560, 141.0, 9.43, 11.85)),
    Row("rnn_sparse_big", "rnn", "gradual", "1.75 H", PaperNumbers(3072, 16.7, 10.25, 3.95)),
    Row("rnn_hard_big", "rnn", "hard", "1.75 H", matches="rnn_sparse_big"),
    Row("gru_dense", "gru", "dense", "G", PaperNumbers(2560, 115.0, 9.55, 0.0)),
    Row("gru_sparse", "gru", "gradual", "G", PaperNumbers(2560, 13.0, 10.87, -13.82)),
    Row("gru_sparse_medium", "gru", "gradual", "1.39 G", PaperNumbers(3568, 17.8, 9.76, -2.20)),
)
ROWS_BY_NAME = {row.name: row for row in ROWS}

# The paper gives no per-row numbers for hard pruning, only that gradual is better by this much (relative CER).
PAPER_GRADUAL_OVER_HARD = "7-9%"


@dataclass(frozen=True)
class Scale:
    """Where a table's row configs live and the overrides every row of it gets."""

    name: str
    config_folder: str
    overrides: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""


SCALES: dict[str, Scale] = {
    "cpu": Scale("cpu", "table3_cpu", description=(
        "synth_small (0.93 h, held-out voices and sentences), H = G = 256 units, 10 epochs; ~2 h on 2 CPU cores")),
    "paper": Scale("paper", "table3_paper", description=(
        "LibriSpeech 960 h, the paper's widths (1760 / 2560 units), 20 epochs; GPU")),
    # The cpu rows on the tiny corpus for a few dozen steps: exercises every path of the driver in minutes.
    "smoke": Scale("smoke", "table3_cpu", overrides=(
        "data=synth_tiny", "data.num_workers=0",
        "data.features.stats_utterances=0", "data.max_frames_per_batch=3000", "trainer.num_epochs=2",
        "trainer.eval_every_epochs=1", "trainer.log_every_steps=2", "trainer.checkpoint_every_steps=0",
        "pruning.start_step=2", "pruning.ramp_step=4", "pruning.end_step=8", "pruning.freq=2",
    ), description="synth_tiny, 2 epochs, explicit pruning steps; minutes on a CPU, checks the driver only"),
}
