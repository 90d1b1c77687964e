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
``forward_features(x)``, ``stage_modules()``, ``deepest_path()`` (the layers of the longest
input-to-output path), ``receptive_paths()`` (every path that sets the receptive field),
``skip_joins()``, ``skip_modules()`` and ``skip_pairs(x)`` (where each skip meets the decoder,
the layers on its way, and the two sides of every join), ``skip_knocked_out(level)`` (a
skip replaced by zeros or its mean for a while), ``knock_out_skips()`` (for good: a U-shape
trained without skips) and ``rebuild()``.

**Skips** (encoder-decoder models). Every skip meets the decoder in a
:class:`~unet_lessons.blocks.SkipJoin` listed in the ``dec{i}`` stage of ``stage_modules()``,
between the modules before the join (the upsampling) and after it. A model that puts layers
on a skip (MultiResUNet's Res paths) lists them as the stage ``skip{i}`` and returns the map
after them as ``forward_features()["skip{i}"]``, just before ``dec{i}``; ``enc{i}`` is the map
before them. The base class reads everything else from that: no model repeats it.

**Domains.** A model trained on several datasets at once (3D U²-Net) shares most weights and
keeps an adapter and a head per domain, each with its own number of classes. It declares
``domains`` (name -> out_channels) and, where a domain has its own input channels,
``domain_in_channels`` (name -> in_channels), takes ``forward(x, domain=name)`` and
``forward_features(x, domain=name)``, and lists ``stage_modules(domain=name)``.
``model.for_domain(name)`` is then an ordinary single-domain model sharing those weights, so
every tool (which calls ``model(x)``) works on it unchanged.

**Module attributes the diagrams read**: ``residual = True`` on a module that adds its input
to its output (drawn as ⊕ on its stage's arrow); ``order = "norm_act_conv"`` on a
pre-activation block (its legend reads "norm, act, then conv"). The diagrams refuse, with a
message, a stage layout they cannot draw.

**Constructor**: ``build_model(name, in_channels=..., out_channels=..., spatial_dims=...,
width=...)`` works for every registered model; ``width`` is the channels of the first level.

**Output** of ``forward``: a tensor of logits, a list of deep-supervision heads, or a dict
with ``logits`` (see :func:`unpack_output`, the only reader of outputs).
"""

from __future__ import annotations

import functools
import contextlib
import inspect
import numbers
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


def loss_terms(output: ModelOutput, target: torch.Tensor,
               loss_fn: Callable[[Any, torch.Tensor], torch.Tensor], **loss_inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss of one unpacked output, and its segmentation term alone.

    The segmentation loss sees the heads (a list under deep supervision, which the loss
    averages, e.g. :class:`~unet_lessons.losses.DeepSupervisionLoss`), and an auxiliary
    loss is added as the model weighted it. ``fit`` reads both terms, to say which one
    went non-finite. ``loss_inputs`` are the batch's further fields the loss takes (a weight map).

    Returns:
        ``(loss, segmentation_loss)``: two scalars, equal when the model has no auxiliary loss.
    """
    segmentation = loss_fn(output.heads, target, **loss_inputs)
    loss = segmentation if output.aux_loss is None else segmentation + output.aux_loss
    return loss, segmentation


def output_loss(output: Any, target: torch.Tensor,
                loss_fn: Callable[[Any, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss of one output and the logits to predict from (:func:`loss_terms` on
    :func:`unpack_output`, the one reader of the output kinds).

    Returns:
        ``(loss, logits)``: a scalar, and the final prediction's logits (B, K, *S).
    """
    unpacked = unpack_output(output)
    return loss_terms(unpacked, target, loss_fn)[0], unpacked.logits


# ----- what forward_features returns -------------------------------------------------------
#: Scheme name -> the keys of ``forward_features``, in computation order, and the tool that reads them.
FEATURE_SCHEMES: dict[str, str] = {
    "encoder_decoder": "enc0 ... enc{depth-1} (the skip sources), bottleneck, dec{depth-1} ... dec0, logits, "
                       "with skip{i} just before dec{i} where a skip has layers of its own; drawn by viz.draw_unet",
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
        with_path = [f"skip{i}" in keys for i in range(depth)]  # layers on the skip: its map just before dec{i}
        expected = ([f"enc{i}" for i in range(depth)] + ["bottleneck"]
                    + [key for i in reversed(range(depth)) for key in [f"skip{i}"] * with_path[i] + [f"dec{i}"]]
                    + ["logits"])
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
_SPATIAL_LAYERS = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.Upsample,
                   nn.modules.padding._ConstantPadNd)


def _is_count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def check_core_arguments(model_name: str, arguments: Mapping[str, Any]) -> None:
    """Raise a ``ValueError`` naming the argument and the fix when a core size is not a positive whole number.

    Run for every model before its constructor, so that ``UNet(width=0)`` says what is wrong
    instead of PyTorch's "Trying to create tensor with negative dimension" from deep inside.
    """
    for name in ("width", "in_channels", "out_channels", "depth"):
        value = arguments.get(name)
        if value is None:
            continue
        if not _is_count(value):
            what = "channels of the first level" if name == "width" else "poolings" if name == "depth" else "channels"
            raise ValueError(f"{model_name} needs {name} (the {what}) to be a whole number of at least 1; got "
                             f"{name}={value!r}. Pass e.g. {name}={4 if name != 'depth' else 2}.")
    features = arguments.get("features")
    if features is not None and not all(_is_count(f) for f in features):
        raise ValueError(f"{model_name} needs every entry of features (the channels per level) to be a whole number "
                         f"of at least 1; got features={tuple(features)!r}.")


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
            check_core_arguments(cls.__name__, arguments)
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
    domains: ClassVar[Mapping[str, int]] = {}  # name -> out_channels, for a multi-domain model (see above)
    domain_in_channels: ClassVar[Mapping[str, int]] = {}  # name -> in_channels, where a domain has its own

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

    def check_input(self, x: torch.Tensor, domain: Optional[str] = None) -> None:
        """Raise a ``ValueError`` or ``TypeError`` naming what is wrong with ``x`` and what to do.

        Checks the type, the number of axes, the channels (and a channels-last layout), the
        dtype against the parameters' (so ``model.double()`` takes float64), the spatial size
        against :meth:`output_size`, and NaN or infinite values (except on ``"meta"``). The
        channels are ``domain``'s own where ``domain_in_channels`` gives them.
        """
        name = type(self).__name__
        parameter = next(self.parameters(), None)
        in_channels = self.domain_in_channels.get(domain, self.in_channels) if domain is not None else self.in_channels
        check_input(x, model_name=name, spatial_dims=self.spatial_dims, in_channels=in_channels,
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

        By default every stage of :meth:`stage_paths` in turn, except the layers on the skips
        (stages ``skip{i}``): right for a U-shaped net, whose skips branch off this path.
        """
        return [layer for name, layers in self.stage_paths().items() if not is_skip_stage(name)
                for layer in layers]

    def receptive_paths(self) -> "OrderedDict[str, list[nn.Module]]":
        """Every input-to-output path of spatial layers that can set the receptive field, by name.

        ``"deepest"`` (:meth:`deepest_path`), and for an encoder-decoder model with layers on a
        skip (MultiResUNet's Res paths) one more path for that skip, ``"skip i"``: the encoder
        down to level ``i``, the skip's own layers (:meth:`skip_modules`), then the decoder from
        the join at level ``i`` up to the logits. A skip that only copies adds no path: its
        layers are all on the deepest path. The field is the union over the paths
        (``unet_lessons.viz.model_receptive_field``).
        """
        paths: OrderedDict[str, list[nn.Module]] = OrderedDict(deepest=self.deepest_path())
        if self.feature_scheme != "encoder_decoder":
            return paths
        stages = self.stage_modules()
        joins = self.skip_joins()
        skip_layers = self.skip_modules()
        for level in range(self.depth):
            if not _spatial_layers(skip_layers[f"level {level}"]):
                continue  # a plain copy: every layer of this path is on the deepest path too, aligned alike
            if self.padding == "valid":
                raise NotImplementedError(
                    f"{type(self).__name__} has layers on a cropped skip; the layer walk of the receptive field "
                    "does not model the crop. Give receptive_paths() its own definition.")
            decoder = stages[f"dec{level}"]
            join = joins[f"level {level}"]
            after_join = decoder[[m is join for m in decoder].index(True) + 1:]
            modules = ([m for i in range(level + 1) for m in stages[f"enc{i}"]] + skip_layers[f"level {level}"]
                       + after_join + [m for i in reversed(range(level)) for m in stages[f"dec{i}"]]
                       + stages["logits"])
            paths[f"skip {level}"] = _spatial_layers(modules)
        return paths

    # ----- the skips --------------------------------------------------------------------------
    def skip_joins(self) -> "OrderedDict[str, nn.Module]":
        """Where each skip meets the decoder: ``{"level i": SkipJoin}``, top level first.

        Read from the ``dec{i}`` stages of :meth:`stage_modules` (see the module docstring);
        a model that joins its skips otherwise (UNet++'s dense grid, FCN's score sums) has none.

        Raises:
            ValueError: naming the stage when a ``dec{i}`` stage lists no ``SkipJoin`` or several.
        """
        from ..blocks import SkipJoin  # blocks imports nothing from models; this avoids a cycle at import time

        if self.feature_scheme != "encoder_decoder":
            return OrderedDict()
        stages, joins = self.stage_modules(), OrderedDict()
        for level in range(self.depth):
            found = [m for m in stages[f"dec{level}"] if isinstance(m, SkipJoin)]
            if len(found) != 1:
                raise ValueError(f"{type(self).__name__}.stage_modules()['dec{level}'] lists {len(found)} SkipJoin "
                                 "modules; list the one where this level's skip meets the decoder, between the "
                                 "modules before it (the upsampling) and after it (see unet_lessons.models.base).")
            joins[f"level {level}"] = found[0]
        return joins

    def skip_modules(self) -> "OrderedDict[str, list[nn.Module]]":
        """The modules on each skip between the encoder map and the join, ``{"level i": [...]}`` (empty: a plain copy)."""
        if self.feature_scheme != "encoder_decoder":
            return OrderedDict()
        stages = self.stage_modules()
        return OrderedDict((f"level {level}", list(stages.get(f"skip{level}", []))) for level in range(self.depth))

    @torch.no_grad()
    def skip_pairs(self, x: torch.Tensor) -> "OrderedDict[str, tuple[torch.Tensor, torch.Tensor]]":
        """The two sides of every skip join for one input, in eval mode: ``{"level i": (skip side, upsampled side)}``.

        Level ``i`` is the join at stride ``2**i``, top level first (read by
        ``unet_lessons.similarity.concatenated_pairs``). The skip side is what reaches the join:
        after the skip's own layers, and after the crop of a valid-padding U-Net.
        """
        joins = self.skip_joins()
        if not joins:
            raise NotImplementedError(f"{type(self).__name__} has no SkipJoin modules; declare its skip_pairs(x).")
        found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def recorder(level: str) -> Callable:
            def record(_module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:  # None: the output stays
                found[level] = (inputs[0], inputs[1])
            return record

        handles = [join.register_forward_hook(recorder(level)) for level, join in joins.items()]
        was_training = self.training
        try:
            self.eval()
            self(x)
        finally:
            self.train(was_training)
            for handle in handles:
                handle.remove()
        return OrderedDict((level, found[level]) for level in joins)

    #: How a knocked-out skip is replaced: by zeros, or by each channel's spatial mean (per sample).
    SKIP_REPLACEMENTS = ("zero", "mean")

    def _chosen_joins(self, levels: Sequence[int], replace: str) -> list[nn.Module]:
        joins = self.skip_joins()
        unknown = [level for level in levels if f"level {level}" not in joins]
        if unknown or not levels:
            raise ValueError(f"{type(self).__name__} has skips at levels {list(range(len(joins)))} (0 = full "
                             f"resolution); got {list(levels) or 'none'}.")
        if replace not in self.SKIP_REPLACEMENTS:
            raise ValueError(f"a knocked-out skip is replaced by 'zero' or 'mean'; got replace={replace!r}.")
        return [joins[f"level {level}"] for level in levels]

    @contextlib.contextmanager
    def skip_knocked_out(self, *levels: int, replace: str = "zero"):
        """Within the ``with`` block, the skips at ``levels`` carry no encoder map.

        ``with model.skip_knocked_out(0): logits = model(x)`` shows what the top skip contributes.

        Args:
            levels: the skips, 0 = full resolution.
            replace: ``"zero"``: the skip side becomes zeros; ``"mean"``: each channel becomes its
                own mean over the map, per sample (the typical activation the decoder was trained
                with, without its layout). A trained decoder has never seen zeros there; the mean
                separates "no spatial detail" from "input unlike any in training".

        Raises:
            ValueError: naming the levels that exist, for a level the model does not have, or an
                unknown ``replace``.
        """
        chosen = self._chosen_joins(levels, replace)
        before = [join.knocked_out for join in chosen]
        try:
            for join in chosen:
                join.knocked_out = replace
            yield self
        finally:
            for join, state in zip(chosen, before):
                join.knocked_out = state

    def knock_out_skips(self, *levels: int, replace: str = "zero") -> "SegmentationModel":
        """Knock the skips at ``levels`` out for good (every skip when none is named), and return the model.

        Trained this way, with ``replace="zero"``, the network is a U-shape without those skips: the
        decoder's weights that read a zeroed skip get zero gradient, so they never change and add
        nothing (they stay in the parameter count). :meth:`skip_knocked_out` is the temporary version.
        """
        levels = levels or tuple(range(len(self.skip_joins())))
        for join in self._chosen_joins(levels, replace):
            join.knocked_out = replace
        return self

    def knocked_out_skips(self) -> dict[int, str]:
        """The levels whose skip is knocked out now, and how: ``{level: "zero" or "mean"}``."""
        return {int(name.split()[1]): join.knocked_out for name, join in self.skip_joins().items() if join.knocked_out}

    # ----- domains ----------------------------------------------------------------------------
    def for_domain(self, name: str) -> "DomainView":
        """This multi-domain model seen as an ordinary model for one domain, sharing the weights."""
        self.check_domain(name)
        return DomainView(self, name)

    def check_domain(self, domain: Any) -> str:
        """The one domain ``domain`` names; a ``ValueError`` naming the known domains when it is unknown,
        missing, or a batch's list that mixes domains (a model takes one domain per batch)."""
        known = sorted(self.domains)
        model = type(self).__name__
        if not known:
            raise ValueError(f"{model} is a single-domain model; it takes no domain (got domain={domain!r}).")
        if isinstance(domain, (list, tuple)):  # a dict batch's "domain" field, one entry per sample
            names = sorted(set(domain))
            if len(names) > 1:
                raise ValueError(f"{model} takes one domain per batch; this batch mixes {names}. Draw each batch "
                                 f"from one domain (known domains: {known}).")
            domain = names[0] if names else None
        if domain is None:
            raise ValueError(f"{model} serves several domains; say which: model(x, domain=...) or "
                             f"model.for_domain(name) (known domains: {known}).")
        if domain not in self.domains:
            raise ValueError(f"{model} has no domain {domain!r}; known domains: {known}.")
        return domain

    def rebuild(self) -> "SegmentationModel":
        """A new model built with the same arguments (new weights): ``type(self)(**self.arguments)``."""
        return type(self)(**self.arguments)


_SKIP_STAGE = re.compile(r"skip\d+")


def is_skip_stage(name: str) -> bool:
    """Whether a stage (or ``forward_features`` key) named ``name`` holds the layers on a skip, ``skip{i}``."""
    return bool(_SKIP_STAGE.fullmatch(name))


def _spatial_layers(modules: Sequence[nn.Module]) -> list[nn.Module]:
    return [m for module in modules for m in module.modules() if isinstance(m, _SPATIAL_LAYERS)]


class DomainView(SegmentationModel):
    """One domain of a multi-domain model, as a model of its own that shares the weights.

    ``forward(x)`` is ``model(x, domain=name)``; ``out_channels`` is that domain's. Training the
    view trains the shared weights and this domain's adapters and head.
    """

    def __init__(self, model: SegmentationModel, domain: str) -> None:
        super().__init__()
        self.model, self.domain = model, domain
        self.spatial_dims, self.out_channels = model.spatial_dims, model.domains[domain]
        self.in_channels = model.domain_in_channels.get(domain, model.in_channels)
        self.padding, self.depth = model.padding, model.depth
        self.feature_scheme, self.skip_join = model.feature_scheme, model.skip_join
        self.__dict__["arguments"] = {**model.arguments, "domain": domain}

    def output_size(self, size: int) -> Optional[int]:
        return self.model.output_size(size)

    def size_rule(self) -> str:
        return self.model.size_rule()

    def check_input(self, x: torch.Tensor, domain: Optional[str] = None) -> None:
        self.model.check_input(x, domain=self.domain)  # against this domain's own input channels

    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.model.forward_features(x, domain=self.domain)

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x, domain=self.domain)

    def stage_modules(self) -> "OrderedDict[str, list[nn.Module]]":
        return self.model.stage_modules(domain=self.domain)

    def rebuild(self) -> "DomainView":
        return self.model.rebuild().for_domain(self.domain)

    def extra_repr(self) -> str:
        return f"domain={self.domain!r}"


def smallest_side(model: SegmentationModel, minimum: Optional[int] = None) -> int:
    """The smallest axis length of at least ``minimum`` (default ``2**depth``) that ``model`` takes: a small, fast input."""
    start = 2**model.depth if minimum is None else minimum
    sizes = model.valid_sizes(start, start + 4096)
    if not sizes:
        raise ValueError(f"{type(model).__name__} takes no size from {start} to {start + 4096}.")
    return sizes[0]
