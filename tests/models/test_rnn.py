"""The DS2 clipped-ReLU RNN against its equations, and the recurrent layer factory."""
import pytest
import torch

from models.layers import time_mask
from models.rnn import DS2RNN, ClippedRecurrence, make_rnn_layer


def reference_ds2_rnn(layer: DS2RNN, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The layer's equations, one utterance and one step at a time (training-mode batch norm over valid frames)."""
    clip = layer.relu_clip
    wx = [x[:length, b] @ layer.weight_ih.t() for b, length in enumerate(lengths.tolist())]
    valid = torch.cat(wx)
    mean, var = valid.mean(0), valid.var(0, unbiased=False)
    out = torch.zeros(x.shape[0], x.shape[1], layer.weight_ih.shape[0], dtype=x.dtype)
    for b, z in enumerate(wx):
        z = (z - mean) / torch.sqrt(var + layer.norm.eps) * layer.norm.weight + layer.norm.bias
        for direction in layer.directions:
            steps = range(len(z)) if direction == "fwd" else range(len(z) - 1, -1, -1)
            u, bias = getattr(layer, f"weight_hh_{direction}"), getattr(layer, f"bias_{direction}")
            h = torch.zeros_like(bias)
            for t in steps:
                h = torch.clamp(z[t] + u @ h + bias, 0, clip)
                out[t, b] += h
    return out


@pytest.mark.parametrize("bidirectional", [True, False])
def test_ds2_rnn_matches_its_equations(bidirectional):
    torch.manual_seed(0)
    layer = DS2RNN(5, 4, bidirectional, relu_clip=1.0).double()  # a low clip so that some units saturate
    x, lengths = torch.randn(7, 3, 5, dtype=torch.double), torch.tensor([7, 4, 1])
    expected = reference_ds2_rnn(layer, x, lengths)
    torch.testing.assert_close(layer(x, lengths, time_mask(lengths, 7)), expected)


def test_recurrence_backward_matches_numerical_gradients():
    torch.manual_seed(0)
    inputs = torch.randn(6, 2, 3, 4, dtype=torch.double, requires_grad=True)
    weight_hh_t = (0.5 * torch.randn(2, 4, 4, dtype=torch.double)).requires_grad_()
    assert torch.autograd.gradcheck(lambda i, w: ClippedRecurrence.apply(i, w, 1.0), (inputs, weight_hh_t))


@torch.no_grad()
def test_the_two_directions_have_their_own_recurrent_matrices():
    """The backward direction starts at each utterance's last valid frame, so that frame does not depend on
    U_bwd; the forward direction's first frame does not depend on U_fwd. A shared cell or a reversal over the
    padded length breaks one of the two."""
    torch.manual_seed(0)
    layer = DS2RNN(6, 8, bidirectional=True, relu_clip=20.0).eval()
    x, lengths = torch.randn(9, 3, 6), torch.tensor([9, 5, 2])
    mask = time_mask(lengths, 9)
    last = lengths - 1
    before = layer(x, lengths, mask)
    layer.weight_hh_bwd.add_(torch.randn(8, 8))
    after_bwd = layer(x, lengths, mask)
    torch.testing.assert_close(after_bwd[last, range(3)], before[last, range(3)])
    assert not torch.allclose(after_bwd[0], before[0])
    layer.weight_hh_fwd.add_(torch.randn(8, 8))
    after_fwd = layer(x, lengths, mask)
    torch.testing.assert_close(after_fwd[0], after_bwd[0])
    assert not torch.allclose(after_fwd[last, range(3)], after_bwd[last, range(3)])


def test_bidirectional_ds2_layer_shares_its_input_matrix():
    """Parameters of a bidirectional layer: in*h + 2*h*h + 2*h (Narang et al.) + 2*h for the batch norm of W x."""
    layer = DS2RNN(1312, 1760, bidirectional=True, relu_clip=20.0).to("meta")
    shapes = {name: tuple(p.shape) for name, p in layer.named_parameters()}
    assert shapes == {
        "weight_ih": (1760, 1312), "weight_hh_fwd": (1760, 1760), "weight_hh_bwd": (1760, 1760),
        "bias_fwd": (1760,), "bias_bwd": (1760,), "norm.weight": (1760,), "norm.bias": (1760,),
    }
    assert sum(p.numel() for p in layer.parameters()) == 1312 * 1760 + 2 * 1760**2 + 2 * 1760 + 2 * 1760


@pytest.mark.parametrize("rnn_type, names", [
    ("rnn", {"weight_ih", "weight_hh_fwd", "weight_hh_bwd"}),
    ("gru", {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l0_reverse", "rnn.weight_hh_l0_reverse"}),
    ("lstm", {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l0_reverse", "rnn.weight_hh_l0_reverse"}),
])
def test_recurrent_matrices_are_named_for_the_pruning_patterns(rnn_type, names):
    layer = make_rnn_layer(rnn_type, 5, 4, bidirectional=True, relu_clip=20.0)
    assert {n for n, _ in layer.named_parameters() if "weight_ih" in n or "weight_hh" in n} == names


def test_fused_bidirectional_layer_sums_its_directions():
    torch.manual_seed(0)
    layer = make_rnn_layer("gru", 5, 4, bidirectional=True, relu_clip=20.0).eval()
    x, lengths = torch.randn(6, 1, 5), torch.tensor([6])
    both, _ = layer.rnn(layer.norm(x.view(6, 5)).view(6, 1, 5))  # (T, 1, 2 * H)
    torch.testing.assert_close(layer(x, lengths, time_mask(lengths, 6)), both[..., :4] + both[..., 4:])


def test_unknown_rnn_type_raises():
    with pytest.raises(ValueError, match="unknown rnn_type 'transformer'"):
        make_rnn_layer("transformer", 5, 4, bidirectional=True, relu_clip=20.0)
