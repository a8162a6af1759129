"""Tensor selection: default groups hit the paper's matrices only; bad patterns fail loudly."""
import pytest
import torch

from pruning import PruningConfig, build_pruner
from pruning.config import GroupConfig, default_groups
from pruning.groups import select_tensors


def test_default_groups_select_recurrent_input_and_fc_matrices_only(model):
    tensors = select_tensors(model, {name: g.patterns for name, g in default_groups().items()})
    groups = {t.name: t.group for t in tensors}
    assert groups == {
        **{f"rnns.{i}.rnn.weight_hh_l0{s}": "recurrent" for i in range(2) for s in ("", "_reverse")},
        **{f"rnns.{i}.rnn.weight_ih_l0{s}": "input" for i in range(2) for s in ("", "_reverse")},
        "fc.0.weight": "fc", "fc.2.weight": "fc",
    }


def test_biases_batch_norm_and_convolutions_are_untouched(model):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pruner = build_pruner(PruningConfig(method="hard", target_sparsity=0.9, start_step=1), model, 10, 1)
    pruner.step(1)
    pruned = {row["name"] for row in pruner.report()}
    assert pruner.sparsity() == pytest.approx(0.9, abs=0.01)
    for name, param in model.named_parameters():
        if name not in pruned:
            assert torch.equal(param, before[name]), name
            assert "bias" in name or ".bn." in name or name.startswith("conv."), name


def test_unmatched_pattern_raises_naming_it(model):
    groups = {**default_groups(), "conv": GroupConfig(patterns=[r"^convolution\.weight"])}
    with pytest.raises(ValueError, match=r"pattern '\^convolution\\\\.weight' matches no parameter"):
        build_pruner(PruningConfig(method="gradual", groups=groups, start_step=0), model, 10, 4)


def test_parameter_matched_by_two_groups_raises(model):
    groups = {**default_groups(), "all_rnn": GroupConfig(patterns=[r"rnns\.1\..*weight_hh"])}
    with pytest.raises(ValueError, match=r"rnns\.1\.rnn\.weight_hh_l0.*matched by pruning groups"):
        build_pruner(PruningConfig(method="gradual", groups=groups, start_step=0), model, 10, 4)


def test_pattern_matching_a_bias_raises(model):
    with pytest.raises(ValueError, match="fc.0.bias"):
        select_tensors(model, {"fc": [r"^fc\."]})


def test_conv_group_can_be_added(model):
    groups = {**default_groups(), "conv": GroupConfig(patterns=[r"^conv\.0\.weight$"], target_sparsity=0.5)}
    pruner = build_pruner(PruningConfig(method="hard", groups=groups, target_sparsity=0.9, start_step=1), model,
                          10, 1)
    pruner.step(1)
    assert int((model.conv[0].weight == 0).sum()) == round(0.5 * model.conv[0].weight.numel())
