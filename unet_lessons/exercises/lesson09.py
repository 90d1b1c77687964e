"""Reference solutions of lesson 09 (3D U²-Net), checked by :func:`unet_lessons.exercises.check_exercise`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from . import register


@register("lesson09.separable_parameters", task="separable_parameters(c_in, c_out, kernel, dims) -> (full, separable): "
          "the parameters, biases included, of a full kernel**dims convolution from c_in to c_out channels and of a "
          "depthwise-then-pointwise convolution doing the same job (a tuple of two ints).",
          cases=lambda rng: [{"c_in": 1, "c_out": 16, "kernel": 3, "dims": 3}, {"c_in": 64, "c_out": 64, "kernel": 3, "dims": 3},
                             {"c_in": 32, "c_out": 8, "kernel": 5, "dims": 2},
                             {"c_in": int(rng.integers(1, 200)), "c_out": int(rng.integers(1, 200)), "kernel": 3, "dims": 3}],
          hint="count each convolution as (kernel entries per filter) × (filters) + (one bias per filter): a full "
               "filter reads every input channel, a depthwise filter reads one, a pointwise filter is 1×1(×1) over all "
               "of them. Section 1.1's table has the measured counts to compare with.")
def separable_parameters(c_in: int, c_out: int, kernel: int, dims: int) -> tuple:
    entries = kernel**dims
    full = entries * c_in * c_out + c_out
    separable = (entries * c_in + c_in) + (c_in * c_out + c_out)
    return full, separable


def _kernel_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for c_in, c_out, dims in ((3, 5, 3), (4, 2, 2), (6, 6, 3)):
        generator = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
        cases.append({"depthwise_weight": torch.randn(c_in, 1, *[3] * dims, generator=generator),
                      "pointwise_weight": torch.randn(c_out, c_in, *[1] * dims, generator=generator)})
    return cases


@register("lesson09.full_kernel", task="full_kernel(depthwise_weight, pointwise_weight) -> the weight (C_out, C_in, k, ...) "
          "of the full convolution that equals a depthwise convolution followed by a pointwise one (no biases).",
          cases=_kernel_cases,
          hint="write what one output value of the two steps is as a sum over input channels and kernel positions, "
               "and read off the weight that multiplies input channel i at each position: it is a product of one "
               "pointwise weight and one depthwise kernel. Mind the shapes: (C_in, 1, k, ...) and (C_out, C_in, 1, ...).")
def full_kernel(depthwise_weight: torch.Tensor, pointwise_weight: torch.Tensor) -> torch.Tensor:
    c_out, c_in = pointwise_weight.shape[:2]
    point = pointwise_weight.reshape(c_out, c_in, *[1] * (depthwise_weight.dim() - 2))
    return point * depthwise_weight[:, 0].unsqueeze(0)


def _unit_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for c_in, c_out, side in ((3, 4, 6), (5, 2, 8)):
        torch.manual_seed(int(rng.integers(1 << 30)))
        depthwise = nn.Conv3d(c_in, c_in, 3, padding=1, groups=c_in)
        inner_norm, outer_norm = nn.InstanceNorm3d(c_in, affine=True), nn.InstanceNorm3d(c_out, affine=True)
        pointwise = nn.Conv3d(c_in, c_out, 1)
        with torch.no_grad():  # norms away from the identity, so that every step shows in the output
            for norm in (inner_norm, outer_norm):
                norm.weight.copy_(0.5 + torch.rand_like(norm.weight))
                norm.bias.copy_(torch.randn_like(norm.bias))
        cases.append({"x": torch.randn(2, c_in, side, side, side), "depthwise": depthwise, "inner_norm": inner_norm,
                      "pointwise": pointwise, "outer_norm": outer_norm})
    return cases


@register("lesson09.adapter_unit", task="adapter_unit(x, depthwise, inner_norm, pointwise, outer_norm) -> the output of "
          "one separable unit of the universal model for one domain, in the order of the authors' conv_unit.",
          cases=_unit_cases,
          hint="follow conv_unit's forward in models/u2net3d.py and the dwise module it calls: which layers run "
               "before the shared pointwise convolution, which after, and where the activation is (LeakyReLU, slope "
               "0.01, from norm_act). The unit ends with a norm, not an activation.")
def adapter_unit(x: torch.Tensor, depthwise: nn.Module, inner_norm: nn.Module, pointwise: nn.Module,
                 outer_norm: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return outer_norm(pointwise(nn.functional.leaky_relu(inner_norm(depthwise(x)), 0.01)))
