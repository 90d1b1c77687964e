"""A layer table of any model: output shapes, parameters and multiply-adds, at a readable depth.

``torchinfo`` measures everything we need, but its printed table labels multiply-adds as
"Total mult-adds (Units.GIGABYTES)", which reads as a size in bytes, and lists a container
(``nn.ModuleDict``) again as "(recursive)" each time the forward pass returns to it: UNet++
gets twenty such rows. :func:`model_summary` keeps torchinfo's measurements and prints them
in its own table: one row per module down to ``depth`` levels, containers left out (their
children are listed under the container's name), and the totals in plain units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch.nn as nn
import torchinfo

__all__ = ["ModelSummary", "model_summary", "readable_count"]

_CONTAINERS = (nn.ModuleDict, nn.ModuleList)


def readable_count(value: float, unit: str) -> str:
    """``1.82e9, "multiply-adds"`` -> ``"1.82 G multiply-adds"`` (k, M, G, T: powers of 1000)."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix} {unit}"
    return f"{value:.0f} {unit}"


@dataclass
class ModelSummary:
    """The table and the totals; shown as the table in a notebook and by ``print``."""

    rows: list[tuple[str, str, str, int]]    # (name, layer type, output shape, parameters in the subtree)
    total_params: int
    trainable_params: int
    mult_adds: int
    output_bytes: int
    input_size: tuple[int, ...]

    def __str__(self) -> str:
        name_width = max([len(r[0]) for r in self.rows] + [5]) + 2
        type_width = max([len(r[1]) for r in self.rows] + [5]) + 2
        shape_width = max([len(r[2]) for r in self.rows] + [12]) + 2
        lines = [f"{'layer':<{name_width}}{'type':<{type_width}}{'output shape':<{shape_width}}{'parameters':>12}"]
        lines.append("-" * len(lines[0]))
        lines += [f"{name:<{name_width}}{kind:<{type_width}}{shape:<{shape_width}}{params:>12,}"
                  for name, kind, shape, params in self.rows]
        lines.append("-" * len(lines[0]))
        trainable = ("all trainable" if self.trainable_params == self.total_params
                     else f"{self.trainable_params:,} trainable")
        lines.append(f"parameters: {self.total_params:,} ({trainable})")
        lines.append(f"one forward pass of a {tuple(self.input_size)} input: "
                     f"{readable_count(self.mult_adds, 'multiply-adds')}")
        lines.append(f"layer outputs kept for the backward pass (torchinfo's estimate): "
                     f"{self.output_bytes / 2**20:.1f} MiB")
        return "\n".join(lines)

    __repr__ = __str__


def model_summary(model: nn.Module, input_size: Sequence[int], *, depth: int = 2, device: str = "cpu") -> ModelSummary:
    """Summarise ``model`` for one input of ``input_size`` ``(B, C, *S)``.

    Args:
        model: any ``nn.Module``.
        input_size: the input tensor's shape, batch included.
        depth: how many levels of modules to list (1: the model's direct parts).
        device: where torchinfo runs the forward pass.
    """
    # Ask torchinfo for more levels than shown: leaving containers out lifts their children a level.
    stats = torchinfo.summary(model, input_size=tuple(input_size), depth=depth + 3, device=device, verbose=0)
    names = {id(module): name for name, module in model.named_modules()}
    containers = {name for name, module in model.named_modules() if isinstance(module, _CONTAINERS)}
    rows, seen = [], set()
    for info in stats.summary_list:
        name = names.get(id(info.module))
        if info.depth == 0 or name is None or name in seen or isinstance(info.module, _CONTAINERS):
            continue
        parts = name.split(".")
        # Its level: the ancestors on its path that are shown (containers are not).
        level = sum(1 for i in range(1, len(parts)) if ".".join(parts[:i]) not in containers)
        if level >= depth:
            continue
        seen.add(name)
        shape = "×".join(str(s) for s in info.output_size) if info.output_size else "--"
        rows.append(("  " * level + name, info.class_name, shape, int(info.num_params)))
    return ModelSummary(rows, int(stats.total_params), int(stats.trainable_params), int(stats.total_mult_adds),
                        int(stats.total_output_bytes), tuple(input_size))
