"""The inference runtime for deploy files: DeepSpeech2 with its recurrent and fully connected layers replaced by
the sparse layers of deploy/layers.py, plus the front-end it was trained with.

``load_deployed(path)`` gives a :class:`DeployedModel` with the attributes evaluate.py uses for a checkpoint
(``model``, ``frontend``, ``data_cfg``, ``model_cfg``, ``checkpoint["path"]``, ``name``, ``num_parameters``), so
the same evaluation code scores both. The dense layers are built on the meta device and only the stored
tensors are materialised: the runtime never allocates the dense recurrent matrices unless a layer's dense path
is chosen. Load onto the device you will run on (``device=``); ``.to()`` afterwards does not move the sparse
matrices.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from data.config import DataConfig
from deploy.format import load_bundle
from deploy.layers import SparseDS2RNN, SparseFullyConnected, SparseGRU
from deploy.planner import Planner
from deploy.sparse import SparseMatrix
from models.config import ModelConfig, build_model
from models.deepspeech2 import DeepSpeech2
from models.rnn import DS2RNN, FusedRNN
from training.inference import transcribe_file
from training.pipeline import Frontend


def _sparse_rnn(layer: nn.Module, prefix: str, sparse: dict[str, SparseMatrix], planner: Planner) -> nn.Module:
    """The sparse replacement of recurrent layer ``prefix`` (e.g. "rnns.0")."""
    if isinstance(layer, DS2RNN):
        return SparseDS2RNN(
            layer.norm, [getattr(layer, f"bias_{d}").detach() for d in layer.directions],
            sparse[f"{prefix}.weight_ih"], [sparse[f"{prefix}.weight_hh_{d}"] for d in layer.directions],
            layer.relu_clip, planner, prefix)
    if isinstance(layer, FusedRNN) and isinstance(layer.rnn, nn.GRU):
        suffixes = ["_l0", "_l0_reverse"][: 2 if layer.rnn.bidirectional else 1]
        pick = lambda kind: [sparse[f"{prefix}.rnn.weight_{kind}{s}"] for s in suffixes]
        bias = lambda kind: [getattr(layer.rnn, f"bias_{kind}{s}").detach() for s in suffixes]
        return SparseGRU(layer.norm, pick("ih"), pick("hh"), bias("ih"), bias("hh"), planner, prefix)
    raise ValueError(f"the deploy runtime runs DS2 RNN and GRU layers, not {type(layer).__name__} "
                     f"({getattr(layer, 'rnn', layer).__class__.__name__}) at {prefix}")


def build_runtime_model(model_cfg: ModelConfig, num_features: int, num_classes: int, dense: dict[str, torch.Tensor],
                        sparse: dict[str, SparseMatrix], planner: Planner, device: torch.device) -> DeepSpeech2:
    """DeepSpeech2 in eval mode with the ``dense`` state entries loaded and sparse layers built from ``sparse``."""
    with torch.device("meta"):
        model = build_model(model_cfg, num_features, num_classes)
    expected = set(model.state_dict())
    missing, unexpected = expected - set(dense) - set(sparse), (set(dense) | set(sparse)) - expected
    if missing or unexpected:
        raise ValueError(f"deploy file does not fit the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    model.load_state_dict({name: t.to(device) for name, t in dense.items()}, strict=False, assign=True)
    sparse = {name: m.to(device) for name, m in sparse.items()}
    for i, layer in enumerate(model.rnns):
        model.rnns[i] = _sparse_rnn(layer, f"rnns.{i}", sparse, planner)
    if model.fc is not None:
        model.fc = SparseFullyConnected(model.fc.norm, sparse["fc.linear.weight"], model.fc.relu_clip, planner,
                                        "fc.linear")
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"deploy runtime: tensors without values after loading: {left}")
    return model.eval().requires_grad_(False)


@dataclass
class DeployedModel:
    """A runtime model with its front-end, configs, the file's metadata and the planner of its kernel choices."""

    model: DeepSpeech2
    frontend: Frontend
    data_cfg: DataConfig
    model_cfg: ModelConfig
    checkpoint: dict  # {"path", "config", "meta"}: what evaluate.py reads from a checkpoint
    matrix_counts: dict[str, tuple[int, int]]  # sparse matrix name -> (elements, nonzeros)
    planner: Planner

    @property
    def name(self) -> str:
        return self.checkpoint["config"].get("experiment_name") or Path(self.checkpoint["path"]).stem

    def num_parameters(self) -> tuple[int, int]:
        """(total, nonzero) parameters of the model these weights represent."""
        dense = [t for name, t in self.model.state_dict().items() if not name.endswith(
            ("running_mean", "running_var", "num_batches_tracked"))]
        total = sum(t.numel() for t in dense) + sum(numel for numel, _ in self.matrix_counts.values())
        nonzero = sum(int(torch.count_nonzero(t)) for t in dense) + sum(nnz for _, nnz in self.matrix_counts.values())
        return total, nonzero

    def transcribe(self, audio_path: str | Path) -> str:
        """Greedy transcript of one audio file."""
        return transcribe_file(self.model, self.frontend, audio_path, self.data_cfg.sample_rate)


def load_deployed(path: str | Path, device: torch.device | str = "cpu", policy: str = "auto") -> DeployedModel:
    """Deploy file -> :class:`DeployedModel` on ``device``; ``policy`` "auto" (measured), "sparse" or "dense"."""
    bundle = load_bundle(path)
    config = bundle["config"]
    data_cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), config["data"])
    model_cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), config["model"])
    frontend = Frontend.from_checkpoint(data_cfg, bundle["frontend"])
    planner = Planner(policy)
    model = build_runtime_model(model_cfg, frontend.extractor.num_features, frontend.tokenizer.num_classes,
                                bundle["dense"], bundle["sparse"], planner, torch.device(device))
    counts = {name: (m.shape[0] * m.shape[1], m.nnz()) for name, m in bundle["sparse"].items()}
    return DeployedModel(model, frontend, data_cfg, model_cfg,
                         {"path": bundle["path"], "config": config, "meta": bundle["meta"]}, counts, planner)
