"""Finished training runs stored and replayed, so that ``make test`` trains each lesson once.

``make test`` runs every lesson twice: under nbval, which trains the networks and compares
the numbers, and then live in JupyterLab in a browser, which checks what a person sees (cells
without errors, widgets drawn, the slice viewer answering). Training again in the browser
would double the suite's time and prove nothing new, so the Makefile lets the nbval run store
each :func:`~unet_lessons.train.fit` result and the browser run replay it.

Off unless the environment variable ``UNET_LESSONS_FIT_CACHE`` names a directory;
``UNET_LESSONS_FIT_CACHE_MODE`` is ``write`` (train, then store) or ``read`` (replay a stored
run if there is one, else train). A lesson never sets either.

A run is replayed only if everything that decides its result is the same: the package's code
and library versions, the model (its modules, settings and starting weights), the settings,
the loss and the validation function (what they hold, not just their names), the random
states of Python, NumPy and torch, and the first batch. Replaying restores the trained
weights, the history and the random states the real run ended with, and draws the run's
batches from the stream without training on them, so that every later cell sees the state it
saw under nbval. Not replayed: warnings raised during training, side effects of the loss or
validation function, and the last step's gradients; the browser tests check none of them.
CPU runs only.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import sys
import tempfile
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


_PLAIN = (bool, int, float, complex, str, bytes, type(None))


def _update_with_code(digest, code) -> None:
    digest.update(code.co_code + repr(code.co_names).encode())
    for constant in code.co_consts:
        if hasattr(constant, "co_code"):  # a nested function's code: its repr holds an address
            _update_with_code(digest, constant)
        else:
            digest.update(repr(constant).encode())


def _update_with_object(digest, value: Any, depth: int = 0) -> None:
    """Fingerprint a model, loss or callback by what it holds, the same in every process.

    A module: its modules' class names, plain attributes (flags, rates, class counts), tensors
    with their ``requires_grad``. A function: its name, byte code, constants, defaults and the
    values it closes over. Pickle is no use here: a pickled tensor differs from process to
    process, and so do the reprs of most objects (they hold addresses).
    """
    update = lambda item: _update_with_object(digest, item, depth + 1)  # noqa: E731
    if depth > 8:  # an object that holds itself, or a deep graph: its kind is enough
        digest.update(type(value).__qualname__.encode())
    elif isinstance(value, nn.Module):
        for name, module in value.named_modules():
            digest.update(f"{name}:{type(module).__module__}.{type(module).__qualname__}".encode())
            for key, attr in sorted(vars(module).items()):
                if key in ("_parameters", "_buffers"):
                    for tensor_name, tensor in attr.items():
                        if tensor is not None:
                            digest.update(f"{tensor_name}{tensor.requires_grad}".encode())
                            _update_with_tensor(digest, tensor)
                elif "hooks" in key and isinstance(attr, dict):
                    # Keyed by handle ids from a counter of the whole process: hash the hooks only.
                    for hook in attr.values():
                        update(hook)
                elif key != "_modules":
                    digest.update(key.encode())
                    update(attr)
    elif isinstance(value, torch.Tensor):
        _update_with_tensor(digest, value)
    elif isinstance(value, np.ndarray):
        _update_with_tensor(digest, torch.from_numpy(np.ascontiguousarray(value)))
    elif isinstance(value, np.generic):
        digest.update(f"{value.dtype}{value.item()!r}".encode())
    elif isinstance(value, _PLAIN):
        digest.update(repr(value).encode())
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            update(item)
    elif isinstance(value, (set, frozenset)):
        digest.update(repr(sorted(repr(item) for item in value)).encode())
    elif isinstance(value, dict):
        for key, item in value.items():
            digest.update(repr(key).encode())
            update(item)
    elif isinstance(value, functools.partial):
        update(value.func)
        update(value.args)
        update(value.keywords)
    elif callable(value):
        digest.update(f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__qualname__)}".encode())
        code = getattr(value, "__code__", None)
        if code is not None:  # a function or lambda
            _update_with_code(digest, code)
            update(getattr(value, "__defaults__", None))
            update(getattr(value, "__kwdefaults__", None))
            for cell in getattr(value, "__closure__", None) or ():
                try:
                    update(cell.cell_contents)
                except ValueError:  # an empty cell
                    digest.update(b"<empty>")
        elif hasattr(value, "__self__") and not isinstance(value.__self__, type(sys)):
            update(value.__self__)  # a bound method: the object it belongs to
        elif not isinstance(value, type):
            for key, attr in sorted(getattr(value, "__dict__", {}).items()):
                digest.update(key.encode())
                update(attr)
    else:
        digest.update(type(value).__qualname__.encode())
        for key, attr in sorted(getattr(value, "__dict__", {}).items()):
            digest.update(key.encode())
            update(attr)


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    """The package's code and the library versions: a run stored by other code is never replayed."""
    digest = hashlib.sha256(f"{torch.__version__} {np.__version__} {sys.version}".encode())
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


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
        """The run's key: the code, the model (classes, settings, starting weights), the settings, the loss,
        the validation function, the random states of Python, NumPy and torch, and the first batch."""
        digest = hashlib.sha256(_source_digest().encode())
        digest.update(fingerprint_object(model).encode())
        settings = {k: v for k, v in asdict(config).items() if k != "progress"}
        digest.update(repr(sorted(settings.items())).encode())
        digest.update(fingerprint_object(loss_fn).encode())
        digest.update(fingerprint_object(val_fn).encode())
        digest.update(fingerprint_object(states).encode())  # tuples of ints, NumPy's key array, torch's tensor
        digest.update(fingerprint_object(list(first_batch)).encode())
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def log(self, event: str, key: str) -> None:
        """Append ``event key`` to ``events.log`` in the directory (the browser tests count replays)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / EVENTS_LOG, "a") as events:
            events.write(f"{event} {key}\n")

    def load(self, key: str, model: nn.Module) -> Optional[dict]:
        """The stored run for ``model``, or ``None`` if there is none or it cannot be used (a warning says why)."""
        if self.mode != "read":
            return None
        path = self._path(key)
        if not path.exists():
            return None
        try:
            record = torch.load(path, map_location="cpu", weights_only=False)
            stored, expected = record["state_dict"], model.state_dict()
            if list(stored) != list(expected) or any(stored[k].shape != expected[k].shape for k in expected):
                raise ValueError("its weights do not fit the model")
            if not {"history", "random_states"} <= set(record):
                raise ValueError("it lacks the history or the random states")
            return record
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
        # Written to a file of its own and renamed, so that a reader never sees half a file.
        handle, partial = tempfile.mkstemp(dir=self.directory, suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(record, file)
            os.replace(partial, self._path(key))
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
