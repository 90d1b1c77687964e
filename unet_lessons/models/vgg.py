"""VGG16 (Simonyan and Zisserman 2015), the classifier FCN starts from, and its fully connected
layers recast as convolutions (Long et al., "Fully Convolutional Networks", CVPR 2015, Section 3.1).

:func:`convolutionalize` turns :class:`VGGClassifier`'s fc6/fc7/fc8 into a 7x7 and two 1x1
convolutions with the same weights: on a larger image the network then outputs a coarse
map of class scores instead of one vector. Built in ``notebooks/01_fcn.ipynb``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..blocks import ConvNormAct, conv_type, make_act, max_pool_type
from .base import check_input

__all__ = ["VGGStage", "VGGEncoder", "VGGClassifier", "ConvolutionalVGG", "convolutionalize", "VGG16_CONVS",
           "VGG16_CHANNELS"]

VGG16_CONVS = (2, 2, 3, 3, 3)            # 3x3 convs per stage: 13 in all
VGG16_CHANNELS = (64, 128, 256, 512, 512)


def _scaled(channels: Sequence[int], width: int) -> tuple[int, ...]:
    if width < 1:
        raise ValueError(f"width must be at least 1; got {width}.")
    return tuple(max(1, c * width // 64) for c in channels)


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class VGGStage(nn.Sequential):
    """``num_convs`` x (3x3 conv -> norm -> ReLU), then a 2x2 max-pool of stride 2: one VGG16 stage.

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, H // 2, W // 2)
    """

    def __init__(self, in_channels: int, out_channels: int, num_convs: int, *, norm: Optional[str] = None) -> None:
        super().__init__()
        for index in range(1, num_convs + 1):
            self.add_module(f"conv{index}", ConvNormAct(in_channels if index == 1 else out_channels, out_channels, 3,
                                                        spatial_dims=2, norm=norm, act="relu", bias=None))
        self.add_module("pool", max_pool_type(2)(kernel_size=2, stride=2))


class VGGEncoder(nn.Module):
    """The 13 conv layers of VGG16 (Simonyan and Zisserman 2015, config D) in five pooled stages.

    Args:
        in_channels: input channels (3 for RGB).
        width: channels of the first stage; the stages have (64, 128, 256, 512, 512) x width/64.
        norm: ``None`` (VGG16) or a norm name such as ``"batch"``, which helps when training
            from scratch on a CPU.

    Shape:
        (B, in_channels, H, W) -> OrderedDict ``x1`` … ``x5``: the output of stage i after its
        pool, (B, C_i, H / 2**i, W / 2**i) (floored). ``x5`` is the ``pretrained_net(x)['x5']``
        that the survey article's decoders read: 512 channels at stride 32 at full width.
    """

    def __init__(self, in_channels: int = 3, *, width: int = 64, norm: Optional[str] = None) -> None:
        super().__init__()
        self.in_channels, self.width, self.spatial_dims = in_channels, width, 2
        self.channels = _scaled(VGG16_CHANNELS, width)
        previous = in_channels
        for index, (num_convs, channels) in enumerate(zip(VGG16_CONVS, self.channels), start=1):
            self.add_module(f"stage{index}", VGGStage(previous, channels, num_convs, norm=norm))
            previous = channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        check_input(x, model_name=type(self).__name__, spatial_dims=2, in_channels=self.in_channels)
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        for index in range(1, 6):
            x = getattr(self, f"stage{index}")(x)  # (B, C_i, H/2**i, W/2**i)
            features[f"x{index}"] = x
        return features


class VGGClassifier(nn.Module):
    """VGG16 as an ImageNet classifier: the encoder, then fc6, fc7, fc8 on the flattened 7x7 pool5 map.

    Args:
        num_classes: classes of fc8 (1000 for ImageNet).
        in_channels: input channels.
        width: encoder width, see :class:`VGGEncoder`.
        fc_width: units of fc6 and fc7 (4096 in VGG16).
        norm: encoder norm.
        dropout: dropout after fc6 and fc7 (VGG16 trains with 0.5); off by default.

    Shape:
        (B, in_channels, 224, 224) -> (B, num_classes). Any side from 224 to 255 gives the
        7x7 pool5 map that fc6 expects; other sizes raise a ``ValueError``.
    """

    def __init__(self, num_classes: int = 1000, *, in_channels: int = 3, width: int = 64, fc_width: int = 4096,
                 norm: Optional[str] = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes, self.fc_width, self.dropout = num_classes, fc_width, dropout
        self.encoder = VGGEncoder(in_channels, width=width, norm=norm)
        self.fc6 = nn.Linear(self.encoder.channels[-1] * 7 * 7, fc_width)
        self.relu6, self.drop6 = make_act("relu"), _dropout(dropout)
        self.fc7 = nn.Linear(fc_width, fc_width)
        self.relu7, self.drop7 = make_act("relu"), _dropout(dropout)
        self.fc8 = nn.Linear(fc_width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x5 = self.encoder(x)["x5"]  # (B, C5, H/32, W/32)
        if tuple(x5.shape[2:]) != (7, 7):
            raise ValueError(f"{type(self).__name__} flattens a 7x7 pool5 map, so it takes 224x224 inputs "
                             f"(224 to 255 per axis); got {tuple(x.shape)}, giving pool5 "
                             f"{tuple(x5.shape[2:])}. convolutionalize(model) takes any size from 224 up.")
        h = self.drop6(self.relu6(self.fc6(x5.flatten(1))))  # (B, fc_width)
        h = self.drop7(self.relu7(self.fc7(h)))  # (B, fc_width)
        return self.fc8(h)  # (B, num_classes)


class ConvolutionalVGG(nn.Module):
    """:class:`VGGClassifier` with fc6/fc7/fc8 as convolutions (Section 3.1, Fig. 2); see :func:`convolutionalize`.

    Shape:
        (B, in_channels, H, W) -> (B, num_classes, H // 32 - 6, W // 32 - 6): fc6 is an
        unpadded 7x7 conv, so a 224x224 input gives a 1x1 map, 320x384 a 4x6 map.
    """

    def __init__(self, encoder: VGGEncoder, num_classes: int, fc_width: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.fc6 = conv_type(2)(encoder.channels[-1], fc_width, kernel_size=7)
        self.relu6, self.drop6 = make_act("relu"), _dropout(dropout)
        self.fc7 = conv_type(2)(fc_width, fc_width, kernel_size=1)
        self.relu7, self.drop7 = make_act("relu"), _dropout(dropout)
        self.fc8 = conv_type(2)(fc_width, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop6(self.relu6(self.fc6(self.encoder(x)["x5"])))  # (B, fc_width, H/32 - 6, W/32 - 6)
        h = self.drop7(self.relu7(self.fc7(h)))
        return self.fc8(h)  # (B, num_classes, H/32 - 6, W/32 - 6)


@torch.no_grad()
def _linear_to_conv(linear: nn.Linear, conv: nn.Conv2d) -> None:
    """Copy a linear layer into a conv whose kernel covers the linear layer's whole (C, h, w) input."""
    if linear.weight.numel() != conv.weight.numel():
        raise ValueError(f"cannot reshape a {tuple(linear.weight.shape)} linear weight into a "
                         f"{tuple(conv.weight.shape)} conv weight.")
    # Linear input index c*h*w + i*w + j is flatten's order of (C, h, w): a plain reshape.
    conv.weight.copy_(linear.weight.reshape(conv.weight.shape))
    if conv.bias is not None:
        conv.bias.copy_(linear.bias)


def convolutionalize(classifier: VGGClassifier) -> ConvolutionalVGG:
    """Recast the fully connected layers of ``classifier`` as convolutions (Section 3.1).

    fc6 ``Linear(C5*7*7, F)`` becomes ``Conv2d(C5, F, 7)``, fc7 and fc8 become 1x1 convs,
    with the weights copied and reshaped. The encoder is shared, not copied. On a 224x224
    input the result gives the classifier's logits as a (B, num_classes, 1, 1) map; on a
    larger input it slides the classifier over the image in one pass, giving a coarse map.
    """
    model = ConvolutionalVGG(classifier.encoder, classifier.num_classes, classifier.fc_width, classifier.dropout)
    for name in ("fc6", "fc7", "fc8"):
        _linear_to_conv(getattr(classifier, name), getattr(model, name))
    return model
