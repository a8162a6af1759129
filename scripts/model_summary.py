"""Per-layer parameter table of a model config (built on the meta device: instant, no memory).

    python scripts/model_summary.py model=ds2_rnn_paper
    python scripts/model_summary.py model=ds2_rnn_paper model.rnn_hidden_size=704
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from data.features import FeatureExtractor  # noqa: E402
from data.tokenizer import CharTokenizer  # noqa: E402
from models.config import build_model  # noqa: E402
from models.summary import format_parameter_table, parameter_table  # noqa: E402
from training.compose import compose_config  # noqa: E402


def main(overrides: list[str]) -> str:
    cfg = compose_config(overrides)
    num_features = FeatureExtractor(cfg.data.features, cfg.data.sample_rate).num_features
    with torch.device("meta"):
        model = build_model(cfg.model, num_features, CharTokenizer().num_classes)
    table = format_parameter_table(parameter_table(model))
    return f"model {cfg.model.name}: {num_features} input features, {CharTokenizer().num_classes} outputs\n\n{table}"


if __name__ == "__main__":
    print(main(sys.argv[1:]))
