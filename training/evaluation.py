"""Decode a dataset with a model and score it: the same code for validation and for evaluate.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from tqdm import tqdm

from data.dataset import SpeechDataset, collate
from data.sampler import DurationBatchSampler
from training.loss import ctc_losses
from training.scoring import Scores, greedy_decode, score


@dataclass
class EvaluationResult:
    """Corpus scores, mean per-utterance CTC loss, one record per utterance in manifest order and, when asked for,
    every utterance's log-probabilities (out_frames, num_classes), float32 on CPU, in the same order (for a beam
    search: training/beam_evaluation.py)."""

    scores: Scores
    loss: float
    records: list[dict]
    emissions: Optional[list[torch.Tensor]] = None


@torch.no_grad()
def evaluate_dataset(
    model: torch.nn.Module,
    dataset: SpeechDataset,
    device: torch.device,
    max_frames_per_batch: int,
    num_workers: int = 0,
    progress: bool = False,
    keep_emissions: bool = False,
) -> EvaluationResult:
    """Greedy-decode every utterance of ``dataset`` in eval mode (no augmentation) and score the corpus; with
    ``keep_emissions`` also return the log-probabilities, so that a beam search needs no second forward pass."""
    sampler = DurationBatchSampler(dataset.num_frames(), max_frames_per_batch, sortagrad=False, shuffle=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)
    was_training = model.training
    model.eval()
    hypotheses: list[str] = [""] * len(dataset)
    losses = torch.zeros(len(dataset))
    emissions: Optional[list[torch.Tensor]] = [torch.empty(0)] * len(dataset) if keep_emissions else None
    for batch in tqdm(loader, desc="decoding", disable=not progress, leave=False):
        log_probs, out_lengths = model(batch.features.to(device), batch.feature_lengths.to(device))
        batch_losses, _ = ctc_losses(log_probs, out_lengths, batch.targets, batch.target_lengths)
        losses[batch.indices] = batch_losses.cpu()
        if emissions is not None:
            for row, (index, length) in enumerate(zip(batch.indices.tolist(), out_lengths.tolist())):
                emissions[index] = log_probs[row, :length].float().cpu().contiguous()
        for index, text in zip(batch.indices.tolist(), greedy_decode(log_probs, out_lengths, dataset.tokenizer)):
            hypotheses[index] = text
    model.train(was_training)
    references = [utt.text for utt in dataset.utterances]
    records = [
        {"audio_filepath": utt.audio_filepath, "reference": utt.text, "hypothesis": hyp, "loss": float(loss)}
        for utt, hyp, loss in zip(dataset.utterances, hypotheses, losses)
    ]
    return EvaluationResult(score(references, hypotheses), float(losses.mean()), records, emissions)
