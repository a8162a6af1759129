import pytest
import torch

from training.trainer import autocast_dtype


def test_precision_names_map_to_autocast_dtypes_and_unknown_names_are_errors():
    assert autocast_dtype("fp32") is None
    assert autocast_dtype("bf16") is torch.bfloat16 and autocast_dtype("fp16") is torch.float16
    with pytest.raises(ValueError, match="'fp8'"):
        autocast_dtype("fp8")
