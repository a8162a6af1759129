"""Per-parameter table of a model (works on the meta device: shapes only, no memory)."""
from __future__ import annotations

from torch import nn


def parameter_table(model: nn.Module) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, shape, number of elements) of every parameter, in registration order."""
    return [(name, tuple(param.shape), param.numel()) for name, param in model.named_parameters()]


def format_parameter_table(rows: list[tuple[str, tuple[int, ...], int]]) -> str:
    """Markdown table of ``parameter_table`` rows with a total line."""
    lines = ["| parameter | shape | count |", "|---|---|---:|"]
    lines += [f"| {name} | {' x '.join(map(str, shape))} | {count:,} |" for name, shape, count in rows]
    lines.append(f"| **total** | | **{sum(count for _, _, count in rows):,}** |")
    return "\n".join(lines)
