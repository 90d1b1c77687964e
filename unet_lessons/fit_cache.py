"""Finished training runs stored and replayed, so that ``make test`` trains each lesson once.

``make test`` runs every lesson twice: under nbval, which trains the networks and compares
the numbers, and then live in JupyterLab in a browser, which checks what a person sees (cells
without errors, widgets drawn, the slice viewer answering). Training again in the browser
would double the suite's time and prove nothing new, so the Makefile lets the nbval run store
each :func:`~unet_lessons.train.fit` result and the browser run replay it.

Off unless the environment variable ``UNET_LESSONS_FIT_CACHE`` names a directory;
``UNET_LESSONS_FIT_CACHE_MODE`` is ``write`` (train, then store) or ``read`` (replay a stored
run if there is one, else train). A lesson never sets either.

A run is replayed only if everything that decides its result is the same: the model's class
and starting weights, the settings, the loss, the random-number states of Python, NumPy and
torch, and the first batch. Replaying restores the trained weights, the history and the
random-number states the real run ended with, and draws the run's batches from the stream
without training on them, so that every later cell sees exactly the state it saw under nbval.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn as nn

__all__ = ["CACHE_ENV", "MODE_ENV", "EVENTS_LOG", "FitCache", "fingerprint_object", "random_states", "set_random_states"]

CACHE_ENV = "UNET_LESSONS_FIT_CACHE"
MODE_ENV = "UNET_LESSONS_FIT_CACHE_MODE"
EVENTS_LOG = "events.log"
_MODES = ("read", "write")


def _update_with_tensor(digest, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().to("cpu").contiguous()
    digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())


_PLAIN = (bool, int, float, str, bytes, type(None))


def _update_with_object(digest, value: Any, depth: int = 0) -> None:
    """Fingerprint a loss (or any setting) by what it holds, the same in every process.

    A module: its modules' class names, plain attributes (flags, reductions, class counts),
    tensors and buffers (class weights, say). A function: its name and byte code. Pickle is no
    use here: a pickled tensor differs from process to process.
    """
    if depth > 6:  # an object that holds itself, or a deep graph: its kind is enough
        digest.update(type(value).__qualname__.encode())
    elif isinstance(value, nn.Module):
        for name, module in value.named_modules():
            digest.update(f"{name}:{type(module).__module__}.{type(module).__qualname__}".encode())
            for key, attr in sorted(vars(module).items()):
                if key in ("_parameters", "_buffers"):
                    for tensor_name, tensor in attr.items():
                        if tensor is not None:
                            digest.update(tensor_name.encode())
                            _update_with_tensor(digest, tensor)
                elif key != "_modules":
                    digest.update(key.encode())
                    _update_with_object(digest, attr, depth + 1)
    elif isinstance(value, torch.Tensor):
        _update_with_tensor(digest, value)
    elif isinstance(value, _PLAIN):
        digest.update(repr(value).encode())
    elif isinstance(value, (list, tuple)):
        for item in value:
            _update_with_object(digest, item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            digest.update(repr(key).encode())
            _update_with_object(digest, item, depth + 1)
    elif callable(value):
        digest.update(f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__qualname__)}".encode())
        code = getattr(value, "__code__", None)
        if code is not None:
            digest.update(code.co_code)
        elif not isinstance(value, type):
            for key, attr in sorted(getattr(value, "__dict__", {}).items()):
                digest.update(key.encode())
                _update_with_object(digest, attr, depth + 1)
    else:
        digest.update(type(value).__qualname__.encode())  # e.g. hooks' dicts: their kind, not their address


def fingerprint_object(value: Any) -> str:
    """A hex digest of what ``value`` holds (see ``_update_with_object``), equal in every process."""
    digest = hashlib.sha256()
    _update_with_object(digest, value)
    return digest.hexdigest()


def random_states() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_random_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])


class FitCache:
    """Stored ``fit`` runs in ``directory``, one file per run, named by the run's fingerprint.

    Args:
        directory: where runs are stored.
        mode: ``"write"`` stores every run; ``"read"`` replays stored runs.
    """

    def __init__(self, directory: str | os.PathLike, mode: str) -> None:
        if mode not in _MODES:
            raise ValueError(f"{MODE_ENV} must be one of {_MODES}; got {mode!r}.")
        self.directory, self.mode = Path(directory), mode

    @classmethod
    def from_environment(cls) -> Optional["FitCache"]:
        directory = os.environ.get(CACHE_ENV)
        if not directory:
            return None
        return cls(directory, os.environ.get(MODE_ENV, "read"))

    def fingerprint(self, model: nn.Module, loss_fn: Callable, config, val_fn: Optional[Callable],
                    states: dict, first_batch) -> str:
        digest = hashlib.sha256()
        digest.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            _update_with_tensor(digest, tensor)
        settings = {k: v for k, v in asdict(config).items() if k != "progress"}
        digest.update(repr(sorted(settings.items())).encode())
        digest.update(fingerprint_object(loss_fn).encode())
        digest.update(repr(getattr(val_fn, "__qualname__", val_fn is not None)).encode())
        _update_with_tensor(digest, states["torch"])
        digest.update(pickle.dumps(states["python"], protocol=4))
        kind, keys, position, has_gauss, cached = states["numpy"]
        digest.update(np.asarray(keys).tobytes() + f"{kind}{position}{has_gauss}{cached}".encode())
        for part in first_batch:
            _update_with_tensor(digest, torch.as_tensor(part))
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def log(self, event: str, key: str) -> None:
        """Append ``event key`` to ``events.log`` in the directory (the browser tests count replays)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / EVENTS_LOG, "a") as events:
            events.write(f"{event} {key}\n")

    def load(self, key: str) -> Optional[dict]:
        """The stored run, or ``None`` if there is none or it cannot be read (a warning says so)."""
        if self.mode != "read":
            return None
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001 - a broken file means: train for real
            warnings.warn(f"Stored training run {path} could not be read ({error}); training instead.",
                          stacklevel=3)
            return None

    def store(self, key: str, model: nn.Module, history: dict) -> None:
        if self.mode != "write":
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        record = {"state_dict": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
                  "history": history, "random_states": random_states()}
        buffer = io.BytesIO()
        torch.save(record, buffer)
        # Written whole and renamed, so that a reader never sees half a file.
        partial = self._path(key).with_suffix(".partial")
        partial.write_bytes(buffer.getvalue())
        os.replace(partial, self._path(key))
