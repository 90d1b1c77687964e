"""Reference solutions of lesson 07 (Myronenko's autoencoder regularisation), checked by
:func:`unet_lessons.exercises.check_exercise`."""

from __future__ import annotations

import math

import numpy as np
import torch

from . import register


def _gaussian_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for batch, latent in ((1, 4), (3, 16), (2, 128)):
        mean = torch.from_numpy(rng.normal(size=(batch, latent)))
        std = torch.from_numpy(rng.uniform(0.2, 2.0, size=(batch, latent)))
        cases.append({"mean": mean, "std": std})
    cases.append({"mean": torch.zeros(2, 8, dtype=torch.float64), "std": torch.ones(2, 8, dtype=torch.float64)})
    return cases


@register("lesson07.kl_divergence", task="kl_divergence(mean, std) -> the KL divergence KL(N(mean, std²) ‖ N(0, 1)) "
          "of a diagonal Gaussian, one value per sample: a tensor (B,) for (B, latent) inputs.",
          cases=_gaussian_cases,
          hint="per latent dimension the divergence is ½(μ² + σ² − log σ² − 1); sum it over the latent axis "
               "(the last), not over the batch. It is 0 exactly when μ = 0 and σ = 1.")
def kl_divergence(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mean.pow(2) + std.pow(2) - torch.log(std.pow(2)) - 1).sum(-1)


def _vae_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for batch, channels, side, latent in ((1, 4, 4, 8), (2, 4, 6, 16), (2, 1, 8, 4)):
        image = torch.from_numpy(rng.normal(size=(batch, channels, side, side, side)))
        reconstruction = image + torch.from_numpy(rng.normal(scale=0.5, size=image.shape))
        mean = torch.from_numpy(rng.normal(size=(batch, latent)))
        std = torch.from_numpy(rng.uniform(0.3, 1.5, size=(batch, latent)))
        cases.append({"image": image, "reconstruction": reconstruction, "mean": mean, "std": std})
    return cases


@register("lesson07.vae_loss", task="vae_loss(image, reconstruction, mean, std) -> the VAE part of Myronenko's loss, "
          "0.1·L_L2 + 0.1·L_KL (a scalar tensor): L_L2 the mean squared error of the reconstruction, L_KL the paper's "
          "(1/N)·Σ(μ² + σ² − log σ² − 1) with N the voxels of one image (its spatial size), averaged over the batch.",
          cases=_vae_cases,
          hint="L_L2 is ((reconstruction − image)²).mean(). For L_KL sum μ² + σ² − log σ² − 1 over the latent axis "
               "(no ½), divide by N = the product of the image's spatial sizes (not its channels, not the batch), "
               "then average over the batch. Weight both terms by 0.1.")
def vae_loss(image: torch.Tensor, reconstruction: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    l2 = (reconstruction - image).pow(2).mean()
    voxels = math.prod(image.shape[2:])
    kl = ((mean.pow(2) + std.pow(2) - torch.log(std.pow(2)) - 1).sum(-1) / voxels).mean()
    return 0.1 * l2 + 0.1 * kl


def _size_cases(rng: np.random.Generator) -> list[dict]:
    return [{"input_size": (160, 192, 128), "depth": 3, "vae_width": 16},
            {"input_size": (32, 32, 32), "depth": 3, "vae_width": 16},
            {"input_size": tuple(int(s) for s in rng.choice([16, 48, 64, 96], size=3)), "depth": 3, "vae_width": 8},
            {"input_size": (64, 36), "depth": 2, "vae_width": 4}]   # an odd endpoint (9): VD rounds it up


@register("lesson07.dense_inputs", task="dense_inputs(input_size, depth, vae_width) -> the number of values the VAE's "
          "first dense layer reads (an int): the encoder endpoint is input_size / 2**depth on every axis, and VD's "
          "stride-2 convolution (padding 1) to vae_width channels halves it again, rounding up.",
          cases=_size_cases,
          hint="follow one axis: s → s // 2**depth (the endpoint: 20 for 160 at depth 3) → half of that, rounded up "
               "(10). Then multiply the lengths of all the axes and the channels.")
def dense_inputs(input_size, depth: int, vae_width: int) -> int:
    return vae_width * math.prod(math.ceil(s // 2**depth / 2) for s in input_size)
