"""Transposed convolution, built up three ways, and the checkerboard artefacts it can leave.

FCN (Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015, Section 3.3) upsamples coarse class scores with "backwards
strided convolution", initialised to bilinear interpolation and optionally learned. Three
views of that one operation, each checked against ``F.conv_transpose2d`` in the tests
(Dumoulin and Visin, "A guide to convolution arithmetic for deep learning", 2016, Section 4):

1. Arithmetic: :func:`conv_transpose_output_size`, the size formula and the rules PyTorch
   enforces.
2. Scatter: :func:`conv_transpose_scatter`; every input pixel adds a copy of the kernel,
   scaled by its value, onto a canvas at ``stride`` spacing, then ``padding`` is cropped.
3. Matrix: :func:`conv_matrix`; a convolution is a sparse matrix ``C`` acting on the
   flattened image, and the transposed convolution with the same weight is ``C^T``.

:func:`bilinear_kernel_2d` and :func:`bilinear_weight` give FCN's bilinear initialisation.
:func:`checkerboard_images` and :func:`checkerboard_strength` reproduce the artefact of
Odena, Dumoulin and Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016: where
the kernel size is not a multiple of the stride, output pixels receive unequal numbers of
kernel taps, and a flat input comes out striped.

Built in lesson 01 (``notebooks/01_fcn.ipynb``).
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "conv_transpose_output_size",
    "conv_transpose_scatter",
    "conv_matrix",
    "bilinear_kernel_2d",
    "bilinear_taps",
    "bilinear_weight",
    "checkerboard_images",
    "checkerboard_strength",
]


def conv_transpose_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0,
                               dilation: int = 1, output_padding: int = 0) -> int:
    """Output length of a transposed convolution along one axis, as ``nn.ConvTranspose2d`` computes it.

    ``(size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1``:
    the inverse of the convolution formula ``(size + 2p - d(k - 1) - 1) // stride + 1``. That
    floor division maps several input sizes to one output size when ``stride > 1``;
    ``output_padding`` picks which one the transposed convolution gives back.

    Args:
        size: input length (>= 1).
        kernel_size: kernel length (>= 1).
        stride: spacing of the kernel copies on the output (>= 1).
        padding: pixels cropped from each end of the output (>= 0).
        dilation: spacing of the kernel taps (>= 1).
        output_padding: pixels added at the far end only. PyTorch requires it to be smaller
            than ``stride`` or smaller than ``dilation``.

    Raises:
        ValueError: for settings PyTorch rejects, saying which rule they break.
    """
    for name, value, low in (("size", size, 1), ("kernel_size", kernel_size, 1), ("stride", stride, 1),
                             ("padding", padding, 0), ("dilation", dilation, 1),
                             ("output_padding", output_padding, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    if not (output_padding < stride or output_padding < dilation):
        raise ValueError(f"output_padding ({output_padding}) must be smaller than stride ({stride}) or "
                         f"dilation ({dilation}): it only chooses among the input sizes that a strided "
                         f"convolution maps to the same output size.")
    out = (size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1
    if out < 1:
        raise ValueError(f"the output size would be {out}: padding ({padding}) crops more than the "
                         f"{out + 2 * padding} pixels the transposed convolution produces.")
    return out


def conv_transpose_scatter(x: torch.Tensor, weight: torch.Tensor, stride: int = 1,
                           padding: int = 0) -> torch.Tensor:
    """Transposed convolution as scatter-add, written with explicit loops over input pixels.

    Input pixel ``(i, j)`` adds ``x[:, i, j]``-weighted copies of the kernel onto the output
    canvas with its top-left corner at ``(i * stride, j * stride)``; overlapping copies sum.
    The canvas is ``(H - 1) * stride + k`` pixels high; ``padding`` then crops that many
    pixels from each border. For teaching only: slow, one image, no bias or dilation.

    Args:
        x: input (C_in, H, W).
        weight: kernels in ``nn.ConvTranspose2d`` layout (C_in, C_out, kH, kW).
        stride: spacing of the kernel copies.
        padding: pixels cropped from each border of the canvas.

    Shape:
        (C_in, H, W) -> (C_out, (H - 1) * stride - 2 * padding + kH, (W - 1) * stride - 2 * padding + kW).
    """
    if x.ndim != 3 or weight.ndim != 4 or weight.shape[0] != x.shape[0]:
        raise ValueError(f"expected x (C_in, H, W) and weight (C_in, C_out, kH, kW); got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}.")
    c_in, height, width = x.shape
    _, c_out, kh, kw = weight.shape
    out_h = conv_transpose_output_size(height, kh, stride, padding)  # validates the settings
    out_w = conv_transpose_output_size(width, kw, stride, padding)
    canvas = x.new_zeros(c_out, (height - 1) * stride + kh, (width - 1) * stride + kw)
    for i in range(height):
        for j in range(width):
            # Sum over input channels: (C_in,) . (C_in, C_out, kH, kW) -> (C_out, kH, kW).
            stamp = torch.tensordot(x[:, i, j], weight, dims=1)
            canvas[:, i * stride:i * stride + kh, j * stride:j * stride + kw] += stamp
    return canvas[:, padding:padding + out_h, padding:padding + out_w]  # (C_out, H', W')


def conv_matrix(weight: torch.Tensor, input_size: Union[int, tuple[int, int]], stride: int = 1,
                padding: int = 0) -> torch.Tensor:
    """The matrix ``C`` of the convolution ``F.conv2d(x, weight, stride=stride, padding=padding)``.

    ``F.conv2d(x, weight, ...).flatten() == C @ x.flatten()`` for one image ``x`` of shape
    (C_in, H, W). Row ``(o, a, b)`` of ``C`` holds the kernel ``weight[o]`` at the input
    positions that output pixel ``(a, b)`` reads; most entries are zero. The transpose ``C^T``
    maps outputs back to inputs: it is the transposed convolution with the same ``weight``,
    ``F.conv_transpose2d(y, weight, stride, padding, output_padding)``, where ``output_padding =
    (H + 2 * padding - k) % stride`` makes its output exactly (H, W). Built with explicit loops
    for small teaching examples (a 3x3 kernel on a 4x4 image gives a 4 x 16 matrix).

    Args:
        weight: kernels in ``nn.Conv2d`` layout (C_out, C_in, kH, kW).
        input_size: ``H`` or ``(H, W)`` of the convolution's input.
        stride: convolution stride.
        padding: zero padding on each border.

    Shape:
        (C_out, C_in, kH, kW) -> (C_out * H_out * W_out, C_in * H * W).
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    c_out, c_in, kh, kw = weight.shape
    out_h = (height + 2 * padding - kh) // stride + 1
    out_w = (width + 2 * padding - kw) // stride + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {kh}x{kw} kernel does not fit a {height}x{width} input with padding {padding}.")
    matrix = weight.new_zeros(c_out, out_h, out_w, c_in, height, width)
    for a in range(out_h):
        for b in range(out_w):
            for u in range(kh):
                for v in range(kw):
                    row, col = a * stride - padding + u, b * stride - padding + v
                    if 0 <= row < height and 0 <= col < width:  # taps on the zero padding drop out
                        matrix[:, a, b, :, row, col] = weight[:, :, u, v]
    return matrix.reshape(c_out * out_h * out_w, c_in * height * width)


def bilinear_kernel_2d(kernel_size: int) -> torch.Tensor:
    """The 2D bilinear interpolation kernel that FCN initialises its upsampling layers with.

    The ``upsample_filt`` of the official FCN code (``surgery.py``): with ``factor = (k + 1)
    // 2`` and ``center = factor - 1`` (odd ``k``) or ``factor - 0.5`` (even ``k``), the kernel
    is the outer product of ``1 - |i - center| / factor`` with itself. A transposed
    convolution with stride ``factor``, ``kernel_size = 2 * factor`` and ``padding = factor //
    2`` then interpolates bilinearly (away from the border). The FCN models build their
    upsamplers from this kernel through :func:`bilinear_weight`.

    Args:
        kernel_size: side of the square kernel (>= 1), e.g. 4 for x2 and 64 for x32 upsampling.

    Shape:
        (kernel_size, kernel_size) float32; e.g. ``k = 4`` gives the outer product of
        ``[0.25, 0.75, 0.75, 0.25]`` with itself.
    """
    taps = bilinear_taps(kernel_size)  # (k,) float64
    return torch.outer(taps, taps).float()  # (k, k)


def bilinear_taps(kernel_size: int) -> torch.Tensor:
    """The 1D profile ``1 - |i - center| / factor`` whose outer product is :func:`bilinear_kernel_2d`.

    Shape:
        (kernel_size,) float64; e.g. ``[0.25, 0.75, 0.75, 0.25]`` for ``k = 4``.
    """
    if int(kernel_size) != kernel_size or kernel_size < 1:
        raise ValueError(f"kernel_size must be an integer >= 1; got {kernel_size!r}.")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    return 1 - torch.abs(torch.arange(kernel_size, dtype=torch.float64) - center) / factor


def bilinear_weight(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """A channel-diagonal ``nn.ConvTranspose2d`` weight that upsamples every channel bilinearly.

    Channel ``c`` is interpolated from channel ``c`` alone: ``weight[c, c]`` is
    :func:`bilinear_kernel_2d` and every other kernel is zero, as FCN's ``surgery.interp``
    sets it up. Copy it into a layer with ``layer.weight.data.copy_(bilinear_weight(...))``.

    Args:
        in_channels: input channels; must equal ``out_channels``.
        out_channels: output channels.
        kernel_size: side of the square kernel.

    Shape:
        (in_channels, out_channels, kernel_size, kernel_size) float32.
    """
    if in_channels != out_channels:
        raise ValueError(f"a bilinear upsampler maps each channel to itself, so in_channels ({in_channels}) "
                         f"must equal out_channels ({out_channels}).")
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    channels = torch.arange(in_channels)
    weight[channels, channels] = bilinear_kernel_2d(kernel_size)
    return weight


def checkerboard_images(seed: int = 0, size: int = 32, channels: int = 8) -> dict[str, np.ndarray]:
    """Upsample one smooth feature map x2 in four ways and return channel 0 of each result.

    The input is ``channels`` smooth, positive fields of (size/2, size/2) pixels, like
    feature maps after a ReLU. The layers are freshly initialised with PyTorch's default
    (random) initialisation, as at the start of training (Odena et al. 2016):

    - ``"transposed_k3"``: ``ConvTranspose2d(kernel_size=3, stride=2, padding=1,
      output_padding=1)``. 3 is not a multiple of 2, so even output pixels get one kernel tap
      per axis and odd pixels two: a checkerboard.
    - ``"transposed_k4"``: ``kernel_size=4, stride=2, padding=1``. Every pixel gets two taps
      per axis, but from different random weights, so a checkerboard remains.
    - ``"bilinear_k4"``: the same layer with :func:`bilinear_weight`; smooth.
    - ``"resize_conv"``: nearest-neighbour x2 resize, then a random 3x3 conv with padding 1
      (the fix the Distill article recommends); smooth.

    Also ``"input"``: channel 0 of the input, (size/2, size/2).

    Args:
        seed: seeds the input and the layers' initialisation (the global torch RNG is left as it was).
        size: output side in pixels (even, >= 4).
        channels: channels of the feature map and of every layer.

    Returns:
        ``{name: (size, size) float32 array}``.
    """
    if size % 2 or size < 4:
        raise ValueError(f"size must be even and >= 4; got {size}.")
    half = size // 2
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        coarse = torch.rand(1, channels, 4, 4)
        x = 0.5 + F.interpolate(coarse, size=(half, half), mode="bicubic", align_corners=True)  # (1, C, S/2, S/2)
        x = x.clamp_min(0.0)
        transposed_k3 = nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1)
        transposed_k4 = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
        resize_conv = nn.Conv2d(channels, channels, 3, padding=1)
        bilinear_k4 = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)
        bilinear_k4.weight.copy_(bilinear_weight(channels, channels, 4))
        outputs = {
            "input": x,
            "transposed_k3": transposed_k3(x),  # (1, C, S, S)
            "transposed_k4": transposed_k4(x),
            "bilinear_k4": bilinear_k4(x),
            "resize_conv": resize_conv(F.interpolate(x, scale_factor=2, mode="nearest")),
        }
    return {name: y[0, 0].numpy().astype(np.float32) for name, y in outputs.items()}


def checkerboard_strength(image: Union[np.ndarray, torch.Tensor]) -> float:
    """The fraction of an image's variance explained by a pattern that repeats every 2 pixels.

    Split the image into its four 2x2 phases, ``image[p::2, q::2]`` for ``p, q`` in {0, 1}.
    A stride-2 checkerboard makes the phases differ in brightness; a smooth image has four
    nearly equal phase means. The score is the variance of the four phase means divided by
    the variance of the image, in [0, 1] (the between-group share of the variance). It
    equals the energy of the 2D DFT at the three Nyquist frequencies (pi, 0), (0, pi),
    (pi, pi) over the energy at all frequencies but (0, 0). Odd sizes lose their last row or
    column; a constant image scores 0. It sees a checkerboard whose phase is the same across
    the image, as the stride-2 layers above produce on a positive input.

    Args:
        image: a 2D image (H, W), H and W >= 2.
    """
    array = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float64)
    if array.ndim != 2 or min(array.shape) < 2:
        raise ValueError(f"expected a 2D image of at least 2x2 pixels; got shape {array.shape}.")
    array = array[:array.shape[0] // 2 * 2, :array.shape[1] // 2 * 2]
    total = array.var()
    if total <= 1e-12 * max(float(np.mean(array ** 2)), 1e-300):
        return 0.0
    phase_means = np.array([array[p::2, q::2].mean() for p in (0, 1) for q in (0, 1)])  # (4,)
    return float(phase_means.var() / total)
