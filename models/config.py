"""Model config schema (Hydra structured config; values in configs/model/*.yaml) and ``build_model``."""
from __future__ import annotations

from dataclasses import dataclass, field

from models.deepspeech2 import DeepSpeech2


@dataclass
class ModelConfig:
    """Deep Speech 2 architecture. Defaults are the paper's bidirectional RNN model (configs/model/ds2_rnn_paper.yaml).

    name: label used in run names and tables.
    conv_channels: output channels of each conv layer (1 to 3 layers).
    conv_kernels: (frequency, time) kernel of each conv layer; padded by kernel // 2 on each side.
    conv_strides: (frequency, time) stride of each conv layer; the time strides multiply to the output frame step.
    rnn_type: "rnn" (DS2 clipped-ReLU RNN, input matrix shared by both directions), "gru" or "lstm".
    rnn_hidden_size: units per recurrent layer (directions are summed, so this is also the layer's output width).
    num_rnn_layers: recurrent layers.
    bidirectional: bidirectional recurrent layers (False = forward-only, for streaming).
    lookahead_context: future frames seen by DS2's row convolution after the recurrent stack (0 = none);
        unidirectional models only.
    fc_hidden_size: width of the fully connected layer before the output (0 = no such layer).
    relu_clip: ceiling of the clipped ReLU min(max(x, 0), relu_clip).
    dropout: probability of zeroing a unit of the recurrent stack's hidden states during training (0 = none): on the
        input of every layer after the first recurrent one (recurrent layers 2..n, the FC layer, the output layer).
    """

    name: str = "ds2_rnn_paper"
    conv_channels: list[int] = field(default_factory=lambda: [32, 32])
    conv_kernels: list[list[int]] = field(default_factory=lambda: [[41, 11], [21, 11]])
    conv_strides: list[list[int]] = field(default_factory=lambda: [[2, 2], [2, 1]])
    rnn_type: str = "rnn"
    rnn_hidden_size: int = 1760
    num_rnn_layers: int = 7
    bidirectional: bool = True
    lookahead_context: int = 0
    fc_hidden_size: int = 1760
    relu_clip: float = 20.0
    dropout: float = 0.0


def build_model(cfg: ModelConfig, num_features: int, num_classes: int) -> DeepSpeech2:
    """DeepSpeech2 for ``num_features`` input bins and ``num_classes`` outputs (CTC blank included) from ``cfg``
    (a ModelConfig or an OmegaConf node of that schema)."""
    return DeepSpeech2(
        num_features=num_features,
        num_classes=num_classes,
        conv_channels=list(cfg.conv_channels),
        conv_kernels=[list(k) for k in cfg.conv_kernels],
        conv_strides=[list(s) for s in cfg.conv_strides],
        rnn_type=cfg.rnn_type,
        rnn_hidden_size=cfg.rnn_hidden_size,
        num_rnn_layers=cfg.num_rnn_layers,
        bidirectional=cfg.bidirectional,
        lookahead_context=cfg.lookahead_context,
        fc_hidden_size=cfg.fc_hidden_size,
        relu_clip=cfg.relu_clip,
        dropout=cfg.dropout,
    )
