"""configs/model/*.yaml against the schema, and the paper's parameter counts (built on the meta device)."""
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from models import ModelConfig, build_model
from models.summary import format_parameter_table, parameter_table

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"
NUM_FEATURES, NUM_CLASSES = 161, 29  # DS2's linear spectrogram bins; a-z, space, apostrophe, CTC blank


def load(name: str, **overrides) -> ModelConfig:
    yaml = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    return OmegaConf.merge(OmegaConf.structured(ModelConfig), yaml, overrides)


def num_params(cfg: ModelConfig, prefix: str = "") -> int:
    with torch.device("meta"):
        model = build_model(cfg, NUM_FEATURES, NUM_CLASSES)
    return sum(p.numel() for name, p in model.named_parameters() if name.startswith(prefix))


@pytest.mark.parametrize("name, units, paper_params", [
    ("ds2_rnn_paper", 1760, 67.6e6),
    ("ds2_rnn_paper", 704, 11.6e6),
    ("ds2_rnn_paper", 2560, 141.3e6),
    ("ds2_rnn_paper", 3072, 202.5e6),
    ("ds2_gru_paper", 2560, 115e6),
])
def test_paper_models_have_the_papers_parameter_counts(name, units, paper_params):
    cfg = load(name, rnn_hidden_size=units, fc_hidden_size=units)
    assert num_params(cfg) == pytest.approx(paper_params, rel=0.01)


def test_paper_rnn_model_layer_by_layer():
    """Narang et al.'s arithmetic (docs/paper.md), plus 2*C per conv batch norm and 2*h per RNN batch norm."""
    cfg, h = load("ds2_rnn_paper"), 1760
    assert num_params(cfg, "conv.0.") == 14_432 + 2 * 32
    assert num_params(cfg, "conv.1.") == 236_544 + 2 * 32
    assert num_params(cfg, "rnns.0.") == 8_507_840 + 2 * h  # 1312 * h + 2 * h * h + 2 * h: 32 x 41 conv features
    assert all(num_params(cfg, f"rnns.{i}.") == 9_296_320 + 2 * h for i in range(1, 7))
    assert num_params(cfg, "rnns.7.") == 0
    assert num_params(cfg, "fc.") == 3_101_120
    assert num_params(cfg, "output.") == h * NUM_CLASSES + NUM_CLASSES


def test_paper_gru_model_layer_by_layer():
    """3 * (in * h + h * h) per GRU layer, plus torch's two bias vectors (6 h) and the input batch norm (2 in)."""
    cfg, h = load("ds2_gru_paper"), 2560
    assert num_params(cfg, "rnns.0.") == 3 * (1312 * h + h * h) + 6 * h + 2 * 1312
    assert num_params(cfg, "rnns.2.") == 3 * (2 * h * h) + 6 * h + 2 * h


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_config_fits_the_schema_and_builds(path):
    cfg = load(path.stem)
    assert cfg.name == path.stem
    assert num_params(cfg) > 0


@pytest.mark.parametrize("name", ["ds2_rnn_small", "ds2_gru_small"])
def test_small_models_fit_a_cpu(name):
    cfg = load(name)
    time_stride = 1
    for stride in cfg.conv_strides:
        time_stride *= stride[1]
    assert 1e6 <= num_params(cfg) <= 3e6 and time_stride in (2, 3)
    assert cfg.rnn_type == load(name.replace("small", "paper")).rnn_type


def test_unknown_rnn_type_in_a_config_raises():
    with pytest.raises(ValueError, match="unknown rnn_type 'transformer'"):
        num_params(load("ds2_tiny", rnn_type="transformer"))


def test_tiny_model_is_tiny():
    assert num_params(load("ds2_tiny")) < 50_000


def test_parameter_table_lists_every_parameter_and_the_total():
    with torch.device("meta"):
        model = build_model(load("ds2_tiny"), NUM_FEATURES, NUM_CLASSES)
    rows = parameter_table(model)
    assert rows[0] == ("conv.0.conv.weight", (4, 1, 41, 11), 4 * 41 * 11)
    assert [name for name, _, _ in rows] == [name for name, _ in model.named_parameters()]
    table = format_parameter_table(rows)
    assert "| conv.0.conv.weight | 4 x 1 x 41 x 11 | 1,804 |" in table
    assert table.splitlines()[-1] == f"| **total** | | **{sum(p.numel() for p in model.parameters()):,}** |"
