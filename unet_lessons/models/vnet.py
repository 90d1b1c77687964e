"""V-Net, in 3D (and 2D): a residual, fully convolutional U-shaped net.

Milletari, Navab and Ahmadi, "V-Net: Fully Convolutional Neural Networks for Volumetric
Medical Image Segmentation", 3DV 2016 (Section 2, Fig. 2, Table 1). Official Caffe code:
``faustomilletari/VNet``, ``Prototxt/train_noPooling_ResNet_cinque.prototxt``.

What sets it apart from the U-Net:

* Every stage is residual: its input goes through one to three padded 5x5x5 convolutions
  (PReLU between them) and is *added* to the last convolution's output, and the PReLU
  comes after the sum (as in the Caffe prototxt). The first stage's input has one
  channel; it is repeated 16 times so that it can be added to the 16 feature maps.
* Downsampling is a 2x2x2 stride-2 convolution that doubles the channels (no pooling);
  upsampling is a 2x2x2 stride-2 transposed convolution. Both are followed by a PReLU.
* The decoder concatenates the up-convolution's output with the encoder stage of the
  same level. As in the official code (and MONAI), the residual of a decoder stage is
  that concatenation, so a decoder stage is twice as wide as its up-convolution: the
  decoder stages have 256, 128, 64, 32 channels, "half the number of kernels employed
  in the previous" stage (Section 2). The up-convolution therefore halves the
  bottleneck's 256 channels to 128 but turns the 256 of the next stage into 64.
* A 1x1x1 convolution gives one map per class; the paper applies a voxelwise softmax.
  :meth:`VNet.forward` returns the logits: the softmax belongs to the loss
  (``SoftDiceLoss(softmax=True)``) or to inference (``logits.softmax(1)``).

Three configurations differ in the number of convolutions per stage
(:data:`VNET_PRESETS`): the paper's Fig. 2 (1,2,3,3,3 | 3,3,2,1), the official Caffe
prototxt (1,1,2,3,3 | 3,2,1,1, with a 5x5x5 conv + PReLU before the 1x1x1 head) and
MONAI's ``monai.networks.nets.VNet`` (1,1,2,3,2 | 2,2,1,1, BatchNorm, ELU, bias-free
convs and a PReLU/ELU also on the last conv before the add).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..blocks import ConvNormAct, SkipJoin, VNetStage, conv_transpose_type, conv_type, make_act, make_norm, max_pool_type
from .base import SegmentationModel

__all__ = ["VNetStage", "VNetDown", "VNetUp", "VNet", "VNET_PRESETS", "parameter_counts"]


class VNetDown(nn.Sequential):
    """Halve the size and double the channels: ``"conv"`` (paper) or ``"maxpool"``.

    ``"conv"`` is the paper's 2x2x2 stride-2 convolution. ``"maxpool"`` is a 2x2x2 max-pool
    followed by a 1x1x1 convolution that doubles the channels: the same output shape, the
    same receptive field and the same norm/act after it, so the two differ only in how the
    2x2x2 window is reduced (a fixed max versus a learned linear map with 8x the weights).

    Shape:
        (B, C, *S) -> (B, out_channels, *S/2).
    """

    def __init__(self, in_channels: int, out_channels: int, *, spatial_dims: int = 3, mode: str = "conv",
                 norm: Optional[str] = None, act: Optional[str] = "prelu", bias: Optional[bool] = True) -> None:
        super().__init__()
        use_bias = (norm is None) if bias is None else bias
        if mode == "conv":
            self.add_module("conv", conv_type(spatial_dims)(in_channels, out_channels, 2, stride=2, bias=use_bias))
        elif mode == "maxpool":
            self.add_module("pool", max_pool_type(spatial_dims)(kernel_size=2, stride=2))
            self.add_module("conv", conv_type(spatial_dims)(in_channels, out_channels, 1, bias=use_bias))
        else:
            raise ValueError(f"downsample must be 'conv' or 'maxpool'; got {mode!r}.")
        self.add_module("norm", make_norm(norm, out_channels, spatial_dims))
        self.add_module("act", make_act(act, out_channels))


class VNetUp(nn.Module):
    """2x2x2 stride-2 transposed conv (+ norm, act), concatenate the skip, then a residual stage.

    Args:
        in_channels: channels coming up from below.
        up_channels: output channels of the transposed conv (= the skip's channels).
        num_convs: convolutions of the stage, which works at ``2 * up_channels`` channels.
        spatial_dims, kernel_size, norm, act, bias, act_before_add: as in :class:`VNetStage`;
            ``norm`` and ``act`` also follow the transposed conv.
        up_bias: bias of the transposed conv.

    Shape:
        below (B, in_channels, *S/2), skip (B, up_channels, *S) -> (B, 2 * up_channels, *S).
    """

    def __init__(self, in_channels: int, up_channels: int, num_convs: int, *, spatial_dims: int = 3,
                 kernel_size: int = 5, norm: Optional[str] = None, act: Optional[str] = "prelu",
                 bias: Optional[bool] = True, up_bias: bool = True, act_before_add: bool = False) -> None:
        super().__init__()
        self.up = nn.Sequential(OrderedDict(
            conv=conv_transpose_type(spatial_dims)(in_channels, up_channels, kernel_size=2, stride=2, bias=up_bias),
            norm=make_norm(norm, up_channels, spatial_dims),
            act=make_act(act, up_channels),
        ))
        # Up-conv first, then the skip: the order of the Caffe prototxt and of MONAI.
        self.join = SkipJoin("concat", skip_first=False)
        self.stage = VNetStage(2 * up_channels, 2 * up_channels, num_convs, spatial_dims=spatial_dims,
                               kernel_size=kernel_size, norm=norm, act=act, bias=bias, act_before_add=act_before_add)

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(below)  # (B, C_up, *S)
        return self.stage(self.join(skip, up))  # (B, 2 C_up, *S)


class VNet(SegmentationModel):
    """V-Net (Milletari et al. 2016) for 3D volumes or 2D images; returns logits.

    Args:
        in_channels: input channels (1 in the paper); ``width`` must be a multiple.
        out_channels: number of classes (2 in the paper: background, prostate).
        spatial_dims: 3 (paper) or 2.
        width: channels of the first stage (16 in the paper; 4 trains fast on a CPU).
            Stage ``i`` of the encoder has ``width * 2**i`` channels. ``base_features`` is its
            old name and still accepted.
        encoder_depths: convolutions per encoder stage, top to bottom; the last stage is the
            bottleneck. ``len(encoder_depths) - 1`` downsamplings.
        decoder_depths: convolutions per decoder stage, bottom to top (one fewer entry).
        kernel_size: convolution size (5).
        act: ``"prelu"`` (paper), ``"elu"`` (MONAI) or another name from ``make_act``.
        norm: ``None`` (paper) or ``"batch"`` (MONAI), after every conv and up/down-conv.
        downsample: ``"conv"`` (paper) or ``"maxpool"``, see :class:`VNetDown`.
        bias: bias of the 5x5x5 convs and the down-convs (``None``: only without a norm).
        up_bias: bias of the transposed convs (MONAI keeps it even with ``bias=False``).
        act_before_add: put ``act`` on the last conv of every stage but the first before the
            residual add too. MONAI does so (its ``LUConv`` blocks) except in its input stage;
            the Caffe prototxt never does.
        head: ``"pointwise"``: one 1x1x1 conv to ``out_channels`` (paper, Fig. 2).
            ``"conv_pointwise"``: a ``kernel_size`` conv to ``out_channels`` with norm and act,
            then the 1x1x1 conv (the Caffe prototxt and MONAI's ``OutputTransition``).

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S), every size a multiple of
        ``2**(len(encoder_depths) - 1)`` (16 with five stages).
    """

    argument_aliases = {"base_features": "width"}

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        *,
        spatial_dims: int = 3,
        width: int = 16,
        encoder_depths: Sequence[int] = (1, 2, 3, 3, 3),
        decoder_depths: Sequence[int] = (3, 3, 2, 1),
        kernel_size: int = 5,
        act: Optional[str] = "prelu",
        norm: Optional[str] = None,
        downsample: str = "conv",
        bias: Optional[bool] = True,
        up_bias: bool = True,
        act_before_add: bool = False,
        head: str = "pointwise",
    ) -> None:
        super().__init__()
        encoder_depths, decoder_depths = tuple(int(d) for d in encoder_depths), tuple(int(d) for d in decoder_depths)
        if len(encoder_depths) < 2 or len(decoder_depths) != len(encoder_depths) - 1:
            raise ValueError(f"need at least two encoder stages and one decoder stage fewer; got encoder_depths="
                             f"{encoder_depths}, decoder_depths={decoder_depths}.")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so that padding keeps the size; got {kernel_size}.")
        if head not in ("pointwise", "conv_pointwise"):
            raise ValueError(f"head must be 'pointwise' or 'conv_pointwise'; got {head!r}.")
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        self.padding = "same"  # padded convolutions: the output keeps the input size
        self.encoder_depths, self.decoder_depths = encoder_depths, decoder_depths
        self.depth = len(encoder_depths) - 1
        self.features = tuple(width * 2**level for level in range(self.depth + 1))
        common = dict(spatial_dims=spatial_dims, norm=norm, act=act)
        stage_kwargs = dict(common, kernel_size=kernel_size, bias=bias, act_before_add=act_before_add)

        # encoder[0] is a stage; every deeper level is (down, stage), MONAI's DownTransition.
        self.encoder = nn.ModuleList([VNetStage(in_channels, self.features[0], encoder_depths[0],
                                                **{**stage_kwargs, "act_before_add": False})])
        for level in range(1, self.depth + 1):
            width = self.features[level]
            self.encoder.append(nn.Sequential(OrderedDict(
                down=VNetDown(self.features[level - 1], width, mode=downsample, bias=bias, **common),
                stage=VNetStage(width, width, encoder_depths[level], **stage_kwargs),
            )))
        self.ups = nn.ModuleList()
        below = self.features[-1]
        for level, num_convs in zip(reversed(range(self.depth)), decoder_depths):
            self.ups.append(VNetUp(below, self.features[level], num_convs, up_bias=up_bias, **stage_kwargs))
            below = 2 * self.features[level]  # (up-conv output, skip) concatenated
        self.head = nn.Sequential()
        if head == "conv_pointwise":
            self.head.add_module("conv", ConvNormAct(below, out_channels, kernel_size, bias=bias, **common))
            below = out_channels
        self.head.add_module("pointwise", conv_type(spatial_dims)(below, out_channels, kernel_size=1))

    @classmethod
    def preset(cls, name: str, **overrides) -> "VNet":
        """A named configuration (see :data:`VNET_PRESETS`); ``overrides`` replace its arguments."""
        if name not in VNET_PRESETS:
            raise KeyError(f"Unknown V-Net preset {name!r}; choose one of {sorted(VNET_PRESETS)}.")
        return cls(**{**VNET_PRESETS[name], **overrides})

    # ----- sizes -------------------------------------------------------------------------
    def output_size(self, size: int) -> Optional[int]:
        """Output length of an axis of length ``size`` (kept), or ``None`` if not a multiple of ``2**depth``."""
        return size if size > 0 and size % 2**self.depth == 0 else None

    def size_rule(self) -> str:
        return (f"{self.depth} stride-2 downsamplings need every axis to be a multiple of 2**{self.depth} = "
                f"{2**self.depth}, so that each up-convolution meets its skip at the same size.")

    # ----- forward -----------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Run the network and return every stage's output by name.

        Keys: ``enc0`` … ``enc{depth-1}`` (the skip sources), ``bottleneck``,
        ``dec{depth-1}`` … ``dec0`` and ``logits`` (before the softmax).
        """
        self.check_input(x)
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        h = self.encoder[0](x)  # (B, F0, *S)
        feats["enc0"] = h
        for level in range(1, self.depth + 1):
            h = self.encoder[level](h)  # (B, F_level, *S / 2**level)
            feats["bottleneck" if level == self.depth else f"enc{level}"] = h
        for level, up in zip(reversed(range(self.depth)), self.ups):
            h = up(h, feats[f"enc{level}"])  # (B, 2 F_level, *S / 2**level)
            feats[f"dec{level}"] = h
        feats["logits"] = self.head(h)  # (B, out_channels, *S)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, out_channels, *S); apply ``softmax(1)`` for the paper's probabilities."""
        return self.forward_features(x)["logits"]

    # ----- the layers, stage by stage ------------------------------------------------------
    def stage_modules(self) -> "OrderedDict[str, list[nn.Module]]":
        """The modules of each stage, keyed as in :meth:`forward_features`.

        ``stage_paths()`` (inherited) lists their spatial layers: the longest path. The
        residual adds and the skips are shorter paths that see a subset of the input, so they
        add nothing to the receptive field.
        """
        stages: OrderedDict[str, list[nn.Module]] = OrderedDict(enc0=[self.encoder[0]])
        for level in range(1, self.depth + 1):
            stages["bottleneck" if level == self.depth else f"enc{level}"] = [self.encoder[level]]  # down, stage
        for level, up in zip(reversed(range(self.depth)), self.ups):
            stages[f"dec{level}"] = [up.up, up.join, up.stage]  # up-conv, join the skip, the residual stage
        stages["logits"] = [self.head]
        return stages


#: Named configurations, as ``VNet`` arguments (``VNet.preset(name)``).
VNET_PRESETS: dict[str, dict] = {
    # Section 2 and Fig. 2: 1, 2, 3, 3, 3 convolutions down, 3, 3, 2, 1 up; PReLU, no normalisation.
    "milletari2016": dict(encoder_depths=(1, 2, 3, 3, 3), decoder_depths=(3, 3, 2, 1)),
    # faustomilletari/VNet, Prototxt/train_noPooling_ResNet_cinque.prototxt: fewer convolutions,
    # and a 5x5x5 conv to the classes + PReLU before the 1x1x1 conv.
    "milletari2016_caffe": dict(encoder_depths=(1, 1, 2, 3, 3), decoder_depths=(3, 2, 1, 1), head="conv_pointwise"),
    # monai.networks.nets.VNet (MONAI 1.6): same parameters and, in eval mode (no dropout), same outputs.
    "monai": dict(encoder_depths=(1, 1, 2, 3, 2), decoder_depths=(2, 2, 1, 1), act="elu", norm="batch",
                  bias=False, up_bias=True, act_before_add=True, head="conv_pointwise"),
}


def parameter_counts(in_channels: int = 1, out_channels: int = 2, *, spatial_dims: int = 3,
                     base_features: int = 16) -> "OrderedDict[str, int]":
    """Parameters of every preset and of ``monai.networks.nets.VNet``, side by side.

    The models are built on the ``"meta"`` device, so nothing is allocated. MONAI's VNet has
    16 channels in its first stage whatever ``base_features`` says.

    Returns:
        Name -> parameter count: the preset names of :data:`VNET_PRESETS`, then ``"monai.VNet"``.
    """
    from monai.networks.nets import VNet as MonaiVNet  # only this comparison needs MONAI

    counts: OrderedDict[str, int] = OrderedDict()
    with torch.device("meta"):
        for name in VNET_PRESETS:
            model = VNet.preset(name, in_channels=in_channels, out_channels=out_channels,
                                spatial_dims=spatial_dims, width=base_features)
            counts[name] = sum(p.numel() for p in model.parameters())
        monai_model = MonaiVNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels)
        counts["monai.VNet"] = sum(p.numel() for p in monai_model.parameters())
    return counts
