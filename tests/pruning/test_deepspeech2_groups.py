"""The default pruning groups select exactly the paper's tensors in the project's real DeepSpeech2."""
import pytest
import torch

from models.config import ModelConfig, build_model
from pruning.config import PruningConfig, build_pruner


@pytest.mark.parametrize(
    "rnn_type, bidirectional, expected",
    [
        ("rnn", True, {"rnns.0.weight_ih": "input", "rnns.0.weight_hh_fwd": "recurrent",
                       "rnns.0.weight_hh_bwd": "recurrent", "rnns.1.weight_ih": "input",
                       "rnns.1.weight_hh_fwd": "recurrent", "rnns.1.weight_hh_bwd": "recurrent",
                       "fc.linear.weight": "fc"}),
        ("gru", False, {"rnns.0.rnn.weight_ih_l0": "input", "rnns.0.rnn.weight_hh_l0": "recurrent",
                        "rnns.1.rnn.weight_ih_l0": "input", "rnns.1.rnn.weight_hh_l0": "recurrent",
                        "fc.linear.weight": "fc"}),
        ("lstm", True, {"rnns.0.rnn.weight_ih_l0": "input", "rnns.0.rnn.weight_hh_l0": "recurrent",
                        "rnns.0.rnn.weight_ih_l0_reverse": "input", "rnns.0.rnn.weight_hh_l0_reverse": "recurrent",
                        "rnns.1.rnn.weight_ih_l0": "input", "rnns.1.rnn.weight_hh_l0": "recurrent",
                        "rnns.1.rnn.weight_ih_l0_reverse": "input", "rnns.1.rnn.weight_hh_l0_reverse": "recurrent",
                        "fc.linear.weight": "fc"}),
    ],
)
def test_default_groups_prune_recurrent_input_and_fc_matrices_only(rnn_type, bidirectional, expected):
    cfg = ModelConfig(name="t", conv_channels=[2], conv_kernels=[[5, 3]], conv_strides=[[2, 2]], rnn_type=rnn_type,
                      rnn_hidden_size=8, num_rnn_layers=2, bidirectional=bidirectional, fc_hidden_size=8)
    model = build_model(cfg, num_features=16, num_classes=5)
    pruner = build_pruner(PruningConfig(method="hard", target_sparsity=0.5, start_step=1), model, 10, 2)
    assert {row["name"]: row["group"] for row in pruner.report()} == expected


def test_pruned_deepspeech2_forward_equals_a_dense_copy_zeroed_by_hand():
    cfg = ModelConfig(name="t", conv_channels=[2], conv_kernels=[[5, 3]], conv_strides=[[2, 2]], rnn_type="rnn",
                      rnn_hidden_size=8, num_rnn_layers=2, bidirectional=True, fc_hidden_size=8)
    torch.manual_seed(0)
    model = build_model(cfg, num_features=16, num_classes=5).eval()
    dense = build_model(cfg, num_features=16, num_classes=5).eval()
    dense.load_state_dict(model.state_dict())
    pruner = build_pruner(PruningConfig(method="hard", target_sparsity=0.7, start_step=1), model, 10, 2)
    pruner.step(1)
    with torch.no_grad():
        for name, param in dense.named_parameters():
            if name in pruner.masks:
                param[param.abs() <= param.abs().flatten().kthvalue(round(0.7 * param.numel())).values] = 0
    features, lengths = torch.randn(3, 16, 20), torch.tensor([20, 15, 9])
    assert torch.allclose(model(features, lengths)[0], dense(features, lengths)[0], atol=1e-6)
    assert pruner.sparsity() == pytest.approx(0.7, abs=0.01)
