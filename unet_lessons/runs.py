"""Saved training runs: train once before class, then present without waiting for training.

Each training call in a lesson names its run (``fit(..., run="04-dice")``). A switch in the
lesson's setup cell, read from the environment variable ``UNET_LESSONS_RUNS``, says what
``fit`` does with that name:

* ``off`` (the default): train, save nothing, print nothing;
* ``reuse``: load the saved run when it matches the cell, else train and save it;
* ``refresh``: always train, and save (replacing what was saved).

A saved run loads only when its weights' names and shapes, its :class:`TrainConfig`, the
model's class and arguments and the loss all equal the cell's; otherwise the lesson
trains and says why. What is saved: the weights, the history, the final random states (so
that later cells draw the same numbers as after a real run), and the state of the batch
source when it has one (``state_dict``/``load_state_dict``, as :class:`PatchSampler`).

Saved runs live outside the repository, in ``UNET_LESSONS_RUN_DIR`` or else
``~/.cache/unet-lessons/runs`` (``$XDG_CACHE_HOME`` is respected).
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn as nn

__all__ = ["MODES", "use_saved_runs", "saved_runs", "run_mode", "run_directory", "load_run", "save_run", "atomic_save"]

MODES = ("off", "reuse", "refresh")
MODE_ENV, DIRECTORY_ENV = "UNET_LESSONS_RUNS", "UNET_LESSONS_RUN_DIR"
_FORMAT = 1  # bump when what a saved run holds changes; older files are then retrained, not misread
_session: dict[str, Optional[str]] = {"mode": None, "directory": None}


def use_saved_runs(mode: Optional[str] = None, directory: Optional[str | os.PathLike] = None) -> str:
    """Choose what ``fit(..., run=...)`` does in this session; returns the mode in force.

    Args:
        mode: ``"off"``, ``"reuse"`` or ``"refresh"``; ``None`` reads ``UNET_LESSONS_RUNS`` (default off).
        directory: where runs are saved; ``None`` reads ``UNET_LESSONS_RUN_DIR`` (default: the user cache).
    """
    mode = (os.environ.get(MODE_ENV) or "off") if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"saved runs: mode must be one of {MODES}; got {mode!r} (from "
                         f"{'the environment variable ' + MODE_ENV if mode == os.environ.get(MODE_ENV) else 'the call'}).")
    _session["mode"], _session["directory"] = mode, None if directory is None else str(directory)
    return mode


@contextlib.contextmanager
def saved_runs(mode: str, directory: Optional[str | os.PathLike] = None) -> Iterator[Path]:
    """Within the ``with`` block, use saved runs in ``mode`` from ``directory``; afterwards, what was in force before.

    For tools that keep their own runs (the stored benchmark) without changing a lesson's session.

    Args:
        mode: ``"off"``, ``"reuse"`` or ``"refresh"``.
        directory: where runs are saved; ``None`` keeps the folder in force.

    Yields:
        The folder the runs are saved in.
    """
    before = dict(_session)
    use_saved_runs(mode, directory if directory is not None else _session["directory"])
    try:
        yield run_directory()
    finally:
        _session.update(before)


def run_mode() -> str:
    """The mode in force: set by :func:`use_saved_runs`, else read from the environment."""
    return _session["mode"] or use_saved_runs()


def run_directory() -> Path:
    """The folder that holds saved runs."""
    if _session["directory"] or os.environ.get(DIRECTORY_ENV):
        return Path(_session["directory"] or os.environ[DIRECTORY_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "unet-lessons" / "runs"


def _run_path(name: str) -> Path:
    if not name or any(ch in name for ch in "/\\") or name.startswith("."):
        raise ValueError(f"a run name is a plain file name such as '04-dice'; got {name!r}.")
    return run_directory() / f"{name}.pt"


def describe(obj: Any, *, buffers: bool = True) -> str:
    """A text that changes when a model's or loss's class or settings change (not its weights).

    ``buffers`` adds small buffers (a loss's class weights); a model's buffers (batch-norm
    statistics) change in training, so a model is described without them.
    """
    arguments = getattr(obj, "arguments", None)
    if arguments is not None:  # registered models record how they were built (models/base.py)
        return f"{type(obj).__qualname__}({sorted(arguments.items())!r})"
    if not isinstance(obj, nn.Module):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
    parts = []
    for name, module in obj.named_modules():
        settings = {k: v for k, v in vars(module).items()
                    if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str, tuple, type(None)))}
        values = {k: b.tolist() for k, b in module.named_buffers(recurse=False)
                  if buffers and b is not None and b.numel() < 64}
        parts.append(f"{name or '.'}:{type(module).__qualname__}{sorted(settings.items())}{sorted(values.items())}")
    return ";".join(parts)


def _random_states() -> dict:
    numpy_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:])}


def _set_random_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate((states["python"][0], tuple(states["python"][1]), states["python"][2]))
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))


def _expected(model: nn.Module, config, loss_fn: Callable) -> dict:
    """What must equal between a saved run and the cell for the run to load."""
    settings = {k: v for k, v in asdict(config).items() if k != "progress"}  # the bar changes no weight
    weights = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    return {"format": _FORMAT, "config": settings, "model": describe(model, buffers=False), "loss": describe(loss_fn),
            "weights": weights}


def _difference(saved: dict, expected: dict) -> Optional[str]:
    for part, label in (("format", "file format"), ("model", "model class or arguments"), ("loss", "loss"),
                        ("weights", "weight names and shapes")):
        if saved.get(part) != expected[part]:
            return f"its {label} differ"
    changed = [f"{k}={saved['config'].get(k)!r} saved, {v!r} now" for k, v in expected["config"].items()
               if saved["config"].get(k) != v]
    return f"its TrainConfig differs ({'; '.join(changed)})" if changed else None


def load_run(name: str, model: nn.Module, config, loss_fn: Callable, batches: Any = None) -> Optional[dict]:
    """In ``reuse`` mode, load the saved run ``name`` into ``model`` and return its history;
    ``None`` (and a one-line notice saying why) when the cell must train."""
    if run_mode() != "reuse":
        return None
    path = _run_path(name)
    if not path.exists():
        print(f"No saved run '{name}' yet: training it.")
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        reason = _difference(saved["expected"], _expected(model, config, loss_fn))
    except Exception as error:  # noqa: BLE001 - any unreadable file is retrained, and said so
        reason = f"the file cannot be read ({type(error).__name__}: {error})"
    if reason:
        print(f"Saved run '{name}' does not fit this cell ({reason}): training it again.")
        return None
    device = next(model.parameters()).device
    model.load_state_dict(saved["state_dict"])
    model.to(device).eval()
    _set_random_states(saved["random_states"])
    if saved["batches_state"] is not None and hasattr(batches, "load_state_dict"):
        batches.load_state_dict(saved["batches_state"])
    print(f"Loaded saved run '{name}' (trained in {saved['history']['seconds']:.0f} s); "
          f"set {MODE_ENV}=refresh to train it again.")
    return saved["history"]


def save_run(name: str, model: nn.Module, config, loss_fn: Callable, history: dict, batches: Any = None) -> None:
    """In ``reuse`` and ``refresh`` mode, save the finished run ``name`` (atomically)."""
    if run_mode() == "off":
        return
    path = _run_path(name)
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    batches_state = batches.state_dict() if hasattr(batches, "state_dict") else None
    atomic_save({"expected": _expected(model, config, loss_fn), "state_dict": state_dict, "history": history,
                 "random_states": _random_states(), "batches_state": batches_state}, path)
    print(f"Trained run '{name}' in {history['seconds']:.0f} s and saved it for reuse ({MODE_ENV}=reuse).")


def atomic_save(payload: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path
