"""Saved training runs: train once before class, then present without waiting for training.

Each training call in a lesson names its run (``fit(..., run="04-dice")``). A switch in the
lesson's setup cell, read from the environment variable ``UNET_LESSONS_RUNS``, says what
``fit`` does with that name:

* ``off`` (the default): train, save nothing, print nothing;
* ``reuse``: load the saved run when it matches the cell, else train and save it;
* ``refresh``: always train, and save (replacing what was saved).

A saved run loads only when the cell would train exactly what was saved: the same
:class:`TrainConfig`, model class and arguments, initial weights and first batch (digests
taken before training, without advancing the batch stream or any random state), a loss and a
validation function that compute the same (their code, the values they close over, the
globals they read) and the same source files of this package. Everything is compared before
anything is loaded; on any difference the lesson trains, and one line says what differs.
What is saved: the weights, the history, the final random states of every device that was
used (so that later cells draw the same numbers as after a real run), and the state of the
batch source when it has one (``state_dict``/``load_state_dict``, as :class:`PatchSampler`).

Saved runs live outside the repository, in ``UNET_LESSONS_RUN_DIR`` or else
``~/.cache/unet-lessons/runs`` (``$XDG_CACHE_HOME`` is respected).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import random
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np
import torch
import torch.nn as nn

from .digests import digest, package_digest, weights_digest

__all__ = ["MODES", "use_saved_runs", "saved_runs", "run_mode", "run_directory", "SavedRun", "digest",
           "atomic_save"]

MODES = ("off", "reuse", "refresh")
MODE_ENV, DIRECTORY_ENV = "UNET_LESSONS_RUNS", "UNET_LESSONS_RUN_DIR"
_FORMAT = 2  # bump when what a saved run holds changes; older files are then retrained, not misread
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


# ----- the first batch, taken without advancing anything ------------------------------------------
class _StartedBatches:
    """Batches whose first one was drawn to compare it: training starts with that batch and goes on from there."""

    def __init__(self, batches: Iterable, first: Any, stream: Iterator) -> None:
        self.batches, self._started = batches, [itertools.chain([first], stream)]

    def __iter__(self) -> Iterator:
        return self._started.pop() if self._started else iter(self.batches)  # later epochs: the source again


def _first_batch(batches: Iterable, device_types: set[str]) -> tuple[str, Iterable]:
    """A digest of the batch training starts with, and the batches to train on, so that nothing moves on.

    A source that can be rewound (``state_dict``/``load_state_dict``) is rewound, with every random
    state; any other is drawn from as training would draw, and training starts with the batch drawn.
    """
    if hasattr(batches, "state_dict") and hasattr(batches, "load_state_dict"):
        before, states = copy.deepcopy(batches.state_dict()), _random_states(device_types)
        try:
            return digest(next(iter(batches), None)), batches
        finally:
            batches.load_state_dict(before)
            _set_random_states(states)
    stream = iter(batches)
    try:
        first = next(stream)
    except StopIteration:
        return digest(None), batches  # no batch at all: fit says so when it draws
    return digest(first), _StartedBatches(batches, first, stream)


# ----- random states ---------------------------------------------------------------------------
def _random_states(device_types: set[str]) -> dict:
    numpy_state = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:])}
    if "cuda" in device_types or torch.cuda.is_initialized():
        states["cuda"] = list(torch.cuda.get_rng_state_all())
    if "mps" in device_types:
        states["mps"] = torch.mps.get_rng_state()
    return states


def _set_random_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate((states["python"][0], tuple(states["python"][1]), states["python"][2]))
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    # A device this machine lacks has no generator to restore (a run saved on a GPU, shown on a laptop).
    for index, state in enumerate(states.get("cuda", [])[:torch.cuda.device_count()]):
        torch.cuda.set_rng_state(state, index)
    if "mps" in states and torch.backends.mps.is_available():
        torch.mps.set_rng_state(states["mps"])


# ----- a run: compared, loaded, saved --------------------------------------------------------
#: What must equal between a saved run and the cell, and what a difference tells the lecturer.
_PARTS = {
    "package": "the package's source files changed (a .py file of unet_lessons was edited)",
    "model": "the model class or arguments differ",
    "model code": "the model's code differs (a class defined outside the package changed)",
    "initial weights": "the initial weights differ: a different seed before the model was built, or a different model",
    "first batch": "the first batch differs: the data or the sampler changed",
    "batch source": "the batch source's state differs: another sampler seed, or batches drawn before fit",
    "loss": "the loss differs: another loss, or other settings, values or code in it",
    "validation": "the validation function differs: other code, or other values it reads",
}


def _differences(saved: dict, expected: dict) -> list[str]:
    if saved.get("format") != expected["format"]:
        return [f"it was saved in an older file format ({saved.get('format')}, now {expected['format']})"]
    reasons = [text for part, text in _PARTS.items() if saved.get(part) != expected[part]]
    changed = [f"{k}={saved['config'].get(k)!r} saved, {v!r} now" for k, v in expected["config"].items()
               if saved["config"].get(k) != v]
    return reasons + ([f"its TrainConfig differs ({'; '.join(changed)})"] if changed else [])


class SavedRun:
    """One named training run of a cell: compared with the run saved under its name, loaded, or saved.

    Made before training: it takes the digests then (see the module's docstring). With no name,
    or with saved runs off, it takes nothing, changes nothing and does nothing.

    Args:
        name: the run's name, e.g. ``"04-dice"`` (a plain file name), or ``None``.
        model: the network, already on its device, with its initial weights.
        config: the :class:`~unet_lessons.train.TrainConfig`.
        loss_fn: the loss.
        batches: the batch source training will draw from.
        val_fn: the validation function, if any.

    Attributes:
        batches: what to train on: ``batches`` itself, or, when its first batch had to be drawn
            from a stream that cannot be rewound, that batch followed by the rest of the stream.
    """

    def __init__(self, name: Optional[str], model: nn.Module, config, loss_fn: Callable, batches: Iterable,
                 val_fn: Optional[Callable] = None) -> None:
        self.name, self.model, self.source, self.batches = name, model, batches, batches
        self.mode = "off" if name is None else run_mode()
        if self.mode == "off":
            return
        self.path = _run_path(name)
        self.device_types = {tensor.device.type for tensor in itertools.chain(model.parameters(), model.buffers())}
        state = batches.state_dict() if hasattr(batches, "state_dict") else None
        self.expected = {"format": _FORMAT, "package": package_digest(), "model": describe(model, buffers=False),
                         "model code": digest(list(dict.fromkeys(type(m) for m in model.modules()))),
                         "initial weights": weights_digest(model), "batch source": digest(state),
                         "loss": digest(loss_fn), "validation": digest(val_fn),
                         "config": {k: v for k, v in asdict(config).items() if k != "progress"}}  # a bar trains nothing
        self.expected["first batch"], self.batches = _first_batch(batches, self.device_types)

    def load(self) -> Optional[dict]:
        """In ``reuse`` mode, load the saved run into the model, the random states and the batch source,
        and return its history; ``None`` (and a line saying why) when the cell must train."""
        if self.mode != "reuse":
            return None
        if not self.path.exists():
            print(f"No saved run '{self.name}' yet: training it.")
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            reasons = _differences(saved["expected"], self.expected)
        except Exception as error:  # noqa: BLE001 - any unreadable file is retrained, and said so
            first_line = (str(error).splitlines() or [""])[0]  # torch's refusals run to a page
            reasons = [f"the file cannot be read ({type(error).__name__}: {first_line})"]
        if reasons:
            print(f"Saved run '{self.name}' does not fit this cell ({'; '.join(reasons)}): training it again.")
            return None
        # Everything matched; only now is anything loaded.
        if saved["batches_state"] is not None and hasattr(self.source, "load_state_dict"):
            self.source.load_state_dict(saved["batches_state"])
        self.model.load_state_dict(saved["state_dict"])
        self.model.eval()
        _set_random_states(saved["random_states"])
        print(f"Loaded saved run '{self.name}' (trained in {saved['history']['seconds']:.0f} s); "
              f"set {MODE_ENV}=refresh to train it again.")
        return saved["history"]

    def save(self, history: dict) -> None:
        """In ``reuse`` and ``refresh`` mode, save the finished run (atomically)."""
        if self.mode == "off":
            return
        state_dict = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        batches_state = self.source.state_dict() if hasattr(self.source, "state_dict") else None
        atomic_save({"expected": self.expected, "state_dict": state_dict, "history": history,
                     "random_states": _random_states(self.device_types), "batches_state": batches_state}, self.path)
        print(f"Trained run '{self.name}' in {history['seconds']:.0f} s and saved it for reuse ({MODE_ENV}=reuse).")


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
