"""The run's metrics as JSON lines (``metrics.jsonl``), its loss-curve plot, and resume-safe truncation."""
from __future__ import annotations

import json
from pathlib import Path

from data.atomic import write_text_atomic


class MetricsLog:
    """Append-only JSONL of training records (``loss``) and dev records (``dev_loss``, ``dev_wer``...)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        """Drop records logged after ``step`` (by a run killed after its last checkpoint), atomically."""
        kept = [r for r in self.records() if r["step"] <= step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def last_eval(self) -> dict | None:
        evals = [r for r in self.records() if "dev_cer" in r]
        return evals[-1] if evals else None

    def plot(self, path: Path) -> None:
        """Training and dev CTC loss against step (the paper's Figure 1), with dev CER on a second axis."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        records = self.records()
        train = [(r["step"], r["loss"]) for r in records if "loss" in r]
        dev = [(r["step"], r["dev_loss"], r["dev_cer"]) for r in records if "dev_loss" in r]
        fig, ax = plt.subplots(figsize=(7, 4))
        if train:
            ax.plot(*zip(*train), label="train loss", alpha=0.7)
        if dev:
            steps, losses, cers = zip(*dev)
            ax.plot(steps, losses, "o-", label="dev loss")
            cer_axis = ax.twinx()
            cer_axis.plot(steps, [100 * c for c in cers], "s--", color="tab:red", label="dev CER")
            cer_axis.set_ylabel("dev CER (%)")
        ax.set_xlabel("step")
        ax.set_ylabel("CTC loss per utterance")
        if train or dev:
            ax.legend(loc="upper right")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
