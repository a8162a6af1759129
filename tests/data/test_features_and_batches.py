import math

import pytest
import torch

from data.dataset import collate
from data.features import AugmentConfig, FeatureConfig, FeatureExtractor, FeatureNormalizer, spec_augment
from data.sampler import DurationBatchSampler


def test_linear_features_have_161_bins_at_100_frames_per_second():
    extractor = FeatureExtractor(FeatureConfig(), sample_rate=16000)
    features = extractor(torch.randn(16000))
    assert extractor.num_features == 161
    assert features.shape == (161, extractor.num_frames(16000)) == (161, 101)
    assert torch.isfinite(features).all()


def test_mel_features_option():
    extractor = FeatureExtractor(FeatureConfig(kind="mel", num_mel_bins=40))
    assert extractor(torch.randn(8000)).shape == (40, 51)
    with pytest.raises(ValueError, match="unknown feature kind"):
        FeatureExtractor(FeatureConfig(kind="mfcc"))


def test_a_tone_peaks_in_its_frequency_bin():
    t = torch.arange(16000) / 16000
    features = FeatureExtractor(FeatureConfig())(torch.sin(2 * math.pi * 1000 * t))
    assert int(features.mean(dim=1).argmax()) == 20  # 1000 Hz / (8000 Hz / 160 bins)


def test_normalizer_gives_zero_mean_unit_variance_and_round_trips():
    features = [torch.randn(5, 30) * 3 + 7, torch.randn(5, 50) * 3 + 7]
    normalizer = FeatureNormalizer.fit(features)
    normalised = torch.cat([normalizer(f) for f in features], dim=1)
    assert torch.allclose(normalised.mean(dim=1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(normalised.std(dim=1), torch.ones(5), atol=1e-4)
    restored = FeatureNormalizer.from_state_dict(normalizer.state_dict())
    assert torch.equal(restored(features[0]), normalizer(features[0]))


def test_spec_augment_masks_are_reproducible_from_the_generator():
    features = torch.ones(40, 100)
    cfg = AugmentConfig(freq_masks=2, freq_mask_width=10, time_masks=2, time_mask_width=20)
    first = spec_augment(features, cfg, torch.Generator().manual_seed(3))
    again = spec_augment(features, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert 0 < int((first == 0).sum()) < features.numel()
    assert torch.equal(features, torch.ones(40, 100))  # input untouched


def test_collate_pads_and_keeps_lengths():
    items = [(torch.ones(3, 5), torch.tensor([1, 2]), 7), (torch.full((3, 2), 2.0), torch.tensor([3, 4, 5]), 9)]
    batch = collate(items)
    assert batch.features.shape == (2, 3, 5)
    assert batch.feature_lengths.tolist() == [5, 2]
    assert batch.features[1, :, 2:].abs().sum() == 0
    assert batch.targets.tolist() == [1, 2, 3, 4, 5] and batch.target_lengths.tolist() == [2, 3]
    assert batch.indices.tolist() == [7, 9]


def test_batches_respect_the_frame_budget_and_cover_every_utterance_once():
    frames = [100, 20, 50, 300, 40, 80, 10, 250, 60]
    sampler = DurationBatchSampler(frames, max_frames=300, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(frames)))
        assert all(len(b) * max(frames[i] for i in b) <= 300 for b in batches)


def test_sortagrad_first_epoch_is_sorted_and_later_epochs_are_shuffled_deterministically():
    frames = list(range(10, 410, 10))
    sampler = DurationBatchSampler(frames, max_frames=400, seed=5)
    first = [max(frames[i] for i in b) for b in sampler.epoch_order(0)]
    assert first == sorted(first)
    assert sampler.epoch_order(1) != sampler.epoch_order(0)
    assert sampler.epoch_order(1) == DurationBatchSampler(frames, max_frames=400, seed=5).epoch_order(1)


def test_sampler_resumes_mid_epoch():
    sampler = DurationBatchSampler([10] * 20, max_frames=40, seed=0)
    full = sampler.epoch_order(2)
    sampler.set_epoch(2, start_batch=3)
    assert list(sampler) == full[3:] and len(sampler) == len(full) - 3
