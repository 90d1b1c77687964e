"""The model contract: what every registered network declares, returns and refuses.

The tools of the package (the diagrams, feature maps, receptive fields, memory estimate,
tiled inference and similarity measures) read a model only through this contract, so any
network that follows it works with all of them, and no tool names a model class.

**Attributes** (set by the constructor of every :class:`SegmentationModel`):

* ``spatial_dims`` (2 or 3), ``in_channels``, ``out_channels``;
* ``padding``: ``"same"`` (the output has the input's size) or ``"valid"`` (every output
  axis is smaller, by ``n - output_size(n)``, as in the U-Net paper);
* ``depth``: the number of 2x downsamplings from the input to the coarsest map;
* ``arguments``: the constructor's arguments as a plain dict, by name, with the defaults
  filled in and old argument names replaced by new ones (``UNet(1, 2, base_features=8)``
  records ``{"in_channels": 1, "out_channels": 2, "width": 8, ...}``);
* ``feature_scheme``: which keys ``forward_features`` returns (:data:`FEATURE_SCHEMES`);
* ``skip_join``: how a decoder level joins its skip, ``"concat"`` (U-Net) or ``"add"`` (Myronenko 2018).

**Methods**: ``output_size(n)`` (the output length of an axis of input length ``n``, or
``None`` if the model cannot take it), ``valid_sizes(lo, hi)``, ``check_input(x)``,
``forward_features(x)``, ``stage_modules()``, ``deepest_path()`` (the layers that set the
receptive field) and ``skip_pairs(x)`` (the two sides of every skip join).

**Constructor**: ``build_model(name, in_channels=..., out_channels=..., spatial_dims=...,
width=...)`` works for every registered model; ``width`` is the channels of the first level.

**Output** of ``forward``: a tensor of logits, a list of deep-supervision heads, or a dict
with ``logits`` (see :func:`unpack_output`, the only reader of outputs).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn

_AXES = {1: "L", 2: "H, W", 3: "D, H, W"}


def check_input(x: torch.Tensor, *, model_name: str, spatial_dims: int, in_channels: int,
                dtype: Optional[torch.dtype] = None) -> None:
    """Raise a ``ValueError`` (``TypeError`` for a wrong type) naming what is wrong and the fix when ``x`` does not fit a model.

    Args:
        x: the input tensor.
        model_name: shown in the message, e.g. ``"UNet"``.
        spatial_dims: 2 or 3.
        in_channels: channels the model was built for.
        dtype: the dtype of the model's parameters; ``x`` must have it (PyTorch's own error,
            "Input type (double) and bias type (float)", names neither the cause nor the fix).
            Under ``torch.autocast`` any floating dtype passes, since autocast casts.
    """
    expected = f"(B, {in_channels}, {_AXES[spatial_dims]})"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model_name} expects a torch.Tensor of shape {expected}; got {type(x).__name__}.")
    if x.dim() != spatial_dims + 2:
        hints = []
        if x.dim() == spatial_dims + 1:
            hints.append("if this is one sample, add the batch axis with x.unsqueeze(0)")
        if x.dim() == 4 and spatial_dims == 3:
            hints.append("if this is a 2D batch, build the model with spatial_dims=2")
        if x.dim() == 5 and spatial_dims == 2:
            hints.append("for a 3D volume, build the model with spatial_dims=3 or feed it slice by slice")
        hint = (" Hint: " + "; ".join(hints) + ".") if hints else ""
        raise ValueError(
            f"{model_name}(spatial_dims={spatial_dims}) expects a {spatial_dims + 2}-D input of shape {expected}; "
            f"got shape {tuple(x.shape)} ({x.dim()}-D).{hint}"
        )
    if x.shape[1] != in_channels:
        if x.shape[-1] == in_channels:  # (B, *S, C): the layout of NumPy images and TensorFlow
            raise ValueError(
                f"{model_name} expects channels first, shape {expected}; got shape {tuple(x.shape)}, which looks "
                f"channels-last (its last axis has length {in_channels}, the model's in_channels). Move the channels to axis 1 with "
                f"x.movedim(-1, 1)."
            )
        raise ValueError(
            f"{model_name} was built with in_channels={in_channels}, so it expects shape {expected}; "
            f"got {x.shape[1]} channels in shape {tuple(x.shape)}. Build the model with "
            f"in_channels={x.shape[1]}, or check the channel axis (it must be axis 1, channels-first)."
        )
    if dtype is not None and x.dtype != dtype:
        if not (x.is_floating_point() or x.is_complex()):
            raise TypeError(
                f"{model_name} expects a floating-point input of dtype {dtype} (the dtype of its parameters); got "
                f"{x.dtype}. Convert it with x.to({dtype}) (and scale it, e.g. x / 255 for 8-bit images)."
            )
        if not _autocast_on(x.device.type):
            raise TypeError(
                f"{model_name} has {dtype} parameters, so it expects a {dtype} input; got {x.dtype}. Convert the "
                f"input with x.to({dtype}), or the model with model.to({x.dtype})."
            )


def check_finite(x: torch.Tensor, *, model_name: str) -> None:
    """Raise a ``ValueError`` if ``x`` holds NaN or infinite values (skipped on the ``"meta"`` device,
    where tensors have shapes but no values: the memory estimate and the diagrams run there)."""
    if x.device.type != "meta" and x.numel() and not bool(torch.isfinite(x).all()):
        nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
        raise ValueError(
            f"{model_name} got an input with {nan} NaN and {inf} infinite values (shape {tuple(x.shape)}); they "
            "would spread through every layer. Check the data and its normalisation (e.g. a division by a zero "
            "standard deviation), or replace them with torch.nan_to_num(x)."
        )


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type autocast does not know, e.g. "meta"
        return False


def check_spatial_size(
    shape: Sequence[int],
    *,
    model_name: str,
    is_valid: Callable[[int], bool],
    nearest: Callable[[int], tuple[Optional[int], Optional[int]]],
    rule: str,
) -> None:
    """Raise a ``ValueError`` naming the nearest workable sizes for each axis that does not fit.

    Args:
        shape: the spatial sizes of the input.
        model_name: shown in the message.
        is_valid: says whether one axis length works.
        nearest: the nearest working lengths below and above a length (either may be ``None``).
        rule: a short sentence stating the rule the sizes must follow.
    """
    problems = []
    for axis, size in enumerate(shape):
        if not is_valid(size):
            below, above = nearest(size)
            options = " or ".join(str(s) for s in (below, above) if s is not None)
            problems.append(f"axis {axis} has size {size} (nearest sizes that work: {options})")
    if problems:
        raise ValueError(
            f"{model_name} cannot take spatial size {tuple(shape)}: " + "; ".join(problems) + f". {rule} "
            "Crop or pad the input to a listed size."
        )


def nearest_matching(size: int, is_valid: Callable[[int], bool], search: int = 4096) -> tuple[Optional[int], Optional[int]]:
    """The nearest lengths at or below and above ``size`` for which ``is_valid`` holds."""
    below = next((s for s in range(size, 0, -1) if is_valid(s)), None)
    above = next((s for s in range(size + 1, size + search) if is_valid(s)), None)
    return below, above


# ----- what forward returns ----------------------------------------------------------------
# Every model's forward returns one of three kinds, and only these:
#   * a tensor: the logits (B, out_channels, *S);
#   * a list or tuple of tensors: deep-supervision heads, shallowest first, the last one the
#     final prediction (UNet++ in training mode);
#   * a dict with "logits" and optionally "heads" (as above), "aux_loss" (a scalar that the
#     model has already weighted and that training adds to the segmentation loss) and any
#     other tensors to look at (e.g. "reconstruction").
# unpack_output reads the three kinds; nothing else in the package inspects an output.

@dataclass
class ModelOutput:
    """A model's output in the one form the package's tools read.

    Args:
        logits: the final prediction's logits, (B, K, *S).
        heads: what the segmentation loss is applied to: the list of deep-supervision heads
            when the model returned one, else ``logits`` itself.
        aux_loss: an auxiliary loss the model computed (already weighted), or ``None``.
        extras: every other tensor of a dict output (e.g. ``reconstruction``).
    """

    logits: torch.Tensor
    heads: Union[torch.Tensor, list[torch.Tensor]]
    aux_loss: Optional[torch.Tensor] = None
    extras: dict = field(default_factory=dict)

    @property
    def all_heads(self) -> list[torch.Tensor]:
        """Every supervised output as a list (one element without deep supervision)."""
        return list(self.heads) if isinstance(self.heads, (list, tuple)) else [self.heads]


def unpack_output(output: Union[torch.Tensor, Sequence[torch.Tensor], Mapping[str, Any]]) -> ModelOutput:
    """Read a model's output: a tensor, a list of deep-supervision heads, or a dict (see above).

    Raises:
        TypeError: for any other kind, naming the three that are allowed.
    """
    if isinstance(output, torch.Tensor):
        return ModelOutput(logits=output, heads=output)
    if isinstance(output, (list, tuple)) and output and all(isinstance(o, torch.Tensor) for o in output):
        return ModelOutput(logits=output[-1], heads=list(output))
    if isinstance(output, Mapping) and isinstance(output.get("logits"), torch.Tensor):
        heads = output.get("heads")
        extras = {k: v for k, v in output.items() if k not in ("logits", "heads", "aux_loss")}
        return ModelOutput(logits=output["logits"], heads=list(heads) if heads else output["logits"],
                           aux_loss=output.get("aux_loss"), extras=extras)
    kind = type(output).__name__
    if isinstance(output, Mapping):
        kind = f"a dict with keys {sorted(output)} and no 'logits' tensor"
    elif isinstance(output, (list, tuple)):
        kind = f"a {kind} of {[type(o).__name__ for o in output]}"
    raise TypeError(f"A model must return a tensor of logits, a list of deep-supervision heads, or a dict with "
                    f"'logits' (and optionally 'heads', 'aux_loss'); got {kind}. Wrap the model in an adapter "
                    "(see unet_lessons.models) that returns one of these.")


def output_loss(output: Any, target: torch.Tensor,
                loss_fn: Callable[[Any, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss of one output and the logits to predict from: the one place that
    knows the output kinds.

    The segmentation loss sees the heads (a list under deep supervision, which the loss
    averages, e.g. :class:`~unet_lessons.losses.DeepSupervisionLoss`), and an auxiliary
    loss is added as the model weighted it.

    Returns:
        ``(loss, logits)``: a scalar, and the final prediction's logits (B, K, *S).
    """
    unpacked = unpack_output(output)
    loss = loss_fn(unpacked.heads, target)
    if unpacked.aux_loss is not None:
        loss = loss + unpacked.aux_loss
    return loss, unpacked.logits


# ----- what forward_features returns -------------------------------------------------------
#: Scheme name -> the keys of ``forward_features``, in computation order, and the tool that reads them.
FEATURE_SCHEMES: dict[str, str] = {
    "encoder_decoder": "enc0 ... enc{depth-1} (the skip sources), bottleneck, dec{depth-1} ... dec0, logits; "
                       "drawn by viz.draw_unet",
    "nested": "x_{i}_{j} for every node with i + j <= depth, in the order of model.node_grid(), then head_{j} "
              "for each head (the logits read from X^{0,j}); drawn by viz.draw_node_grid",
    "fcn": "x1 ... x{depth} (encoder maps at stride 2**i), then the named score maps, logits last; "
           "drawn by viz.draw_fcn",
}


def check_feature_keys(model: nn.Module, keys: Sequence[str]) -> None:
    """Raise a ``ValueError`` if ``keys`` (of ``model.forward_features``) break ``model.feature_scheme``.

    Args:
        model: a :class:`SegmentationModel`.
        keys: the keys in the order ``forward_features`` returned them.
    """
    keys, scheme, depth = list(keys), model.feature_scheme, model.depth
    if scheme == "encoder_decoder":
        expected = ([f"enc{i}" for i in range(depth)] + ["bottleneck"]
                    + [f"dec{i}" for i in reversed(range(depth))] + ["logits"])
        ok = keys == expected
    elif scheme == "nested":
        nodes = list(model.node_grid())
        heads = keys[len(nodes):]
        expected = nodes + ["head_{j}, ..."]
        ok = keys[:len(nodes)] == nodes and bool(heads) and all(re.fullmatch(r"head_\d+", k) for k in heads)
    elif scheme == "fcn":
        expected = [f"x{i}" for i in range(1, depth + 1)] + ["...", "logits"]
        ok = keys[:depth] == expected[:depth] and keys[-1] == "logits"
    else:
        raise ValueError(f"{type(model).__name__}.feature_scheme is {scheme!r}; declare one of {sorted(FEATURE_SCHEMES)}.")
    if not ok:
        raise ValueError(f"{type(model).__name__}.forward_features returned keys {keys}, which break its declared "
                         f"feature_scheme {scheme!r} ({FEATURE_SCHEMES[scheme]}); expected {expected}.")


# ----- the base class ----------------------------------------------------------------------
_SPATIAL_LAYERS = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.Upsample)


def _recording_arguments(cls: type, init: Callable) -> Callable:
    """Wrap ``cls.__init__`` so that it accepts the old argument names and records ``model.arguments``."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        for old, new in cls.argument_aliases.items():
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{cls.__name__} got both {old}= and {new}=; {old} is the old name of {new}, "
                                    "give one of them.")
                kwargs[new] = kwargs.pop(old)
        if "arguments" not in self.__dict__:  # the outermost __init__ records (a subclass calls its parent's)
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError:
                return init(self, *args, **kwargs)  # Python's own message names the wrong argument
            bound.apply_defaults()
            arguments = {}
            for name, value in list(bound.arguments.items())[1:]:
                is_var_keyword = signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD
                arguments.update(value if is_var_keyword else {name: value})
            self.__dict__["arguments"] = arguments
        init(self, *args, **kwargs)

    return __init__


class SegmentationModel(nn.Module):
    """The base class of every registered network: the contract of this module, written once.

    A subclass sets ``spatial_dims``, ``in_channels``, ``out_channels``, ``padding`` and
    ``depth`` in its constructor, and defines ``output_size``, ``forward_features``,
    ``forward`` and ``stage_modules`` (or ``deepest_path``). It inherits ``valid_sizes``,
    ``check_input`` (shape, channels, layout, dtype, NaN and size, with messages that say
    what to do), ``stage_paths``, ``deepest_path`` and ``arguments``.

    Class attributes a subclass may set:
        feature_scheme: a key of :data:`FEATURE_SCHEMES`.
        spatial_dims_supported: the ``spatial_dims`` the model can be built with.
        argument_aliases: old argument name -> new name; the constructor accepts both.
        skip_join: ``"concat"`` or ``"add"``: how the decoder joins a skip (the diagram draws it).
        example_arguments: small configurations that together reach every code path the
            tools see (e.g. valid padding, deep supervision); the registry-wide tests build
            each with a tiny ``width``, so a new model is tested without new test code.
    """

    feature_scheme: ClassVar[str] = "encoder_decoder"
    skip_join: ClassVar[str] = "concat"
    spatial_dims_supported: ClassVar[tuple[int, ...]] = (2, 3)
    argument_aliases: ClassVar[dict[str, str]] = {}
    example_arguments: ClassVar[tuple[dict, ...]] = ({},)

    spatial_dims: int
    in_channels: int
    out_channels: int
    padding: str = "same"
    depth: int
    arguments: dict

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording_arguments(cls, cls.__dict__["__init__"])

    # ----- sizes -----------------------------------------------------------------------------
    def output_size(self, size: int) -> Optional[int]:
        """Output length of an axis of input length ``size``, or ``None`` if the model cannot take it."""
        raise NotImplementedError(f"{type(self).__name__} must define output_size(size) (the model contract).")

    def valid_sizes(self, start: int = 1, stop: int = 1024) -> list[int]:
        """Every input length in ``[start, stop)`` that the network can take."""
        return [s for s in range(start, stop) if self.output_size(s) is not None]

    def size_rule(self) -> str:
        """One sentence stating which input sizes work, for the error message of :meth:`check_input`."""
        return "model.valid_sizes() lists the sizes that work."

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` or ``TypeError`` naming what is wrong with ``x`` and what to do.

        Checks the type, the number of axes, the channels (and a channels-last layout), the
        dtype against the parameters' (so ``model.double()`` takes float64), the spatial size
        against :meth:`output_size`, and NaN or infinite values (except on ``"meta"``).
        """
        name = type(self).__name__
        parameter = next(self.parameters(), None)
        check_input(x, model_name=name, spatial_dims=self.spatial_dims, in_channels=self.in_channels,
                    dtype=parameter.dtype if parameter is not None else None)
        is_valid = lambda s: self.output_size(s) is not None  # noqa: E731
        check_spatial_size(x.shape[2:], model_name=name, is_valid=is_valid,
                           nearest=lambda s: nearest_matching(s, is_valid), rule=self.size_rule())
        check_finite(x, model_name=name)

    # ----- the layers, stage by stage -----------------------------------------------------
    def stage_modules(self) -> "OrderedDict[str, list[nn.Module]]":
        """The modules that compute each ``forward_features`` map from the one before, in order.

        Skip joins (concatenations, sums) are not modules and are not listed. The diagrams
        read the layer types here (e.g. the kind of upsampling) instead of the model's
        attribute names.
        """
        raise NotImplementedError(f"{type(self).__name__} does not list its stage_modules().")

    def stage_paths(self) -> "OrderedDict[str, list[nn.Module]]":
        """The spatial layers (convolutions, poolings, upsamplings) of each stage, in order."""
        return OrderedDict((name, [m for module in modules for m in module.modules() if isinstance(m, _SPATIAL_LAYERS)])
                           for name, modules in self.stage_modules().items())

    def deepest_path(self) -> list[nn.Module]:
        """The spatial layers along the longest input-to-output path, in order.

        By default every stage of :meth:`stage_paths` in turn: right for a U-shaped net,
        whose skips are shorter paths that see a subset of the input, so this list sets the
        receptive field (see ``unet_lessons.viz.receptive_field``).
        """
        return [layer for layers in self.stage_paths().values() for layer in layers]

    @torch.no_grad()
    def skip_pairs(self, x: torch.Tensor) -> "OrderedDict[str, tuple[torch.Tensor, torch.Tensor]]":
        """The two sides of every skip join for one input: ``{"level i": (skip side, upsampled side)}``.

        Level ``i`` is the join at stride ``2**i``, top level first (used by
        ``unet_lessons.similarity.concatenated_pairs``).
        """
        raise NotImplementedError(f"{type(self).__name__} does not declare its skip_pairs(x).")


def smallest_side(model: SegmentationModel, minimum: Optional[int] = None) -> int:
    """The smallest axis length of at least ``minimum`` (default ``2**depth``) that ``model`` takes: a small, fast input."""
    start = 2**model.depth if minimum is None else minimum
    sizes = model.valid_sizes(start, start + 4096)
    if not sizes:
        raise ValueError(f"{type(model).__name__} takes no size from {start} to {start + 4096}.")
    return sizes[0]
