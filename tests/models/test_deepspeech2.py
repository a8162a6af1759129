"""DeepSpeech2 forward: shapes and output lengths, padding invariance, batch statistics, gradients."""
import pytest
import torch

from models import DeepSpeech2

NUM_FEATURES, NUM_CLASSES = 21, 7

VARIANTS = [  # (rnn_type, bidirectional, lookahead_context)
    ("rnn", True, 0), ("rnn", False, 0), ("gru", True, 0), ("gru", False, 0), ("lstm", True, 0), ("lstm", False, 0),
    ("rnn", False, 3), ("gru", False, 3),
]


def small_model(rnn_type="rnn", bidirectional=True, lookahead_context=0, **overrides) -> DeepSpeech2:
    torch.manual_seed(0)
    kwargs = dict(
        num_features=NUM_FEATURES, num_classes=NUM_CLASSES, conv_channels=[3, 4], conv_kernels=[[5, 5], [3, 3]],
        conv_strides=[[2, 2], [1, 1]], rnn_type=rnn_type, rnn_hidden_size=8, num_rnn_layers=2,
        bidirectional=bidirectional, lookahead_context=lookahead_context, fc_hidden_size=6,
    )
    return DeepSpeech2(**{**kwargs, **overrides})


def fill_running_statistics(model: DeepSpeech2) -> None:
    """One training-mode pass so that the eval-mode batch norms are not the identity."""
    model.train()
    with torch.no_grad():
        model(3 * torch.randn(4, NUM_FEATURES, 40) + 1, torch.tensor([40, 31, 22, 13]))
    model.eval()


def test_output_lengths_come_from_the_conv_modules():
    """Stride 3 then 2 with an even time kernel: floor((L + 2 * (k // 2) - k) / s) + 1 per layer."""
    model = small_model(conv_kernels=[[5, 7], [3, 4]], conv_strides=[[2, 3], [1, 2]])
    lengths = torch.tensor([50, 49, 17, 3, 1])

    def expected(length: int) -> int:
        for kernel, stride in [(7, 3), (4, 2)]:
            length = (length + 2 * (kernel // 2) - kernel) // stride + 1
        return length

    log_probs, out_lengths = model(torch.randn(5, NUM_FEATURES, 50), lengths)
    assert out_lengths.tolist() == [expected(n) for n in lengths.tolist()] == [9, 9, 4, 1, 1]
    assert model.output_lengths(lengths).tolist() == out_lengths.tolist()
    assert log_probs.shape == (5, expected(50), NUM_CLASSES)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(5, expected(50)))


def test_paper_front_end_halves_the_frame_rate():
    model = small_model(num_features=161, conv_kernels=[[41, 11], [21, 11]], conv_strides=[[2, 2], [2, 1]])
    assert model.output_lengths(torch.tensor([100, 101, 7, 1])).tolist() == [50, 51, 4, 1]
    assert model.rnns[0].weight_ih.shape[1] == 4 * 41  # 161 bins -> 81 -> 41


@pytest.mark.parametrize("rnn_type, bidirectional, lookahead_context", VARIANTS)
def test_an_utterance_gives_the_same_output_alone_and_in_a_padded_batch(rnn_type, bidirectional, lookahead_context):
    model = small_model(rnn_type, bidirectional, lookahead_context)
    fill_running_statistics(model)
    lengths = torch.tensor([37, 24, 9])
    features = torch.randn(3, NUM_FEATURES, 40)  # 3 frames beyond the longest utterance, and junk in the padding
    with torch.no_grad():
        log_probs, out_lengths = model(features, lengths)
        for b, length in enumerate(lengths.tolist()):
            alone, alone_length = model(features[b:b + 1, :, :length], lengths[b:b + 1])
            assert alone_length.item() == out_lengths[b].item() == alone.shape[1]
            torch.testing.assert_close(log_probs[b, :alone_length.item()], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("rnn_type", ["rnn", "gru"])
def test_training_batch_statistics_ignore_padding(rnn_type):
    """Padding a training batch further (with junk) changes neither its valid outputs nor the running statistics."""
    lengths = torch.tensor([30, 18])
    features = torch.randn(2, NUM_FEATURES, 30)
    padded = torch.cat([features, 100 * torch.randn(2, NUM_FEATURES, 12)], dim=-1)
    outputs, statistics = [], []
    for batch in (features, padded):
        model = small_model(rnn_type).train()
        log_probs, out_lengths = model(batch, lengths)
        outputs.append([log_probs[b, :n] for b, n in enumerate(out_lengths.tolist())])
        statistics.append({k: v for k, v in model.state_dict().items() if "running" in k})
    for short, long in zip(*outputs, strict=True):
        torch.testing.assert_close(short, long, atol=1e-5, rtol=0)
    torch.testing.assert_close(statistics[0], statistics[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("rnn_type, bidirectional, lookahead_context", VARIANTS)
def test_gradients_reach_every_parameter(rnn_type, bidirectional, lookahead_context):
    model = small_model(rnn_type, bidirectional, lookahead_context).train()
    log_probs, out_lengths = model(torch.randn(3, NUM_FEATURES, 30), torch.tensor([30, 21, 12]))
    valid = torch.arange(log_probs.shape[1])[None, :] < out_lengths[:, None]
    (log_probs[..., 1] * valid).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_pruned_tensors_are_found_by_name():
    names = [name for name, _ in small_model("rnn").named_parameters()]
    assert [n for n in names if "weight_ih" in n] == ["rnns.0.weight_ih", "rnns.1.weight_ih"]
    assert [n for n in names if "weight_hh" in n] == [f"rnns.{i}.weight_hh_{d}" for i in (0, 1) for d in ("fwd", "bwd")]
    assert "fc.linear.weight" in names and "output.weight" in names


@pytest.mark.parametrize("overrides, message", [
    ({"rnn_type": "transformer"}, "unknown rnn_type"),
    ({"bidirectional": True, "lookahead_context": 3}, "unidirectional"),
    ({"conv_channels": [3]}, "one entry per conv layer"),
    ({"num_rnn_layers": 0}, "at least 1"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"dropout": -0.1}, "dropout must be in"),
])
def test_invalid_architectures_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_model(**overrides)


def test_dropout_acts_in_training_only():
    features, lengths = torch.randn(2, NUM_FEATURES, 30), torch.tensor([30, 24])
    plain, dropped = small_model(), small_model(dropout=0.5)  # same seed: same weights
    fill_running_statistics(plain)
    dropped.load_state_dict(plain.state_dict())
    dropped.eval()
    torch.testing.assert_close(dropped(features, lengths)[0], plain(features, lengths)[0])
    dropped.train()
    first, second = dropped(features, lengths)[0], dropped(features, lengths)[0]
    assert not torch.allclose(first, second)
