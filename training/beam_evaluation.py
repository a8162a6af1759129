"""Beam-search evaluation: beam decoding of a model's log-probabilities over a dataset (training/evaluation.py
keeps them) and corpus scoring of them, and the grid search of the LM weight and word score on dev (with its
heatmap). Scores come from the one corpus-level scorer."""
from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from tqdm import tqdm

from training.beam import BeamSearchDecoder, BeamSettings
from training.scoring import Scores, score

log = logging.getLogger(__name__)

DEFAULT_LM_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
DEFAULT_WORD_SCORES = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0)


@dataclass
class BeamResult:
    """Corpus scores and hypotheses (in the order of the emissions) of one decoder setting."""

    settings: BeamSettings
    scores: Scores
    hypotheses: list[str]


def beam_evaluate(
    decoder: BeamSearchDecoder, emissions: Sequence[torch.Tensor], references: Sequence[str],
    settings: BeamSettings, progress: bool = False,
) -> BeamResult:
    """Beam-decode every utterance and score the corpus."""
    hypotheses = decoder.decode(emissions, settings, progress)
    return BeamResult(settings, score(list(references), hypotheses), hypotheses)


def tune(
    decoder: BeamSearchDecoder, emissions: Sequence[torch.Tensor], references: Sequence[str], beam_size: int,
    lm_weights: Sequence[float] = DEFAULT_LM_WEIGHTS, word_scores: Sequence[float] = DEFAULT_WORD_SCORES,
    progress: bool = False, metric: str = "wer",
) -> tuple[BeamSettings, list[dict]]:
    """Grid search of (lm_weight, word_score) on held-out utterances: the setting of lowest ``metric`` ("wer" or
    "cer"; ties broken by the other), and one record per grid point with its WER and CER."""
    if not lm_weights or not word_scores:
        raise ValueError("tuning needs at least one LM weight and one word score")
    if metric not in ("wer", "cer"):
        raise ValueError(f"tuning metric must be 'wer' or 'cer', got {metric!r}")
    grid = list(itertools.product(lm_weights, word_scores))
    records = []
    bar = tqdm(grid, desc="tuning LM weight x word score", disable=not progress, leave=False)
    for lm_weight, word_score in bar:
        result = beam_evaluate(decoder, emissions, references, BeamSettings(beam_size, lm_weight, word_score))
        records.append({"lm_weight": lm_weight, "word_score": word_score, "wer": result.scores.wer,
                        "cer": result.scores.cer})
        log.info("tuning: lm_weight %.2f word_score %+.2f -> WER %.2f%% CER %.2f%%",
                 lm_weight, word_score, 100 * result.scores.wer, 100 * result.scores.cer)
    other = "cer" if metric == "wer" else "wer"
    best = min(records, key=lambda r: (r[metric], r[other]))
    return BeamSettings(beam_size, best["lm_weight"], best["word_score"]), records


def plot_tuning(records: Sequence[dict], chosen: BeamSettings, path: str | Path, title: str = "") -> None:
    """Heatmaps of dev WER and CER (%) over the (lm_weight, word_score) grid of :func:`tune`, the chosen cell
    outlined, written to ``path`` (PNG)."""
    lm_weights = sorted({r["lm_weight"] for r in records})
    word_scores = sorted({r["word_score"] for r in records})
    cells = {(r["lm_weight"], r["word_score"]): r for r in records}
    fig = Figure(figsize=(4 + 1.6 * len(word_scores), 1.5 + 0.45 * len(lm_weights)))  # no pyplot: Agg, no globals
    for ax, metric in zip(fig.subplots(1, 2, squeeze=False)[0], ("wer", "cer")):
        values = [[100 * cells[w, s][metric] if (w, s) in cells else float("nan") for s in word_scores]
                  for w in lm_weights]
        image = ax.imshow(values, cmap="viridis_r", aspect="auto", origin="lower")
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                dark = image.norm(value) > 0.5  # viridis_r: high values are dark cells
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8, color="w" if dark else "k")
        i, j = lm_weights.index(chosen.lm_weight), word_scores.index(chosen.word_score)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        ax.set_xticks(range(len(word_scores)), [f"{s:g}" for s in word_scores])
        ax.set_yticks(range(len(lm_weights)), [f"{w:g}" for w in lm_weights])
        ax.set_xlabel("word score")
        ax.set_ylabel("LM weight")
        ax.set_title(f"dev {metric.upper()} %")
        fig.colorbar(image, ax=ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
