"""Re-estimating a trained model's batch-norm statistics from a set of utterances, weights unchanged.

Two uses (docs/real_speech.md):

- after checkpoint averaging (training/averaging.py): the mean of several checkpoints' running statistics is not
  the statistics of the mean of their weights; stochastic weight averaging recomputes them with one pass over
  training data (Izmailov et al. 2018, ``torch.optim.swa_utils.update_bn``);
- unsupervised adaptation to a test condition (AdaBN, Li et al. 2016): statistics from the evaluated utterances'
  own audio, no transcripts, so the normalisation of every layer fits the new speaker or microphone.
"""
from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from data.dataset import SpeechDataset, collate
from data.sampler import DurationBatchSampler


@torch.no_grad()
def recompute_batch_norm(
    model: nn.Module, dataset: SpeechDataset, device: torch.device, max_frames_per_batch: int, progress: bool = False,
) -> int:
    """Replace the running mean and variance of every batch norm of ``model`` by their average over the batches of
    ``dataset`` (each batch's statistics over its valid frames, models/layers.py ``masked_batch_norm``; a cumulative
    average, as momentum None gives), with every other module in eval mode (no dropout). Weights, modes and momenta
    are left as they were; returns the number of batch norms updated (0: nothing to do, the dataset is not read)."""
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    sampler = DurationBatchSampler(dataset.num_frames(), max_frames_per_batch, sortagrad=False, shuffle=False)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    momenta = [norm.momentum for norm in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.eval()  # dropout off: the statistics of the inputs the model sees at evaluation
    for norm in norms:
        norm.train()
    try:
        for batch in tqdm(loader, desc="batch-norm statistics", disable=not progress, leave=False):
            model(batch.features.to(device), batch.feature_lengths.to(device))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.train(was_training)
    return len(norms)
