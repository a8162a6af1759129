"""Criteria: exact-count magnitude masks, thresholds kept strictly above, block maxima and their expansion."""
import pytest
import torch

from pruning.criterion import (
    block_scores, expand_block_mask, kth_smallest, magnitude_scores, smallest_masks, threshold_mask,
)


def test_threshold_keeps_strictly_greater_magnitudes():
    scores = magnitude_scores(torch.tensor([-2.0, -0.5, 0.5, 0.4, 3.0]))
    assert threshold_mask(scores, 0.5).tolist() == [True, False, False, False, True]


@pytest.mark.parametrize("sparsity", [0.0, 0.33, 0.5, 0.9, 0.999])
def test_smallest_masks_prune_exactly_round_sparsity_numel_pooled(sparsity):
    torch.manual_seed(0)
    scores = [torch.rand(7, 13), torch.rand(5, 3)]
    masks = smallest_masks(scores, sparsity)
    assert [m.shape for m in masks] == [s.shape for s in scores]
    assert sum(int((~m).sum()) for m in masks) == round(sparsity * (7 * 13 + 5 * 3))
    kept = torch.cat([s[m] for s, m in zip(scores, masks)])
    pruned = torch.cat([s[~m] for s, m in zip(scores, masks)])
    if len(kept) and len(pruned):
        assert pruned.max() <= kept.min()


def test_smallest_masks_exact_even_with_ties():
    masks = smallest_masks([torch.zeros(10)], 0.3)
    assert int((~masks[0]).sum()) == 3 and masks[0][:3].logical_not().all()  # stable: by position


def test_kth_smallest_prunes_that_many_with_threshold_mask():
    scores = torch.randperm(1000).float()
    v = kth_smallest([scores], 0.9)
    assert v == 899.0 and int((~threshold_mask(scores, v)).sum()) == 900
    assert kth_smallest([scores], 0.0) == 0.0


def test_block_scores_are_block_maxima_including_edge_blocks():
    torch.manual_seed(0)
    weight = torch.randn(10, 14)  # 4x4 blocks: 3 x 4 blocks, the last row/column of blocks smaller
    scores = block_scores(weight, (4, 4))
    assert scores.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert scores[i, j] == weight[4 * i: 4 * i + 4, 4 * j: 4 * j + 4].abs().max()


def test_expanded_block_mask_is_constant_per_block_and_has_the_weight_shape():
    block_mask = torch.tensor([[True, False, True], [False, True, False]])
    mask = expand_block_mask(block_mask, torch.Size([5, 2, 3]), (3, 2))  # viewed as 5 x 6
    assert mask.shape == (5, 2, 3)
    flat = mask.reshape(5, 6)
    for i in range(2):
        for j in range(3):
            assert (flat[3 * i: 3 * i + 3, 2 * j: 2 * j + 2] == block_mask[i, j]).all()
