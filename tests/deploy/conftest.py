"""Tiny pruned DS2 checkpoints (DS2 RNN and GRU, unstructured and block-pruned) written by the tests themselves,
and a manifest of 8 real recordings from ../shared/data/fsdd (read-only) to evaluate them on."""
from __future__ import annotations

from pathlib import Path

import pytest
import soundfile
import torch
from omegaconf import OmegaConf

from data.features import FeatureExtractor
from data.manifest import Utterance, write_manifest
from data.tokenizer import CharTokenizer
from deploy.format import is_sparse_name
from models.config import build_model
from pruning.criterion import (
    block_scores,
    expand_block_mask,
    magnitude_scores,
    smallest_masks,
)
from training.checkpoint import save_checkpoint
from training.compose import compose_config

FSDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd" / "recordings"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

VARIANTS = {
    "rnn": [],
    "gru": ["model.rnn_type=gru"],
    "gru_uni": ["model.rnn_type=gru", "model.bidirectional=false", "model.lookahead_context=2"],
    "rnn_block": ["pruning=block", "pruning.block=[4,4]"],  # 32 units: whole blocks, one block-diagonal U
    "gru_block": ["model.rnn_type=gru", "model.rnn_hidden_size=30", "model.fc_hidden_size=30", "pruning=block",
                  "pruning.block=[2,4]"],  # edge blocks; the directions' U fall back to one CSR matrix
}


@torch.no_grad()
def prune(model: torch.nn.Module, sparsity: float, block: tuple[int, int] | None) -> None:
    """Zero the smallest weights (or the weakest blocks) of every sparse-stored matrix, with the project's
    pruning criteria: exactly ``sparsity`` of the weights (of the blocks for block pruning)."""
    for name, param in model.named_parameters():
        if not is_sparse_name(name):
            continue
        if block is None:
            mask = smallest_masks([magnitude_scores(param)], sparsity)[0]
        else:
            keep = smallest_masks([block_scores(param, block)], sparsity)[0]
            mask = expand_block_mask(keep, param.shape, block)
        param.mul_(mask)


def write_checkpoint(path: Path, variant: str, sparsity: float = 0.8, seed: int = 0) -> Path:
    """A checkpoint of ds2_tiny (with the variant's overrides) with random weights, random batch-norm statistics
    (so that no layer is an identity) and pruned matrices."""
    cfg = compose_config(["model=ds2_tiny", "data=synth_tiny", *VARIANTS[variant]])
    tokenizer = CharTokenizer()
    num_features = FeatureExtractor(cfg.data.features, cfg.data.sample_rate).num_features
    torch.manual_seed(seed)
    model = build_model(cfg.model, num_features, tokenizer.num_classes)
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer.normal_(0.0, 0.2)
        elif name.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(1.5)  # larger than the default init: the recurrences matter, log-probs stay below ~10
    prune(model, sparsity, tuple(cfg.pruning.block) if cfg.pruning.method == "block" else None)
    save_checkpoint(path, {
        "config": {"experiment_name": f"tiny_{variant}",  # what export reads (the trainer saves all of cfg)
                   **{key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "data", "pruning")}},
        "model": model.state_dict(), "step": 7,
        "feature_stats": {"mean": torch.zeros(num_features), "std": torch.ones(num_features)},
        "tokenizer": tokenizer.state_dict(), "code_version": "test",
    })
    return path


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("deploy_checkpoints")
    return {variant: write_checkpoint(folder / f"{variant}.pt", variant) for variant in VARIANTS}


@pytest.fixture(scope="session")
def digits_manifest(tmp_path_factory) -> Path:
    """8 FSDD recordings (one speaker, digits 0-7) as a manifest; skips when the shared data is absent."""
    paths = [FSDD / f"{digit}_george_0.wav" for digit in range(8)]
    if not all(path.is_file() for path in paths):
        pytest.skip(f"FSDD recordings not found under {FSDD}")
    manifest = tmp_path_factory.mktemp("digits") / "digits.jsonl"
    write_manifest(manifest, [Utterance(str(path), soundfile.info(str(path)).duration, DIGITS[digit])
                              for digit, path in enumerate(paths)])
    return manifest


@pytest.fixture
def fallback_kernels(monkeypatch):
    """Force the torch fallback (no compiler involved) for the duration of a test."""
    from deploy.native import native_kernels

    monkeypatch.setenv("SPARSE_DS2_KERNELS", "torch")
    native_kernels.cache_clear()
    yield
    native_kernels.cache_clear()


def random_batch(num_features: int, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (batch, num_features, max(lengths)) zero beyond each length, and the lengths."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(len(lengths), num_features, max(lengths), generator=generator)
    for i, length in enumerate(lengths):
        features[i, :, length:] = 0
    return features, torch.tensor(lengths)
