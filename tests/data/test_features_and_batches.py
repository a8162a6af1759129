import math

import pytest
import torch

from data.dataset import collate
from data.features import (
    AugmentConfig,
    FeatureConfig,
    FeatureExtractor,
    FeatureNormalizer,
    check_augment,
    random_lowpass,
    random_vtlp,
    spec_augment,
    vtlp_warp,
)
from data.sampler import DurationBatchSampler


def test_linear_features_have_161_bins_at_100_frames_per_second():
    extractor = FeatureExtractor(FeatureConfig(), sample_rate=16000)
    features = extractor(torch.randn(16000))
    assert extractor.num_features == 161
    assert features.shape == (161, extractor.num_frames(16000)) == (161, 101)
    assert torch.isfinite(features).all()


def test_max_frequency_keeps_the_band_below_it():
    waveform = torch.randn(16000, generator=torch.Generator().manual_seed(0))
    full = FeatureExtractor(FeatureConfig())
    band = FeatureExtractor(FeatureConfig(max_frequency_hz=4000))
    assert band.num_features == 81 and float(band.bin_hz[-1]) == 4000
    assert torch.equal(band.log_spectrogram(waveform), full.log_spectrogram(waveform)[:81])
    mel = FeatureExtractor(FeatureConfig(kind="mel", num_mel_bins=40, max_frequency_hz=4000))
    assert mel.num_features == 40 and float(mel.bin_hz.max()) <= 4000
    for bad in (0.0, 8001.0):
        with pytest.raises(ValueError, match="max_frequency_hz"):
            FeatureExtractor(FeatureConfig(max_frequency_hz=bad))


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


def test_bin_frequencies_of_linear_and_mel_features():
    linear = FeatureExtractor(FeatureConfig())
    assert torch.equal(linear.bin_hz, torch.linspace(0, 8000, 161))
    mel = FeatureExtractor(FeatureConfig(kind="mel", num_mel_bins=40)).bin_hz
    assert mel.shape == (40,) and bool((mel[1:] >= mel[:-1]).all()) and 0 < float(mel[0]) < float(mel[-1]) <= 8000


def test_random_lowpass_attenuates_above_the_cutoff_only():
    extractor = FeatureExtractor(FeatureConfig())
    log_power = torch.zeros(161, 5)
    cfg = AugmentConfig(lowpass_prob=1.0, lowpass_cutoff_hz=[1000.0, 1000.0], lowpass_db_per_octave=[12.0, 12.0],
                        lowpass_max_db=30.0)
    out = random_lowpass(log_power, extractor.bin_hz, cfg, torch.Generator().manual_seed(0))
    db = -out[:, 0] * 10 / math.log(10)  # attenuation in dB per bin; 50 Hz per bin
    assert torch.all(db[:21] == 0)                                    # up to 1 kHz: untouched
    assert float(db[40]) == pytest.approx(12 * math.log2(2000 / 1000), abs=1e-4)  # one octave up: 12 dB
    assert torch.all(db[21:][1:] >= db[21:][:-1]) and float(db.max()) == pytest.approx(30.0)  # monotone, capped
    assert torch.equal(out, out[:, :1].expand(-1, 5))                # every frame alike
    floored = random_lowpass(torch.full((161, 2), -13.0), extractor.bin_hz, cfg, torch.Generator())
    assert float(floored.min()) == pytest.approx(math.log(1e-6))      # never below the features' floor


def test_random_lowpass_draws_reproducibly_and_only_when_asked():
    bin_hz, features = FeatureExtractor(FeatureConfig()).bin_hz, torch.randn(161, 7)
    generator = torch.Generator().manual_seed(3)
    assert random_lowpass(features, bin_hz, AugmentConfig(), generator) is features
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(3).get_state())  # no draw when off
    cfg = AugmentConfig(lowpass_prob=0.5)
    runs = [[random_lowpass(features, bin_hz, cfg, torch.Generator().manual_seed(s)) for s in range(20)]
            for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    filtered = sum(not torch.equal(out, features) for out in runs[0])
    assert 3 <= filtered <= 17                                         # about half of them


def test_utterance_mean_removes_a_fixed_channel():
    torch.manual_seed(0)
    speech = torch.randn(8000) * torch.linspace(0.2, 1.0, 8000)  # a level that changes over time
    plain = FeatureExtractor(FeatureConfig())
    assert torch.equal(plain(speech), plain.log_spectrogram(speech))  # off by default
    extractor = FeatureExtractor(FeatureConfig(utterance_mean=True))
    features = extractor(speech)
    assert torch.allclose(features.mean(dim=1), torch.zeros(161), atol=1e-4)
    quieter = extractor(0.3 * speech)  # a gain: the same constant in every bin
    assert torch.allclose(quieter, features, atol=1e-2)  # up to the log floor's share in the quietest bins
    muffled = random_lowpass(extractor.log_spectrogram(speech), extractor.bin_hz,
                             AugmentConfig(lowpass_prob=1.0, lowpass_max_db=20.0), torch.Generator().manual_seed(1))
    assert not torch.allclose(muffled, extractor.log_spectrogram(speech))
    assert torch.allclose(extractor.remove_channel(muffled), features, atol=1e-4)  # a filter: removed as well


def test_utterance_variance_restores_a_band_s_contrast():
    torch.manual_seed(0)
    cmvn = FeatureExtractor(FeatureConfig(utterance_mean=True, utterance_variance=True))
    log_power = torch.randn(161, 50) * 3.0 + 2.0
    log_power[0] = -5.0                                              # a constant bin: digital silence
    log_power[1] = -5.0 + 1e-3 * torch.randn(50)                     # nearly constant: rounding, dither
    features = cmvn.remove_channel(log_power)
    assert torch.isfinite(features).all() and torch.equal(features[0], torch.zeros(50))
    assert features[1].abs().max() < 0.05                            # the floor keeps it near 0, not blown up
    speech = slice(2, None)
    assert torch.allclose(features[speech].mean(dim=1), torch.zeros(159), atol=1e-5)
    assert torch.allclose(features[speech].std(dim=1, correction=0), torch.ones(159), atol=1e-5)
    contrast = torch.linspace(0.2, 1.0, 161)[:, None]                # a band where speech barely rises: less spread
    offset = torch.linspace(-3.0, 3.0, 161)[:, None]                 # and a microphone's response
    assert torch.allclose(cmvn.remove_channel(contrast * log_power + offset)[speech], features[speech], atol=1e-4)
    mean_only = FeatureExtractor(FeatureConfig(utterance_mean=True)).remove_channel(contrast * log_power)
    assert not torch.allclose(mean_only[speech], features[speech], atol=1e-2)
    with pytest.raises(ValueError, match="utterance_variance=true needs features.utterance_mean"):
        FeatureExtractor(FeatureConfig(utterance_variance=True))


def test_vtlp_warp_is_proportional_below_the_knee_and_keeps_nyquist():
    hz = torch.linspace(0, 8000, 161, dtype=torch.float64)
    for alpha in (0.9, 1.0, 1.1):
        warped = vtlp_warp(hz, alpha, boundary_hz=4800.0, nyquist_hz=8000.0)
        knee = 4800.0 * min(alpha, 1.0) / alpha
        below = hz <= knee
        assert torch.allclose(warped[below], alpha * hz[below])
        assert float(warped[-1]) == pytest.approx(8000.0) and bool((warped[1:] > warped[:-1]).all())
    assert torch.allclose(vtlp_warp(hz, 1.0, 4800.0, 8000.0), hz)


def test_random_vtlp_moves_a_formant_by_alpha():
    bin_hz = FeatureExtractor(FeatureConfig()).bin_hz  # 50 Hz per bin
    log_power = torch.zeros(161, 3)
    log_power[20] = 10.0  # a peak at 1000 Hz in every frame
    cfg = AugmentConfig(vtlp_prob=1.0, vtlp_alpha=[1.1, 1.1])
    out = random_vtlp(log_power, bin_hz, cfg, torch.Generator().manual_seed(0))
    assert int(out[:, 0].argmax()) == 22  # 1100 Hz
    assert out.shape == log_power.shape and torch.equal(out, out[:, :1].expand(-1, 3))
    lower = random_vtlp(log_power, bin_hz, AugmentConfig(vtlp_prob=1.0, vtlp_alpha=[0.9, 0.9]), torch.Generator())
    assert int(lower[:, 0].argmax()) == 18  # 900 Hz
    unchanged = random_vtlp(log_power, bin_hz, AugmentConfig(vtlp_prob=1.0, vtlp_alpha=[1.0, 1.0]), torch.Generator())
    assert torch.allclose(unchanged, log_power)
    generator = torch.Generator().manual_seed(5)
    assert random_vtlp(log_power, bin_hz, AugmentConfig(), generator) is log_power  # off: no draw
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(5).get_state())
    cfg = AugmentConfig(vtlp_prob=1.0)
    assert torch.equal(random_vtlp(log_power, bin_hz, cfg, torch.Generator().manual_seed(2)),
                       random_vtlp(log_power, bin_hz, cfg, torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("field, value", [("lowpass_cutoff_hz", [4000.0, 500.0]), ("lowpass_db_per_octave", [6.0]),
                                          ("lowpass_prob", 1.5), ("speed_perturb", [0.0, 1.0]),
                                          ("vtlp_alpha", [1.1, 0.9]), ("vtlp_prob", -0.1)])
def test_bad_augment_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        check_augment(AugmentConfig(**{field: value}))


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
