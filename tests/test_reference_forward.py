"""Every registered model's forward pass, output for output, against an independent implementation (issue 25).

Each reference below is the network written out from its paper with ``torch.nn.functional``
only: it reads the weights from ``model.state_dict()`` by name and its settings from
``model.arguments``, and never calls a module of the model (a pre-hook on every module fails
the test if it does). So a model whose code joins, crops, adds or orders something differently
from the paper (a decoder that concatenates ``[up, skip]`` instead of ``[skip, up]``, a lost
residual, a dropped dense skip) fails here, even where every shape test still passes.

* U-Net (Ronneberger et al. 2015, Fig. 1; the seed's padding of odd sizes) and No New-Net
  (Isensee et al. 2018: instance norm, leaky ReLU, trilinear upsampling);
* V-Net (Milletari et al. 2016, Fig. 2; the residual of the first stage repeats its input
  channels, as MONAI's ``InputTransition`` does; the decoder concatenates ``[up, skip]`` as
  the Caffe prototxt and MONAI do);
* UNet++ (Zhou et al. 2018, Section 2: ``X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, U(X^{i+1,j-1})])``);
* Myronenko (2018, Section 2 and Table 1), the VAE branch and its losses included;
* FCN-32s/16s/8s (Long et al. 2015, Section 4.2, Fig. 3).

Every configuration in a model's ``example_arguments`` is compared, in every ``spatial_dims``
it supports, in eval mode and in training mode (batch statistics; dropout and the VAE's sample
under the same seed), plus a few configurations the examples miss (the papers' presets). The
weights are perturbed first wherever they start constant (zero-initialised skips, norms at 1 and
0, running statistics at 0 and 1), so that no code path is hidden behind an identity.

Already compared against MONAI elsewhere, and not repeated: ``VNet.preset("monai")`` in 2D, eval
mode (tests/test_vnet.py); UNet++ with ``features=(4, 4, 8, 16, 32)``, instance norm, leaky ReLU, in
2D and 3D, eval mode (tests/test_unetpp.py); ``MyronenkoNet(final_norm_act=True)`` with SegResNet's
weights in 3D, eval mode (tests/test_myronenko.py). None of those is an ``example_arguments``
configuration or runs in training mode.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable

import pytest
import torch
import torch.nn.functional as F

from unet_lessons.models import MODELS, build_model
from unet_lessons.models.base import smallest_side
from unet_lessons.models.vnet import VNET_PRESETS

IN, OUT, WIDTH, SEED = 2, 3, 4, 7
TOLERANCE = dict(rtol=1e-5, atol=1e-6)

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}
_DROPOUT = {1: F.dropout1d, 2: F.dropout2d, 3: F.dropout3d}

State = dict[str, torch.Tensor]


# ----- functional layers that read weights by name ----------------------------------------------
def _conv(x: torch.Tensor, s: State, name: str, *, stride: int = 1, padding: int = 0) -> torch.Tensor:
    return _CONV[x.dim() - 2](x, s[f"{name}.weight"], s.get(f"{name}.bias"), stride=stride, padding=padding)


def _conv_transpose(x: torch.Tensor, s: State, name: str, *, stride: int, padding: int = 0) -> torch.Tensor:
    return _CONV_T[x.dim() - 2](x, s[f"{name}.weight"], s.get(f"{name}.bias"), stride=stride, padding=padding)


def _pool(x: torch.Tensor) -> torch.Tensor:
    return _POOL[x.dim() - 2](x, kernel_size=2, stride=2)


def _spec(spec) -> tuple:
    """A norm or activation as the package's arguments give it: a name, (name, options) or None."""
    if spec is None or isinstance(spec, str):
        return spec, {}
    return spec[0], dict(spec[1])


def _norm(x: torch.Tensor, s: State, name: str, spec, training: bool) -> torch.Tensor:
    kind, options = _spec(spec)
    weight, bias = s.get(f"{name}.weight"), s.get(f"{name}.bias")
    if kind is None:
        return x
    if kind == "batch":
        if training:  # batch statistics; the running averages are not read
            return F.batch_norm(x, None, None, weight, bias, training=True, eps=1e-5)
        return F.batch_norm(x, s[f"{name}.running_mean"], s[f"{name}.running_var"], weight, bias, training=False,
                            eps=1e-5)
    if kind == "instance":
        return F.instance_norm(x, weight=weight, bias=bias, eps=1e-5)
    if kind == "group":  # 8 groups (Wu and He 2018; Myronenko 2018), fewer when the channels are not a multiple
        groups = options.get("num_groups") or max(g for g in range(1, 9) if x.shape[1] % g == 0)
        return F.group_norm(x, groups, weight, bias, eps=1e-5)
    raise NotImplementedError(f"no reference for norm {spec!r}")


def _act(x: torch.Tensor, s: State, name: str, spec) -> torch.Tensor:
    kind, options = _spec(spec)
    if kind is None:
        return x
    if kind == "relu":
        return F.relu(x)
    if kind == "leakyrelu":
        return F.leaky_relu(x, options.get("negative_slope", 0.01))
    if kind == "prelu":
        return F.prelu(x, s[f"{name}.weight"])
    if kind == "elu":
        return F.elu(x)
    raise NotImplementedError(f"no reference for act {spec!r}")


def _conv_norm_act(x, s, name, *, norm, act, training, padding):
    return _act(_norm(_conv(x, s, f"{name}.conv", padding=padding), s, f"{name}.norm", norm, training),
                s, f"{name}.act", act)


# ----- U-Net and No New-Net ------------------------------------------------------------------------
def _unet(x: torch.Tensor, s: State, *, depth: int, padding: str, upsample: str, norm, act, align_corners: bool,
          training: bool) -> torch.Tensor:
    """Ronneberger et al. 2015, Fig. 1: (conv, norm, act) twice per level, 2x2 max-pool, up-conv or
    interpolation, the skip concatenated first (the copied map, then the upsampled one), a 1x1 head.
    "valid": the skip centre-cropped; "same": the upsampled map zero-padded to the skip (the seed's ``Up``)."""
    pad = 1 if padding == "same" else 0

    def double_conv(h, name):
        for unit in ("conv1", "conv2"):
            h = _conv_norm_act(h, s, f"{name}.{unit}", norm=norm, act=act, training=training, padding=pad)
        return h

    skips = [double_conv(x, "inc")]  # (B, F0, *S)
    for level in range(depth):
        skips.append(double_conv(_pool(skips[-1]), f"downs.{level}.conv"))  # (B, F_l+1, *S / 2**(l+1))
    h = skips.pop()  # the bottleneck
    for index in range(depth):  # deepest level first
        skip = skips.pop()
        if upsample == "transpose":
            up = _conv_transpose(h, s, f"ups.{index}.up", stride=2)
        else:
            up = F.interpolate(h, scale_factor=2, mode=_LINEAR[x.dim() - 2], align_corners=align_corners)
        if padding == "valid":  # "copy and crop"
            starts = [(a - b) // 2 for a, b in zip(skip.shape[2:], up.shape[2:])]
            skip = skip[(..., *(slice(start, start + b) for start, b in zip(starts, up.shape[2:])))]
        else:
            diffs = [a - b for a, b in zip(skip.shape[2:], up.shape[2:])]
            up = F.pad(up, [p for d in reversed(diffs) for p in (d // 2, d - d // 2)])
        h = double_conv(torch.cat([skip, up], dim=1), f"ups.{index}.conv")
    return _conv(h, s, "head")


def unet_reference(x: torch.Tensor, s: State, a: dict, training: bool) -> torch.Tensor:
    depth = len(a["features"]) - 1 if a.get("features") else a["depth"]
    return _unet(x, s, depth=depth, padding=a["padding"], upsample=a["upsample"], norm=a["norm"], act=a["act"],
                 align_corners=a["align_corners"], training=training)


def nonewnet_reference(x: torch.Tensor, s: State, a: dict, training: bool) -> torch.Tensor:
    """Isensee et al. 2018: padded convs, no learned upsampling (trilinear, align_corners=False)."""
    return _unet(x, s, depth=a["depth"], padding="same", upsample="interp", norm=a["norm"], act=a["act"],
                 align_corners=False, training=training)


# ----- V-Net -------------------------------------------------------------------------------------
def vnet_reference(x: torch.Tensor, s: State, a: dict, training: bool) -> torch.Tensor:
    """Milletari et al. 2016, Fig. 2: residual stages act(convs(x) + x) of 5x5x5 convs, 2x2x2 stride-2
    down-convs, 2x2x2 up-convs, the decoder's residual the concatenation [up, skip], a 1x1x1 head."""
    norm, act, pad = a["norm"], a["act"], a["kernel_size"] // 2
    enc, dec = a["encoder_depths"], a["decoder_depths"]

    def stage(h, name, num_convs, act_before_add):
        channels = s[f"{name}.convs.conv1.conv.weight"].shape[0]
        # the input tiled to the stage's channels: 1 channel repeated 16 times (MONAI's InputTransition)
        residual = torch.cat([h] * (channels // h.shape[1]), dim=1)
        for i in range(1, num_convs + 1):
            unit = f"{name}.convs.conv{i}"
            h = _norm(_conv(h, s, f"{unit}.conv", padding=pad), s, f"{unit}.norm", norm, training)
            if i < num_convs or act_before_add:
                h = _act(h, s, f"{unit}.act", act)
        return _act(h + residual, s, f"{name}.act", act)

    def down(h, name):
        if a["downsample"] == "conv":
            h = _conv(h, s, f"{name}.conv", stride=2)
        else:  # max-pool, then a 1x1x1 conv that doubles the channels
            h = _conv(_pool(h), s, f"{name}.conv")
        return _act(_norm(h, s, f"{name}.norm", norm, training), s, f"{name}.act", act)

    skips = [stage(x, "encoder.0", enc[0], False)]  # MONAI's InputTransition has no act before its add
    for level in range(1, len(enc)):
        skips.append(stage(down(skips[-1], f"encoder.{level}.down"), f"encoder.{level}.stage", enc[level],
                           a["act_before_add"]))
    h = skips.pop()
    for index, num_convs in enumerate(dec):
        name = f"ups.{index}"
        up = _conv_transpose(h, s, f"{name}.up.conv", stride=2)
        up = _act(_norm(up, s, f"{name}.up.norm", norm, training), s, f"{name}.up.act", act)
        h = stage(torch.cat([up, skips.pop()], dim=1), f"{name}.stage", num_convs, a["act_before_add"])
    if a["head"] == "conv_pointwise":
        h = _conv_norm_act(h, s, "head.conv", norm=norm, act=act, training=training, padding=pad)
    return _conv(h, s, "head.pointwise")


# ----- UNet++ ------------------------------------------------------------------------------------
def unetpp_reference(x: torch.Tensor, s: State, a: dict, training: bool):
    """Zhou et al. 2018, Section 2: X^{i,0} = H(pool(X^{i-1,0})); X^{i,j} = H([X^{i,0}, ..., X^{i,j-1},
    U(X^{i+1,j-1})]); a 1x1 head on X^{0,j} (every j with deep supervision, else only j = L)."""
    depth = len(a["features"]) - 1 if a.get("features") else a["depth"]

    def node(h, name):
        for unit in ("conv1", "conv2"):
            h = _conv_norm_act(h, s, f"{name}.{unit}", norm=a["norm"], act=a["act"], training=training, padding=1)
        return h

    X = {(0, 0): node(x, "nodes.x_0_0")}
    for i in range(1, depth + 1):
        X[i, 0] = node(_pool(X[i - 1, 0]), f"nodes.x_{i}_0")
    for j in range(1, depth + 1):
        for i in range(depth + 1 - j):
            up = _conv_transpose(X[i + 1, j - 1], s, f"ups.x_{i}_{j}", stride=2)
            X[i, j] = node(torch.cat([X[i, k] for k in range(j)] + [up], dim=1), f"nodes.x_{i}_{j}")
    if a["deep_supervision"] and training:
        return [_conv(X[0, j], s, f"heads.head_{j}") for j in range(1, depth + 1)]
    return _conv(X[0, depth], s, f"heads.head_{depth}")


# ----- Myronenko 2018 ----------------------------------------------------------------------------
def myronenko_reference(x: torch.Tensor, s: State, a: dict, training: bool):
    """Myronenko 2018, Section 2 and Table 1: pre-activation residual blocks (GN, ReLU, 3x3x3 conv, twice,
    plus the input), strided 3x3x3 downsampling, per decoder level a 1x1x1 conv, trilinear x2 and the
    encoder map *added*; in training the VAE branch and L = 0.1 L_L2 + 0.1 L_KL, with
    L_KL = (1/N) sum(mu^2 + sigma^2 - log sigma^2 - 1)."""
    dims, norm = x.dim() - 2, a["norm"]
    mode = _LINEAR[dims]

    def block(h, name):
        residual = h
        for unit in ("unit1", "unit2"):
            h = _conv(F.relu(_norm(h, s, f"{name}.body.{unit}.norm", norm, training)), s, f"{name}.body.{unit}.conv",
                      padding=1)
        return h + residual  # nothing after the addition

    def decoder(h, ups, levels, skips):
        for index, count in enumerate(a["blocks_up"]):
            h = F.interpolate(_conv(h, s, f"{ups}.{index}.conv"), scale_factor=2, mode=mode, align_corners=False)
            if skips is not None:
                h = h + skips.pop()
            for b in range(count):
                h = block(h, f"{levels}.{index}.{b}")
        return h

    h = _conv(x, s, "init_conv", padding=1)
    if a["dropout"] > 0:
        h = _DROPOUT[dims](h, a["dropout"], training=training)
    levels = []
    for level, count in enumerate(a["blocks_down"]):
        if level:
            h = _conv(h, s, f"encoder.{level}.down.conv", stride=2, padding=1)
        for b in range(count):
            h = block(h, f"encoder.{level}.block{b + 1}")
        levels.append(h)
    bottleneck = levels.pop()
    h = decoder(bottleneck, "ups", "decoder", levels)
    if a["final_norm_act"]:
        h = F.relu(_norm(h, s, "head.norm", norm, training))
    logits = _conv(h, s, "head.conv")
    if a["vae_input_size"] is None or not training:
        return logits

    v = _conv(F.relu(_norm(bottleneck, s, "vae_down.norm", norm, training)), s, "vae_down.conv", stride=2, padding=1)
    code = F.linear(v.flatten(1), s["vae_encode.weight"], s["vae_encode.bias"])
    mean, std = code[:, :a["latent_size"]], F.softplus(code[:, a["latent_size"]:]) + 1e-6
    z = mean + std * torch.randn_like(std)
    h = F.relu(F.linear(z, s["vae_expand.weight"], s["vae_expand.bias"])).view(v.shape)
    h = F.interpolate(_conv(h, s, "vae_up.conv"), size=bottleneck.shape[2:], mode=mode, align_corners=False)
    reconstruction = _conv(decoder(h, "vae_ups", "vae_blocks", None), s, "vae_end")
    l2 = ((reconstruction - x) ** 2).mean()
    kl = ((mean**2 + std**2 - torch.log(std**2) - 1).sum(1) / math.prod(x.shape[2:])).mean()
    return {"logits": logits, "aux_loss": a["l2_weight"] * l2 + a["kl_weight"] * kl,
            "reconstruction": reconstruction, "l2_loss": l2, "kl_loss": kl}


# ----- FCN ---------------------------------------------------------------------------------------
def fcn_reference(x: torch.Tensor, s: State, a: dict, training: bool) -> torch.Tensor:
    """Long et al. 2015: VGG16 (2, 2, 3, 3, 3 convs, 2x2 pools), fc6 a 7x7 conv, fc7 a 1x1 conv, 1x1 scores;
    32s: x32 in one step; 16s: x2 + scores from pool4, then x16; 8s: again x2 + scores from pool3, then x8.
    Every upsampler a transposed conv of kernel 2f, stride f, padding f/2; the input zero-padded at the
    bottom and right to a multiple of 32 and the output cropped back from the top left."""
    height, width = x.shape[2:]
    h = F.pad(x, (0, -width % 32, 0, -height % 32))
    pools = {}
    for index, num_convs in enumerate((2, 2, 3, 3, 3), start=1):
        for unit in range(1, num_convs + 1):
            h = _conv_norm_act(h, s, f"encoder.stage{index}.conv{unit}", norm=a["norm"], act="relu",
                               training=training, padding=1)
        pools[index] = h = _pool(h)
    for name, padding in (("fc6", 3), ("fc7", 0)):
        h = _conv_norm_act(h, s, name, norm=a["norm"], act="relu", training=training, padding=padding)
        if a["dropout"] > 0:
            h = F.dropout(h, a["dropout"], training=training)
    score = _conv(h, s, "score_fr")  # stride 32

    def upsample(h, name, factor):
        return _conv_transpose(h, s, name, stride=factor, padding=factor // 2)

    if a["variant"] == "32s":
        out = upsample(score, "upscore", 32)
    else:
        score = upsample(score, "upscore2", 2) + _conv(pools[4], s, "score_pool4")  # stride 16
        if a["variant"] == "16s":
            out = upsample(score, "upscore16", 16)
        else:
            score = upsample(score, "upscore_pool4", 2) + _conv(pools[3], s, "score_pool3")  # stride 8
            out = upsample(score, "upscore8", 8)
    return out[:, :, :height, :width]


# ----- MultiResUNet --------------------------------------------------------------------------------
def multiresunet_reference(x: torch.Tensor, s: State, a: dict, training: bool) -> torch.Tensor:
    """Ibtehaz and Rahman 2020, as the official Keras code (nibtehaz/MultiResUNet, tensorflow/MultiResUNet.py):
    ``conv2d_bn`` = conv without bias, batch norm without scale, then the activation; a MultiRes block is a chain
    of three 3x3 conv2d_bn, concatenated, batch-normalised, plus a 1x1 conv2d_bn shortcut, then ReLU, then
    batch norm; a Res path unit is 3x3 conv2d_bn (ReLU) + 1x1 conv2d_bn, ReLU, batch norm; the decoder
    concatenates [up-conv, skip]; the output is a 1x1 conv2d_bn without activation (or a plain 1x1 conv)."""
    def conv_bn(h, name, padding, act):
        h = _norm(_conv(h, s, f"{name}.conv", padding=padding), s, f"{name}.norm", "batch", training)
        return F.relu(h) if act else h

    def block(h, name):
        if a["block"] == "double_conv":
            for unit in ("conv1", "conv2"):
                h = _conv_norm_act(h, s, f"{name}.{unit}", norm="batch", act="relu", training=training, padding=1)
            return h
        first = conv_bn(h, f"{name}.conv3", 1, True)
        second = conv_bn(first, f"{name}.conv5", 1, True)
        third = conv_bn(second, f"{name}.conv7", 1, True)
        out = _norm(torch.cat([first, second, third], 1), s, f"{name}.concat_norm", "batch", training)
        out = F.relu(conv_bn(h, f"{name}.shortcut", 0, False) + out)
        return _norm(out, s, f"{name}.norm", "batch", training)

    def res_path(h, level):
        for unit in range(a["depth"] - level):  # 4, 3, 2, 1 units from the top level down
            name = f"res_paths.{level}.unit{unit + 1}"
            h = F.relu(conv_bn(h, f"{name}.conv", 1, True) + conv_bn(h, f"{name}.shortcut", 0, False))
            h = _norm(h, s, f"{name}.norm", "batch", training)
        return h

    encoder, h = [], x
    for level in range(a["depth"] + 1):
        h = block(h if level == 0 else _pool(h), "encoder.0" if level == 0 else f"encoder.{level}.block")
        encoder.append(h)
    h = encoder.pop()
    for index, level in enumerate(reversed(range(a["depth"]))):
        skip = res_path(encoder[level], level) if a["res_paths"] else encoder[level]
        h = block(torch.cat([_conv_transpose(h, s, f"ups.{index}", stride=2), skip], 1), f"decoder.{index}")
    h = _conv(h, s, "head.0")
    return _norm(h, s, "head.1", "batch", training) if a["output_norm"] else h


REFERENCES: dict[str, Callable] = {"unet": unet_reference, "nonewnet": nonewnet_reference, "vnet": vnet_reference,
                                   "unetpp": unetpp_reference, "myronenko": myronenko_reference,
                                   "fcn": fcn_reference, "multiresunet": multiresunet_reference}

# Every example configuration of every registered model, in every spatial_dims it supports ...
CASES = [(name, dims, dict(kwargs)) for name, constructor in MODELS.items()
         for dims in constructor.spatial_dims_supported for kwargs in constructor.example_arguments]
# ... and the configurations the examples miss.
CASES += [
    ("unet", 2, {"depth": 2, "upsample": "interp", "align_corners": True}),  # the seed's bilinear Up
    # Çiçek et al. 2016: doubled before pooling, channels kept by the up-conv
    ("unet", 3, {"features": (4, 8, 16), "padding": "valid", "channel_plan": "unet3d", "up_bias": False}),
    ("vnet", 2, dict(VNET_PRESETS["milletari2016_caffe"])),
    ("vnet", 2, dict(VNET_PRESETS["monai"])),  # in training mode too: the MONAI comparison is eval only
    ("vnet", 3, {"encoder_depths": (1, 2, 2), "decoder_depths": (2, 1), "downsample": "maxpool", "norm": "batch"}),
    ("fcn", 2, {"variant": "8s", "fc_width": 8, "norm": "batch", "dropout": 0.5}),
    ("myronenko", 2, {"vae_input_size": 16, "blocks_down": (1, 1, 1, 2)}),  # VAE map x2 without a fixed size
    ("multiresunet", 2, {"depth": 3, "alpha": 2.0}),  # another alpha, and a Res path of three units
]
IDS = [f"{name}-{dims}d-" + ("-".join(f"{k}={v}" for k, v in kwargs.items()) or "default")
       for name, dims, kwargs in CASES]


def u2net_reference(x: torch.Tensor, s: State, a: dict, training: bool) -> torch.Tensor:
    """3D U²-Net as the authors' u2net3d.py computes it (commit c655840; instance norms use batch statistics always)."""
    domain, dims = a.get("domain") or "main", x.dim() - 2

    def norm(h, name):
        return F.instance_norm(h, weight=s[f"{name}.weight"], bias=s[f"{name}.bias"], eps=1e-5)

    def act(h):
        return F.leaky_relu(h, 0.01)

    def unit(h, name, *, kernel=3, stride=1):
        if stride != 1:
            h = _conv(h, s, f"{name}.conv", stride=stride)  # padded before, by hand
        elif a["separable"]:  # per-domain depthwise 3x3x3 + norm + LeakyReLU, shared pointwise
            h = _CONV[dims](h, s[f"{name}.adapters.{domain}.0.weight"], s[f"{name}.adapters.{domain}.0.bias"],
                            padding=1, groups=h.shape[1])
            h = _conv(act(norm(h, f"{name}.adapters.{domain}.1")), s, f"{name}.pointwise")
        else:
            h = _conv(h, s, f"{name}.conv", padding=kernel // 2)
        return norm(h, f"{name}.norms.{domain}")

    h = act(norm(_conv(x, s, f"inputs.{domain}.0", padding=1), f"inputs.{domain}.1"))
    skips = []
    for level in range(a["depth"] + 1):
        if level:
            h = act(unit(F.pad(h, (0, 1) * dims), f"downs.{level - 1}.unit", stride=2))
        h = act(h + unit(act(unit(h, f"blocks.{level}.unit1")), f"blocks.{level}.unit2"))
        skips.append(h)
    supervision = None
    for level in reversed(range(a["depth"])):
        up = act(unit(F.interpolate(h, scale_factor=2, mode="nearest"), f"ups.{level}.unit"))
        h = act(unit(torch.cat([up, skips[level]], dim=1), f"decoder.{level}.unit1"))
        h = act(unit(h, f"decoder.{level}.unit2", kernel=1))
        if a["deep_supervision"] and level in (1, 2):
            head = f"deep_heads.{domain}.{level}"
            d = act(norm(_conv(h, s, f"{head}.conv"), f"{head}.norm"))
            supervision = F.interpolate(d if supervision is None else d + supervision, scale_factor=2, mode="nearest")
    logits = _conv(h, s, f"outputs.{domain}")
    return logits if supervision is None else logits + supervision


REFERENCES["u2net"] = u2net_reference


# ----- the comparison ------------------------------------------------------------------------------
@torch.no_grad()
def _perturb(model: torch.nn.Module) -> None:
    """Move every constant parameter (zero-initialised skips, norms at 1 and 0, PReLU slopes) off its constant,
    and give the running statistics values that are not the identity."""
    for parameter in model.parameters():
        if bool((parameter == parameter.flatten()[0]).all()):
            parameter.add_(0.2 * torch.randn_like(parameter) + 0.1)
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer.copy_(0.2 * torch.randn_like(buffer))
        elif name.endswith("running_var"):
            buffer.copy_(0.5 + torch.rand_like(buffer))


@contextmanager
def _no_module_calls(model: torch.nn.Module):
    """Fail if anything calls a module of ``model``: the reference must be independent of the model's code."""
    def refuse(module, _inputs):
        raise AssertionError(f"the reference called {type(module).__name__}.forward; it must use torch.nn.functional")

    handles = [module.register_forward_pre_hook(refuse) for module in model.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _input(model) -> torch.Tensor:
    """A small batch of 2: an odd size on some axes where the model takes one (the padding paths)."""
    if getattr(model, "vae_input_size", None):
        return torch.randn(2, IN, *model.vae_input_size)
    start = smallest_side(model)
    sizes = model.valid_sizes(start, start + 64)
    first = next((size for size in sizes if size % 2), sizes[0])
    second = next(size for size in sizes if size != first)
    return torch.randn(2, IN, *(first, second, first)[:model.spatial_dims])


def test_every_registered_model_has_a_reference():
    assert set(REFERENCES) == set(MODELS)


@pytest.mark.parametrize("name,spatial_dims,kwargs", CASES, ids=IDS)
def test_forward_equals_the_independent_reference(name, spatial_dims, kwargs):
    model = build_model(name, in_channels=IN, out_channels=OUT, spatial_dims=spatial_dims, width=WIDTH, **kwargs)
    _perturb(model)
    for domain in sorted(model.domains) or [None]:  # a multi-domain model: every domain, with its own inputs
        _compare(name, model, domain)


def _compare(name, model, domain) -> None:
    x = _input(model)
    channels = model.domain_in_channels.get(domain, IN) if domain else IN
    x = torch.randn(x.shape[0], channels, *x.shape[2:])
    forward = {"domain": domain} if domain else {}
    arguments = {**model.arguments, **forward}
    for training in (False, True):
        model.train(training)
        state = {key: value.clone() for key, value in model.state_dict().items()}  # before BN updates its averages
        with torch.no_grad():
            torch.manual_seed(SEED)
            ours = model(x, **forward)
            torch.manual_seed(SEED)  # the same dropout masks and VAE sample
            with _no_module_calls(model):
                reference = REFERENCES[name](x, state, arguments, training)
        if isinstance(ours, dict):
            assert set(ours) == set(reference), f"{name}: output keys differ (training={training})"
        torch.testing.assert_close(ours, reference, **TOLERANCE,
                                   msg=lambda m: f"{name}, training={training}, input {tuple(x.shape)}: {m}")
