"""Adapters: other libraries' networks behind the model contract of :mod:`unet_lessons.models.base`.

A MONAI network may return something that is not one of the three output kinds, such as
``SegResNetVAE``'s ``(logits, vae_loss)``. Read as it is, that tuple would mean two
deep-supervision heads, and training would apply the segmentation loss to a scalar.
:class:`OutputAdapter` wraps such a module, declares the contract's attributes, and returns
the tuple as ``{"logits": ..., "aux_loss": ...}``.

Myronenko, "3D MRI brain tumor segmentation using autoencoder regularization", BrainLes 2018
(the VAE branch of SegResNetVAE; Section 2.3 weights its losses by 0.1).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from .base import SegmentationModel

__all__ = ["OutputAdapter"]


class OutputAdapter(SegmentationModel):
    """Wrap ``module`` so that the package's tools can use it: contract attributes, checked input, contract output.

    Args:
        module: the network; it returns logits, or a ``(logits, aux_loss)`` tuple whose
            ``aux_loss`` may be ``None`` (``SegResNetVAE`` in eval mode).
        spatial_dims: 2 or 3.
        in_channels: input channels of ``module``.
        out_channels: output channels (classes) of ``module``.
        depth: its number of 2x downsamplings; every axis must be a multiple of ``2**depth``.
        sizes: the only axis lengths it takes, when it has a fixed size (``SegResNetVAE``'s
            VAE branch reshapes to its ``input_image_size``); ``None``: any multiple.
        aux_weight: the weight of the auxiliary loss (the contract's ``aux_loss`` is weighted).

    Shape:
        (B, in_channels, *S) -> (B, out_channels, *S), or ``{"logits": ..., "aux_loss": ...}``
        when ``module`` returns an auxiliary loss.
    """

    def __init__(self, module: nn.Module, *, spatial_dims: int, in_channels: int, out_channels: int, depth: int,
                 sizes: Optional[Sequence[int]] = None, aux_weight: float = 1.0) -> None:
        super().__init__()
        self.module = module
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        self.depth, self.padding, self.aux_weight = depth, "same", aux_weight
        self.sizes = None if sizes is None else tuple(int(s) for s in sizes)

    def output_size(self, size: int) -> Optional[int]:
        """``size`` (kept) if it is a multiple of ``2**depth`` (and one of ``sizes``), else ``None``."""
        if size < 1 or size % 2**self.depth or (self.sizes is not None and size not in self.sizes):
            return None
        return size

    def size_rule(self) -> str:
        if self.sizes is not None:
            return f"The wrapped {type(self.module).__name__} takes only the axis lengths {sorted(set(self.sizes))}."
        return f"With {self.depth} downsamplings every axis must be a multiple of 2**{self.depth} = {2**self.depth}."

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, dict]:
        self.check_input(x)
        output = self.module(x)
        if isinstance(output, torch.Tensor):
            return output
        if isinstance(output, (tuple, list)) and len(output) == 2 and isinstance(output[0], torch.Tensor):
            logits, aux_loss = output
            if aux_loss is None:
                return logits
            return {"logits": logits, "aux_loss": self.aux_weight * aux_loss}
        raise TypeError(f"OutputAdapter reads logits or (logits, aux_loss) from {type(self.module).__name__}; got "
                        f"{type(output).__name__}. Subclass OutputAdapter and convert the output in forward.")
