"""The deploy file: everything inference needs, with the recurrent, input and fully connected matrices in
sparse form (deploy/sparse.py), written atomically with ``torch.save`` and read back with
``torch.load(weights_only=True)`` (plain tensors, numbers and strings only; no code is unpickled).

    format    "sparse-ds2-deploy"
    version   FORMAT_VERSION
    config    {"experiment_name", "model", "data"}: the checkpoint's resolved config, minus training settings
    frontend  {"feature_stats", "tokenizer"}: as in the checkpoint (training/pipeline.py Frontend)
    dense     model state_dict entries kept dense (convolutions, batch norms, biases, output layer)
    sparse    {parameter name: SparseMatrix.state_dict()} for every name ``is_sparse_name`` accepts
    meta      {"source", "source_step", "code_version", "value_dtype", "block": {name: [br, bc]}}
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from data.atomic import atomic_path
from deploy.sparse import SparseMatrix

FORMAT_NAME = "sparse-ds2-deploy"
FORMAT_VERSION = 1

# DS2 RNN (shared input matrix, one recurrent matrix per direction), nn.GRU inside FusedRNN, the FC layer
SPARSE_NAME = re.compile(
    r"^rnns\.\d+\.(weight_ih|weight_hh_(fwd|bwd)|rnn\.weight_(ih|hh)_l0(_reverse)?)$|^fc\.linear\.weight$")


def is_sparse_name(name: str) -> bool:
    """Whether parameter ``name`` of DeepSpeech2 is stored sparse (the matrices the paper prunes)."""
    return SPARSE_NAME.match(name) is not None


def save_bundle(path: str | Path, bundle: dict) -> None:
    """Write a deploy bundle (module docstring) atomically, with the format name and version added."""
    missing = {"config", "frontend", "dense", "sparse", "meta"} - set(bundle)
    if missing:
        raise ValueError(f"deploy bundle lacks {sorted(missing)}")
    state = {**bundle, "format": FORMAT_NAME, "version": FORMAT_VERSION,
             "sparse": {name: m.state_dict() for name, m in bundle["sparse"].items()}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_bundle(path: str | Path) -> dict:
    """Read a deploy file; sparse entries come back as SparseMatrix objects (on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"deploy file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a checkpoint (pickled objects) or a foreign file: say what was expected
        raise ValueError(f"{path} is not a deploy file ({FORMAT_NAME}); export one with scripts/export.py") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        raise ValueError(f"{path} is not a deploy file ({FORMAT_NAME}); export one with scripts/export.py")
    if state.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: deploy format version {state.get('version')!r}, this code reads {FORMAT_VERSION}")
    state["sparse"] = {name: SparseMatrix.from_state_dict(entry) for name, entry in state["sparse"].items()}
    state["path"] = str(path)
    return state
