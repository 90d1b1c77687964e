"""Small helpers every lesson uses: seeding, device choice, shape tracing and showing source."""

from __future__ import annotations

import inspect
import os
import random
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

__all__ = [
    "seed_everything",
    "get_device",
    "count_parameters",
    "ShapeRecord",
    "trace_shapes",
    "format_shape_table",
    "show_source",
    "load_state_by_order",
    "mirror_pad",
    "package_warning",
]

THREADS_ENV = "UNET_LESSONS_NUM_THREADS"


def package_warning(message: str, category: type[Warning], *, source: str = "unet_lessons") -> None:
    """Warn from the package itself: one line, "<source>:0: <Category>: <message>".

    ``warnings.warn`` names the file and line it is raised for and echoes that source line; in
    a notebook that is a kernel temp path and a line of the student's cell (``stacklevel=2``) or
    of ours (``stacklevel=1``), neither of which helps. The filters still apply by category, so
    ``warnings.simplefilter("ignore", PredictionCollapseWarning)`` and ``pytest.warns`` work as usual.
    """
    warnings.warn_explicit(message, category, filename=source, lineno=0, module=source)


def seed_everything(seed: int = 0, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA), so a lesson reruns to the same numbers.

    If the environment variable ``UNET_LESSONS_NUM_THREADS`` is set, torch's intra-op
    thread count is fixed to it: CPU results are bit-identical at a fixed thread count
    but move by ~1e-7 when it changes, which the notebook tests must not see.

    Args:
        seed: the seed.
        deterministic: ask cuDNN for deterministic kernels (slower, only matters on a GPU).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    threads = os.environ.get(THREADS_ENV)
    if threads:
        torch.set_num_threads(int(threads))
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def get_device(prefer: Optional[str] = None) -> torch.device:
    """The best available device: ``cuda``, then Apple ``mps``, then ``cpu``.

    Args:
        prefer: force a device name such as ``"cpu"``; the environment variable
            ``UNET_LESSONS_DEVICE`` does the same without editing a notebook.
    """
    name = prefer or os.environ.get("UNET_LESSONS_DEVICE")
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass
class ShapeRecord:
    """One row of :func:`trace_shapes`: a module's name, type and output shape."""

    name: str
    type: str
    shape: tuple[int, ...]
    params: int


def trace_shapes(model: nn.Module, x: torch.Tensor, *, depth: int = 1) -> list[ShapeRecord]:
    """Run ``model(x)`` with forward hooks and record each submodule's output shape.

    Args:
        model: any module.
        x: an input batch (a ``"meta"`` tensor works too and costs no compute).
        depth: how deep in the module tree to record; 1 means the direct children
            (the items of a ``ModuleList`` count as children of its owner).

    Returns:
        One :class:`ShapeRecord` per call, in execution order.
    """
    records: list[ShapeRecord] = []
    handles = []

    def hook(mod: nn.Module, _inputs: Any, output: Any, name: str) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        records.append(ShapeRecord(name, type(mod).__name__, tuple(out.shape), count_parameters(mod)))

    def visit(module: nn.Module, prefix: str, level: int) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
                visit(child, name + ".", level)  # containers are never called: list their items
                continue
            handles.append(child.register_forward_hook(lambda m, i, o, name=name: hook(m, i, o, name)))
            if level + 1 < depth:
                visit(child, name + ".", level + 1)

    visit(model, "", 0)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return records


def format_shape_table(records: Iterable[ShapeRecord]) -> str:
    """Format :func:`trace_shapes` records as a fixed-width text table."""
    rows = [("layer", "type", "output shape", "params")]
    rows += [(r.name, r.type, str(r.shape), f"{r.params:,}") for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def show_source(obj: Any):
    """Display the source code of ``obj`` (a class or function) with syntax highlighting.

    In a notebook this returns an ``IPython.display.Code`` object; its plain-text form is
    the source itself, so static renderings and nbval see the real code.
    """
    source = inspect.getsource(obj)
    try:
        from IPython.display import Code
    except ImportError:  # outside IPython
        return source
    return Code(source, language="python")


def load_state_by_order(target: nn.Module, source: nn.Module) -> nn.Module:
    """Copy ``source``'s parameters and buffers into ``target`` position by position.

    Used to prove that a scratch network equals a package network: the two name their
    layers differently but register them in the same order.

    Raises:
        ValueError: when the two state dicts differ in length or in any tensor's shape.
    """
    target_state, source_state = target.state_dict(), source.state_dict()
    if len(target_state) != len(source_state):
        raise ValueError(f"the models have {len(target_state)} and {len(source_state)} tensors; they do not line up.")
    new_state = {}
    for (t_name, t_value), (s_name, s_value) in zip(target_state.items(), source_state.items()):
        if t_value.shape != s_value.shape:
            raise ValueError(f"{t_name} {tuple(t_value.shape)} does not line up with {s_name} {tuple(s_value.shape)}.")
        new_state[t_name] = s_value.clone()
    target.load_state_dict(new_state)
    return target


def mirror_pad(tensor: torch.Tensor, pads: Sequence[tuple[int, int]], first_axis: int) -> torch.Tensor:
    """Extend axes ``first_axis, first_axis + 1, ...`` by mirroring, by any amount and for any dtype.

    Mirrored about the border pixel (..., 2, 1, 0, 1, 2, ...), as ``F.pad(mode="reflect")``
    and ``grid_sample``'s reflection padding do, and as the U-Net paper mirrors tile borders;
    a pad longer than the axis keeps folding back and forth.

    Args:
        tensor: any tensor (labels too: nothing is interpolated).
        pads: ``(before, after)`` for each padded axis, in axis order.
        first_axis: the first axis to pad.

    Raises:
        ValueError: when an axis of length 1 would be padded (there is nothing to mirror).
    """
    for axis, (before, after) in enumerate(pads, start=first_axis):
        if not (before or after):
            continue
        n = tensor.shape[axis]
        if n < 2:
            raise ValueError(f"cannot mirror an axis of length {n}; use pad_mode='constant'.")
        period = 2 * (n - 1)
        index = torch.arange(-before, n + after, device=tensor.device) % period  # triangle wave ...
        index = (n - 1) - ((n - 1) - index).abs()  # ... folded into 0 .. n - 1
        tensor = tensor.index_select(axis, index)
    return tensor
