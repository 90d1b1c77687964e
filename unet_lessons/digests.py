"""Digests: a short text that changes when what a value holds, or what a function computes, changes.

Saved runs (:mod:`unet_lessons.runs`) compare a training cell with the run saved under its name
by these: the initial weights, the first batch, the loss and the validation function, and the
package's own source. Two lambdas are two functions here; the same cell run again, with new but
equal objects, gives the same digests, in any Python process (the hash seed does not enter).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import importlib.metadata
import platform
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
import torch.nn as nn

__all__ = ["digest", "package_digest", "weights_digest"]

_PLAIN = (bool, int, float, complex, str, bytes, type(None), type(Ellipsis))
_DEEPEST = 60  # object graphs deeper than this are cut (a linked structure, not a setting)


def digest(value: Any) -> str:
    """A sha256 digest of what ``value`` holds or computes, equal from one run of a cell to the next.

    Tensors and arrays count by their bytes; modules by their classes, settings, buffers and
    parameters; functions by their code, defaults, the values they close over and the globals
    they read. Functions and classes of this package count by name (its source digest covers
    them), those of other libraries by name and the library's version.
    """
    return _digest(value, set(), 0)


def _digest(value: Any, active: set, depth: int) -> str:
    hasher = hashlib.sha256()
    _feed(hasher, value, active, depth)
    return hasher.hexdigest()


def _put(hasher, *parts: Any) -> None:
    for part in parts:
        hasher.update(str(part).encode() + b"\x1f")


def _feed(hasher, value: Any, active: set, depth: int) -> None:
    """Feed ``value`` into ``hasher``; ``active`` holds the objects being fed, so that a cycle ends."""
    if isinstance(value, _PLAIN):
        return _put(hasher, type(value).__name__, repr(value))
    if isinstance(value, torch.Tensor):
        return _feed_tensor(hasher, value)
    if isinstance(value, np.ndarray) and value.dtype != object:
        _put(hasher, "array", value.dtype.str, value.shape)
        return hasher.update(memoryview(np.ascontiguousarray(value).reshape(-1).view(np.uint8)))
    if id(value) in active or depth > _DEEPEST:
        return _put(hasher, "seen" if id(value) in active else "deep", type(value).__qualname__)
    active.add(id(value))
    try:
        _feed_object(hasher, value, active, depth + 1)
    finally:
        active.discard(id(value))


def _feed_object(hasher, value: Any, active: set, depth: int) -> None:
    feed = functools.partial(_feed, hasher, active=active, depth=depth)
    if isinstance(value, np.ndarray):  # of Python objects
        _put(hasher, "object array", value.shape), feed(value.tolist())
    elif isinstance(value, (list, tuple)):
        _put(hasher, type(value).__name__, len(value))
        for item in value:
            feed(item)
    elif isinstance(value, (set, frozenset, Mapping)):  # equal in any order (a set's order changes with the hash seed)
        items = value.items() if isinstance(value, Mapping) else ((item, None) for item in value)
        _put(hasher, type(value).__name__, *sorted(_digest(key, active, depth) + _digest(item, active, depth)
                                                   for key, item in items))
    elif isinstance(value, types.ModuleType):
        _put(hasher, "module", value.__name__, _library(value.__name__))
    elif isinstance(value, nn.Module):
        _feed_module(hasher, value, feed)
    elif isinstance(value, types.FunctionType):
        _feed_function(hasher, value, feed)
    elif isinstance(value, (types.MethodType, staticmethod, classmethod)):
        _put(hasher, type(value).__name__), feed(value.__func__), feed(getattr(value, "__self__", None))
    elif isinstance(value, functools.partial):
        _put(hasher, "partial"), feed(value.func), feed(value.args), feed(value.keywords)
    elif isinstance(value, property):
        _put(hasher, "property"), feed(value.fget), feed(value.fset), feed(value.fdel)
    elif isinstance(value, type):
        _feed_class(hasher, value, feed)
    elif isinstance(value, torch.Generator):
        _put(hasher, "torch.Generator"), feed(value.get_state())
    elif isinstance(value, np.random.Generator):
        _put(hasher, "numpy.Generator"), feed(value.bit_generator.state)
    elif isinstance(value, types.CodeType):
        _feed_code(hasher, value, feed)
    else:  # any other object: its class, then its attributes, or else its text without memory addresses
        _feed_class(hasher, type(value), feed)
        state = getattr(value, "__dict__", None)
        if isinstance(state, dict):
            feed(state)
        else:
            _put(hasher, re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value)))


def _feed_tensor(hasher, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().as_subclass(torch.Tensor)  # MONAI's MetaTensor: its values only
    _put(hasher, "tensor", tensor.dtype, tuple(tensor.shape))
    if tensor.device.type == "meta":
        return  # no values to read
    tensor = (tensor.to_dense() if tensor.layout != torch.strided else tensor).cpu().contiguous()
    hasher.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))


def _feed_module(hasher, module: nn.Module, feed: Callable) -> None:
    for name, submodule in module.named_modules():
        _put(hasher, "module", name)
        feed(type(submodule))
        feed({k: v for k, v in vars(submodule).items() if not k.startswith("_") and k != "training"})
        feed(dict(itertools.chain(submodule.named_parameters(recurse=False), submodule.named_buffers(recurse=False))))


def _feed_function(hasher, function: types.FunctionType, feed: Callable) -> None:
    library = _library(function.__module__)
    if library:
        return _put(hasher, "function", function.__module__, function.__qualname__, library)
    feed(function.__code__), feed(function.__defaults__), feed(function.__kwdefaults__)
    for name, cell in zip(function.__code__.co_freevars, function.__closure__ or ()):
        try:
            _put(hasher, "closes over", name), feed(cell.cell_contents)
        except ValueError:  # a cell not filled yet
            _put(hasher, "empty")
    for name in sorted(_names_read(function.__code__)):  # also attribute names: reading more is harmless
        if name in function.__globals__:
            _put(hasher, "global", name), feed(function.__globals__[name])


def _feed_code(hasher, code: types.CodeType, feed: Callable) -> None:
    # The bytecode, not the name or line numbers: two lambdas differ by what they compute.
    _put(hasher, "code", code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_names)
    hasher.update(code.co_code)
    feed(code.co_consts)


def _names_read(code: types.CodeType) -> set[str]:
    """The names ``code`` and the functions nested in it look up (globals among them)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_read(const)
    return names


def _feed_class(hasher, cls: type, feed: Callable) -> None:
    library = _library(cls.__module__)
    if library:
        return _put(hasher, "class", cls.__module__, cls.__qualname__, library)
    _put(hasher, "class", cls.__qualname__)  # defined in a notebook or a script: its methods count
    feed(cls.__bases__)
    feed({k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__", "__module__", "__doc__")})


@functools.lru_cache(maxsize=None)
def _library(module: Optional[str]) -> Optional[str]:
    """This package, or the library and its version, that ``module`` belongs to; ``None`` for a user's own code."""
    top = (module or "").partition(".")[0]
    if top == __name__.partition(".")[0]:
        return top  # the package source digest covers it
    if top != "__main__" and (top in sys.stdlib_module_names or top == "builtins"):
        return f"python {platform.python_version()}"
    for distribution in _distributions().get(top, ()):
        return f"{distribution} {importlib.metadata.version(distribution)}"
    version = getattr(sys.modules.get(top), "__version__", None)
    return f"{top} {version}" if version else None


@functools.lru_cache(maxsize=1)
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def package_digest() -> str:
    """A digest of every ``.py`` file of this package: in a working checkout its version number never changes."""
    root = Path(__file__).resolve().parent
    hasher = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        _put(hasher, path.relative_to(root).as_posix())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


def weights_digest(model: nn.Module) -> str:
    """A digest of a model's weights and buffers, by name, dtype, shape and bytes."""
    hasher = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        _put(hasher, name), _feed_tensor(hasher, tensor)
    return hasher.hexdigest()
