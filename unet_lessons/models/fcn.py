"""Fully Convolutional Networks: VGG16 turned into a segmenter, in the paper's form and the seed's.

Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation",
CVPR 2015; Shelhamer, Long and Darrell, PAMI 2017. Official code:
``shelhamer/fcn.berkeleyvision.org`` (``voc-fcn32s``, ``voc-fcn16s``, ``voc-fcn8s``, ``surgery.py``).

* Section 3.1, "adapting classifiers for dense prediction": the fully connected layers of a
  classifier are convolutions whose kernels cover their whole input, so
  :func:`convolutionalize` recasts :class:`VGGClassifier`'s fc6/fc7/fc8 as a 7x7 and two
  1x1 convs with the same weights; on a larger image the net then outputs a coarse map of
  class scores instead of one vector.
* Section 3.3, "upsampling is backwards strided convolution": :func:`make_upsample` builds a
  transposed conv initialised to bilinear interpolation (:func:`~unet_lessons.upsampling.bilinear_weight`, the
  ``upsample_filt`` of ``surgery.py``), fixed or learnable.
* Section 4.2, "combining what and where" (Fig. 3): :class:`FCN` with ``variant="32s"``
  upsamples the stride-32 scores in one step; ``"16s"`` first fuses them with scores
  predicted from pool4, ``"8s"`` also with pool3.
* Table 1: the receptive field of VGG16's fc7 is 404 pixels.

:class:`FCN32sSeed` is the decoder of the widely copied survey-article code: five
stride-2 transposed convs (with ReLU then BatchNorm) on top of ``pretrained_net(x)['x5']``.

Built in ``notebooks/01_fcn.ipynb``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..blocks import ConvNormAct, conv_transpose_type, conv_type, make_act, make_norm
from ..upsampling import bilinear_taps, bilinear_weight
from .base import SegmentationModel
from .vgg import (VGG16_CONVS, ConvolutionalVGG, VGGClassifier, VGGEncoder, VGGStage, _dropout,
                  _linear_to_conv, _scaled, convolutionalize)

__all__ = [
    "VGGStage",
    "VGGEncoder",
    "VGGClassifier",
    "ConvolutionalVGG",
    "convolutionalize",
    "transplant",
    "FCN32sSeed",
    "make_upsample",
    "FCN",
    "stride_ceiling",
    "ceiling_scores",
    "upsample_matrix",
]

SEED_CHANNELS = (512, 512, 256, 128, 64, 32)
VARIANTS = {"32s": 32, "16s": 16, "8s": 8}  # variant -> stride of the last fused score map


def transplant(fcn: "FCN", classifier: VGGClassifier) -> "FCN":
    """Copy a classifier's encoder, fc6 and fc7 into ``fcn`` in place, as ``surgery.transplant`` does.

    fc8 is dropped: its classes are not the segmentation classes (Section 4.1 discards the
    final classifier layer). The two must have the same width, fc_width and encoder norm,
    and ``fcn`` no norm on fc6/fc7 (the classifier has none there). Returns ``fcn``.
    """
    if fcn.fc6.conv.bias is None:
        raise ValueError("transplant needs an FCN whose fc6/fc7 have no norm (build it with norm=None).")
    fcn.encoder.load_state_dict(classifier.encoder.state_dict())
    _linear_to_conv(classifier.fc6, fcn.fc6.conv)
    _linear_to_conv(classifier.fc7, fcn.fc7.conv)
    return fcn


class FCN32sSeed(nn.Module):
    """The FCN-32s decoder of the survey-article code: five 2x transposed convs on ``x5``.

    Unlike the paper's FCN-32s (one fixed bilinear x32 step), this decoder learns five
    3x3 stride-2 transposed convs, each followed by ReLU and then BatchNorm, in the order
    the article writes ``score = self.bn1(self.relu(self.deconv1(x5)))``, and ends in a
    1x1 ``classifier``. The attribute names are the article's.

    Args:
        pretrained_net: an encoder returning a dict with ``'x5'``, e.g. :class:`VGGEncoder`.
        n_class: number of classes.
        width: scales the channel plan (512, 512, 256, 128, 64, 32) by width/64 to match a
            narrow encoder; 64 is the article's.

    Shape:
        x5 (B, C, h, w) -> (B, n_class, 32h, 32w); for an image (B, 3, H, W) that is
        (B, n_class, H, W) when H and W are multiples of 32 (else 32 * floor(H / 32), ...).
    """

    def __init__(self, pretrained_net: nn.Module, n_class: int, *, width: int = 64) -> None:
        super().__init__()
        self.n_class, self.spatial_dims = n_class, 2
        self.channels = _scaled(SEED_CHANNELS, width)
        self.pretrained_net = pretrained_net
        self.relu = make_act("relu")
        for index, (c_in, c_out) in enumerate(zip(self.channels[:-1], self.channels[1:]), start=1):
            self.add_module(f"deconv{index}", conv_transpose_type(2)(c_in, c_out, kernel_size=3, stride=2, padding=1,
                                                                     dilation=1, output_padding=1))
            self.add_module(f"bn{index}", make_norm("batch", c_out, 2))
        self.classifier = conv_type(2)(self.channels[-1], n_class, kernel_size=1)

    @property
    def in_channels(self) -> int:
        return getattr(self.pretrained_net, "in_channels", 3)

    def decode(self, x5: torch.Tensor, features: Optional[dict] = None) -> torch.Tensor:
        """Map ``x5`` (B, C, h, w) to class scores (B, n_class, 32h, 32w); record each stage in ``features``."""
        if x5.dim() != 4 or x5.shape[1] != self.channels[0]:
            raise ValueError(f"{type(self).__name__} expects x5 of shape (B, {self.channels[0]}, h, w); got "
                             f"{tuple(x5.shape)}. Build it with the width of the encoder (width=...).")
        score = x5
        for index in range(1, 6):
            deconv, bn = getattr(self, f"deconv{index}"), getattr(self, f"bn{index}")
            score = bn(self.relu(deconv(score)))  # (B, C_i, 2**i h, 2**i w)
            if features is not None:
                features[f"deconv{index}"] = score
        return self.classifier(score)  # (B, n_class, 32h, 32w)

    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Encoder maps (``x1`` … ``x5`` for a VGG encoder), ``deconv1`` … ``deconv5`` and ``logits``."""
        features = OrderedDict(self.pretrained_net(x))
        features["logits"] = self.decode(features["x5"], features)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.pretrained_net(x)["x5"])

    def stage_modules(self) -> "OrderedDict[str, list[nn.Module]]":
        """The modules of each map of :meth:`forward_features` (read by ``viz.draw_fcn``)."""
        stages: OrderedDict[str, list[nn.Module]] = OrderedDict(
            (f"x{index}", [getattr(self.pretrained_net, f"stage{index}", self.pretrained_net)]) for index in range(1, 6))
        for index in range(1, 6):
            stages[f"deconv{index}"] = [getattr(self, f"deconv{index}"), getattr(self, f"bn{index}")]
        stages["logits"] = [self.classifier]
        return stages


def make_upsample(channels: int, factor: int, *, learnable: bool) -> nn.ConvTranspose2d:
    """A x``factor`` transposed conv initialised to bilinear interpolation (Section 3.3).

    Kernel ``2 * factor`` (``2 * factor - 1`` for odd factors), stride ``factor``, padding
    ``factor // 2``, no bias: the output is exactly ``factor`` times the input, so no crop
    is needed. ``learnable=False`` freezes the weight (``requires_grad_(False)``), as the
    official code does with ``lr_mult: 0``.

    Away from the border it equals ``F.interpolate(mode="bilinear", align_corners=False)``.
    In the outer ``factor // 2`` rows and columns it does not: interpolate clamps to the
    edge pixel, while the transposed conv reads zeros beyond the border, so there it is
    darker: for x2 a constant map comes out 3/4 as bright along the edges and 9/16 in
    the corners. FCN crops or trains over this; it only touches the outer half cell.

    Shape:
        (B, channels, H, W) -> (B, channels, factor * H, factor * W)
    """
    if factor < 1:
        raise ValueError(f"factor must be at least 1; got {factor}.")
    kernel_size = 2 * factor - factor % 2
    layer = conv_transpose_type(2)(channels, channels, kernel_size, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(bilinear_weight(channels, channels, kernel_size))
    return layer.requires_grad_(learnable)


def upsample_matrix(size: int, factor: int) -> torch.Tensor:
    """The fixed ×``factor`` upsampler of :func:`make_upsample` along one axis, as a matrix (factor·size, size).

    The bilinear kernel is the outer product of a 1D profile with itself, so the 2D layer applied to
    a map ``x`` (h, w) equals ``upsample_matrix(h, f) @ x @ upsample_matrix(w, f).T``.
    """
    profile = bilinear_taps(2 * factor - factor % 2).float()  # the kernel make_upsample builds is outer(profile, profile)
    basis = torch.eye(size)[:, None, :]  # (size, 1, size): one input position per row
    columns = F.conv_transpose1d(basis, profile.view(1, 1, -1), stride=factor, padding=factor // 2)
    return columns[:, 0, :].T.contiguous()  # (factor·size, size)


def stride_ceiling(labels: torch.Tensor, num_classes: int, output_stride: int, *, fit_steps: int = 0,
                   lr: float = 0.1) -> torch.Tensor:
    """The class maps of a perfect FCN whose last score map has stride ``output_stride``, given the labels.

    The argmax over the classes of :func:`ceiling_scores` (which explains the two definitions).

    Shape:
        (B, H, W) -> (B, H, W) int64
    """
    return ceiling_scores(labels, num_classes, output_stride, fit_steps=fit_steps, lr=lr).argmax(1)


def ceiling_scores(labels: torch.Tensor, num_classes: int, output_stride: int, *, fit_steps: int = 0,
                   lr: float = 0.1) -> torch.Tensor:
    """The upsampled scores of a perfect FCN whose last score map has stride ``output_stride``, given the labels.

    Whatever an FCN learns, its output is its last score map, one score per class on an
    ``output_stride``-pixel grid, upsampled by the fixed bilinear layer of :func:`make_upsample`
    and argmaxed. So the best it can do on an image is the best such map for that image, and
    with the label in hand we can look for it:

    * ``fit_steps=0``: each cell's class shares (the one-hot label area-averaged onto the grid).
      Simple, but not the best map: a class with less than half of every cell it touches never
      wins the argmax, though a larger score would win it the pixels it covers.
    * ``fit_steps > 0``: the coarse scores fitted to the label, starting from the log of those
      shares, by ``fit_steps`` steps of Adam on the cross-entropy of their upsampling. The
      cross-entropy is convex in the coarse scores (the upsampling is linear), so the fit heads
      for its lowest value; but the map of lowest cross-entropy need not have the highest IoU,
      so this is the best map we find, an estimate of the ceiling from below: a network cannot
      beat the true ceiling, but it can beat this estimate.

    Each class map is upsampled on its own, which is what the diagonal weights of the fixed
    layer do (``make_upsample(num_classes, s)`` equals ``make_upsample(1, s)`` per channel).

    Args:
        labels: class indices (B, H, W), int64; H and W multiples of ``output_stride``.
        num_classes: the number of classes ``K``.
        output_stride: 32, 16 or 8 for FCN-32s, 16s and 8s (any whole number of at least 1).
        fit_steps: 0 for the area average, else the number of fitting steps.
        lr: Adam's learning rate for the fit.

    Shape:
        (B, H, W) -> (B, K, H, W) float32: the upsampled scores (class shares, or fitted logits).
    """
    if labels.dim() != 3 or labels.dtype != torch.int64:
        raise ValueError(f"labels must be class indices of shape (B, H, W), int64; got {tuple(labels.shape)} "
                         f"{labels.dtype}. Add a batch axis with labels[None] or convert with labels.long().")
    if output_stride < 1 or labels.shape[1] % output_stride or labels.shape[2] % output_stride:
        raise ValueError(f"the label size {tuple(labels.shape[1:])} must be a multiple of the output stride "
                         f"{output_stride}, as an FCN's input is (pad or crop the labels first).")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0 … {num_classes - 1}; found {int(labels.min())} … {int(labels.max())}.")
    # The fixed layer's kernel is the outer product of a 1D bilinear profile, so the layer is the matrix product
    # M @ coarse @ M.T with M (H, h) the 1D transposed convolution: the same numbers, and fast enough to fit.
    rows, cols = (upsample_matrix(n // output_stride, output_stride) for n in labels.shape[1:])

    def upsampled(coarse: torch.Tensor) -> torch.Tensor:  # (B, K, h, w) -> (B, K, H, W), each class on its own
        return rows @ coarse @ cols.T

    shares = F.avg_pool2d(F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float(), output_stride)  # (B, K, h, w)
    if fit_steps == 0:
        with torch.no_grad():
            return upsampled(shares)
    with torch.enable_grad():
        scores = torch.log(shares + 1e-3).requires_grad_(True)
        optimizer = torch.optim.Adam([scores], lr=lr)
        for _ in range(fit_steps):
            loss = F.cross_entropy(upsampled(scores), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return upsampled(scores)


def _zero_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    conv = conv_type(2)(in_channels, out_channels, kernel_size=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class FCN(SegmentationModel):
    """FCN-32s, FCN-16s and FCN-8s on a VGG16 encoder (Long et al. 2015, Section 4.2, Fig. 3).

    The encoder and the convolutionalized fc6/fc7 (Section 3.1) give features at stride 32;
    ``score_fr``, a 1x1 conv, turns them into class scores. Then:

    * ``"32s"``: ``upscore``, a fixed bilinear x32 (``voc-fcn32s``: ``lr_mult: 0``).
    * ``"16s"``: ``upscore2`` (x2, bilinear-initialised, learnable) plus ``score_pool4``, a
      1x1 conv on pool4 initialised to zero "so that the net starts with unmodified
      predictions"; the sum ``fuse_pool4`` goes through a fixed bilinear x16 ``upscore16``.
      (Two bilinear steps, x2 then x16, are close to but not exactly one x32 step.)
    * ``"8s"``: ``fuse_pool4`` again x2 (``upscore_pool4``) plus ``score_pool3`` on pool3,
      then a fixed bilinear x8 ``upscore8``.

    Simplifications. The paper pads the input by 100 pixels (``conv1_1`` pad 100) so that
    the unpadded 7x7 fc6 has room on small images, then crops every upsampled map by an
    offset computed from the layer geometry. Here fc6 is padded by 3 instead, so every map
    stays aligned at H/stride and the upsamplers (kernel 2f, stride f, padding f/2) need no
    crop. The paper learns the x2 upsamplers (Section 4.2); the reference code freezes them,
    which ``learnable_upsampling=False`` reproduces. ``score_fr`` keeps PyTorch's default
    initialisation (the paper zero-initialises it when fine-tuning a pretrained VGG16).

    Args:
        out_channels: classes (21 for PASCAL VOC); ``num_classes``, the paper code's name, is accepted too
            (``model.num_classes`` holds it as well, but ``model.arguments`` records the core name).
        variant: ``"32s"``, ``"16s"`` or ``"8s"``: the stride of the last fused score map.
        in_channels: input channels.
        width: encoder width, see :class:`VGGEncoder` (64 = VGG16).
        fc_width: channels of fc6 and fc7 (4096 = VGG16).
        norm: ``None`` (paper) or a norm name for the encoder, fc6 and fc7.
        dropout: dropout after fc6 and fc7 (the paper uses 0.5).
        pad_to_multiple: zero-pad inputs at the bottom and right to the next multiple of 32,
            and crop the output back. Zeros because they always work (a reflection cannot be
            longer than the image) and they are what the conv padding already shows the
            net at the border. ``False`` raises a ``ValueError`` naming the nearest sizes.
        learnable_upsampling: whether the x2 upsamplers of 16s/8s learn; the final one never does.
        spatial_dims: 2; VGG16 is a 2D network, so 3 is refused.

    Shape:
        (B, in_channels, H, W) -> (B, num_classes, H, W)
    """

    feature_scheme = "fcn"
    spatial_dims_supported = (2,)
    argument_aliases = {"num_classes": "out_channels"}
    example_arguments = tuple({"variant": variant, "fc_width": 8} for variant in VARIANTS)

    def __init__(self, out_channels: int = 21, *, variant: str = "32s", in_channels: int = 3, width: int = 64,
                 fc_width: int = 4096, norm: Optional[str] = None, dropout: float = 0.0,
                 pad_to_multiple: bool = True, learnable_upsampling: bool = True, spatial_dims: int = 2) -> None:
        super().__init__()
        num_classes = out_channels  # the paper's word for the output channels
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}; got {variant!r}.")
        if spatial_dims != 2:
            raise ValueError(f"FCN is 2D only (its encoder is VGG16, a 2D image classifier); got spatial_dims="
                             f"{spatial_dims}. For volumes build a 3D network, e.g. build_model('unet', spatial_dims=3), "
                             "or segment slice by slice with unet_lessons.inference.predict_slicewise.")
        self.num_classes, self.variant, self.in_channels, self.spatial_dims = num_classes, variant, in_channels, 2
        self.out_channels, self.depth, self.padding = num_classes, len(VGG16_CONVS), "same"  # five poolings
        self.pad_to_multiple = pad_to_multiple
        self.encoder = VGGEncoder(in_channels, width=width, norm=norm)
        c3, c4, c5 = self.encoder.channels[2:]
        self.fc6 = ConvNormAct(c5, fc_width, 7, spatial_dims=2, norm=norm, act="relu", bias=None)  # padding 3
        self.drop6 = _dropout(dropout)
        self.fc7 = ConvNormAct(fc_width, fc_width, 1, spatial_dims=2, norm=norm, act="relu", bias=None)
        self.drop7 = _dropout(dropout)
        self.score_fr = conv_type(2)(fc_width, num_classes, kernel_size=1)
        if variant == "32s":
            self.upscore = make_upsample(num_classes, 32, learnable=False)
            return
        self.upscore2 = make_upsample(num_classes, 2, learnable=learnable_upsampling)
        self.score_pool4 = _zero_conv(c4, num_classes)
        if variant == "16s":
            self.upscore16 = make_upsample(num_classes, 16, learnable=False)
            return
        self.upscore_pool4 = make_upsample(num_classes, 2, learnable=learnable_upsampling)
        self.score_pool3 = _zero_conv(c3, num_classes)
        self.upscore8 = make_upsample(num_classes, 8, learnable=False)

    @property
    def output_stride(self) -> int:
        """Stride of the score map that the final, fixed upsampler enlarges: 32, 16 or 8."""
        return VARIANTS[self.variant]

    def output_size(self, size: int) -> Optional[int]:
        """Output length of an axis of length ``size`` (kept): any size when padding to a multiple of 32,
        else only multiples of 32."""
        if self.pad_to_multiple:
            return size if size >= 1 else None
        return size if size >= 32 and size % 32 == 0 else None

    def size_rule(self) -> str:
        return ("Five 2x2 poolings need every axis to be a multiple of 32; build the model with "
                "pad_to_multiple=True to pad and crop automatically.")

    def stage_modules(self) -> "OrderedDict[str, list[nn.Module]]":
        """The modules of each map of :meth:`forward_features` (the sums ``fuse_*`` have none)."""
        stages: OrderedDict[str, list[nn.Module]] = OrderedDict(
            (f"x{index}", [getattr(self.encoder, f"stage{index}")]) for index in range(1, 6))
        stages.update(fc6=[self.fc6, self.drop6], fc7=[self.fc7, self.drop7], score_fr=[self.score_fr])
        if self.variant == "32s":
            stages["logits"] = [self.upscore]
            return stages
        stages.update(upscore2=[self.upscore2], score_pool4=[self.score_pool4], fuse_pool4=[])
        if self.variant == "16s":
            stages["logits"] = [self.upscore16]
            return stages
        stages.update(upscore_pool4=[self.upscore_pool4], score_pool3=[self.score_pool3], fuse_pool3=[],
                      logits=[self.upscore8])
        return stages

    @torch.no_grad()
    def skip_pairs(self, x: torch.Tensor) -> "OrderedDict[str, tuple[torch.Tensor, torch.Tensor]]":
        """At each sum (level 4 = pool4, level 3 = pool3): the skip's scores and the upsampled scores.

        FCN joins by adding class scores, not by concatenating features; FCN-32s has no skips.
        """
        feats = self.forward_features(x)
        pairs: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        if "fuse_pool3" in feats:
            pairs["level 3"] = (feats["score_pool3"], feats["upscore_pool4"])
        if "fuse_pool4" in feats:
            pairs["level 4"] = (feats["score_pool4"], feats["upscore2"])
        return pairs

    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Run the network and return every named map.

        Keys: ``x1`` … ``x5`` (pool1 … pool5), ``fc6``, ``fc7``, ``score_fr``; for 16s and 8s
        ``upscore2``, ``score_pool4``, ``fuse_pool4``; for 8s ``upscore_pool4``,
        ``score_pool3``, ``fuse_pool3``; then ``logits``. All but ``logits`` are maps of
        the padded input when H or W is not a multiple of 32.
        """
        self.check_input(x)
        height, width = x.shape[2:]
        x = F.pad(x, (0, -width % 32, 0, -height % 32))  # (B, C, H', W'), multiples of 32
        features = self.encoder(x)  # x1 ... x5: (B, C_i, H'/2**i, W'/2**i)
        features["fc6"] = h = self.drop6(self.fc6(features["x5"]))  # (B, fc_width, H'/32, W'/32)
        features["fc7"] = h = self.drop7(self.fc7(h))  # (B, fc_width, H'/32, W'/32)
        features["score_fr"] = score = self.score_fr(h)  # (B, K, H'/32, W'/32)
        if self.variant == "32s":
            logits = self.upscore(score)  # (B, K, H', W')
        else:
            features["upscore2"] = self.upscore2(score)  # (B, K, H'/16, W'/16)
            features["score_pool4"] = self.score_pool4(features["x4"])  # (B, K, H'/16, W'/16)
            features["fuse_pool4"] = score = features["upscore2"] + features["score_pool4"]
            if self.variant == "16s":
                logits = self.upscore16(score)  # (B, K, H', W')
            else:
                features["upscore_pool4"] = self.upscore_pool4(score)  # (B, K, H'/8, W'/8)
                features["score_pool3"] = self.score_pool3(features["x3"])  # (B, K, H'/8, W'/8)
                features["fuse_pool3"] = score = features["upscore_pool4"] + features["score_pool3"]
                logits = self.upscore8(score)  # (B, K, H', W')
        features["logits"] = logits[:, :, :height, :width]  # (B, K, H, W)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["logits"]

    def deepest_path(self) -> list[nn.Module]:
        """The spatial layers from the input through pool5, fc6, fc7, ``score_fr`` and every upsampler.

        The skip branches (pool4 and pool3 scores) are shorter paths whose fields lie inside
        this path's field, so this list determines the receptive field
        (see ``unet_lessons.viz.receptive_field``).
        """
        spatial = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd)
        layers: list[nn.Module] = [m for m in self.encoder.modules() if isinstance(m, spatial)]
        layers += [self.fc6.conv, self.fc7.conv, self.score_fr]
        upsamplers = {"32s": ["upscore"], "16s": ["upscore2", "upscore16"],
                      "8s": ["upscore2", "upscore_pool4", "upscore8"]}[self.variant]
        return layers + [getattr(self, name) for name in upsamplers]
