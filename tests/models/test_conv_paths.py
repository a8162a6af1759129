"""The CPU convolution paths of the front-end compute the same convolution as nn.Conv2d, values and gradients."""
import pytest
import torch
import torch.nn.functional as F

from models.layers import ConvBlock, phase_split_conv2d

CASES = [  # (in_channels, kernel, stride, input size (F, T))
    (1, (41, 11), (2, 3), (161, 97)),   # ds2_rnn_small's first layer, T not a multiple of the stride
    (1, (41, 11), (2, 2), (161, 40)),   # ds2_rnn_paper's first layer
    (3, (5, 7), (3, 2), (23, 18)),      # kernel not a multiple of the stride, several channels
    (2, (1, 2), (2, 3), (9, 10)),       # kernel shorter than the stride: frames no output reads are dropped
    (4, (3, 3), (1, 1), (8, 6)),        # stride 1: no phases
]


@pytest.mark.parametrize("in_channels, kernel, stride, size", CASES)
def test_phase_split_equals_the_strided_convolution(in_channels, kernel, stride, size):
    torch.manual_seed(0)
    x = torch.randn(3, in_channels, *size, requires_grad=True)
    weight = torch.randn(5, in_channels, *kernel, requires_grad=True)
    padding = (kernel[0] // 2, kernel[1] // 2)
    expected = F.conv2d(x, weight, stride=stride, padding=padding)
    got = phase_split_conv2d(x, weight, stride, padding)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    upstream = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, (x, weight), upstream)
    got_grads = torch.autograd.grad(got, (x, weight), upstream)
    for got_grad, expected_grad in zip(got_grads, expected_grads):
        torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("in_channels", [1, 8])
@pytest.mark.parametrize("batch", [1, 4])
def test_conv_block_convolves_as_its_conv_module(in_channels, batch):
    torch.manual_seed(0)
    block = ConvBlock(in_channels, 8, [21, 11], [2, 3], relu_clip=20.0)
    x = torch.randn(batch, in_channels, 41, 50)
    torch.testing.assert_close(block.convolve(x), block.conv(x), rtol=1e-5, atol=1e-4)


def test_bench_conv_checks_every_way_and_writes_its_table(tmp_path):
    from scripts.bench_conv import WAYS, main

    table = main(["--model", "ds2_rnn_small", "--batches", "2x0.5", "--rounds", "1", "--out", str(tmp_path / "t.md")])
    rows = [line for line in table.splitlines() if line.startswith("| conv")]
    assert len(rows) == 2 and all(len(row.split("|")) == len(WAYS) + 4 for row in rows)
    assert (tmp_path / "t.md").read_text().strip() == table
