"""Myronenko's autoencoder-regularised 3D network, the winner of BraTS 2018.

A. Myronenko, "3D MRI brain tumor segmentation using autoencoder regularization",
BrainLes 2018 (LNCS 11384), arXiv:1810.11654. Section 2 and Table 1:

* **encoder** (2.1): ResNet blocks in the pre-activation order (group norm with 8 groups,
  ReLU, 3×3×3 convolution, twice, plus the identity), 32 filters at first, doubling at each
  strided 3×3×3 convolution that halves the size; 1, 2, 2 and 4 blocks per level, so the
  endpoint is 8 times smaller than the input (256×20×24×16 for a 160×192×128 crop); spatial
  dropout after the initial convolution;
* **decoder** (2.2): per level a 1×1×1 convolution that halves the channels, 3D linear
  (trilinear) upsampling, the encoder's map **added**, one block; then a 1×1×1 convolution to
  the three nested tumour regions under a sigmoid;
* **VAE branch** (2.3, Table 1, used in training only): from the encoder endpoint, group norm,
  ReLU and a strided 3×3×3 convolution to 16 channels, a dense layer to 256 values (128
  means, 128 standard deviations), a sample drawn by the reparameterisation trick, a dense
  layer back to 16 channels at 1/16 of the input, a 1×1×1 convolution and upsampling, then
  the decoder's structure without the skips, ending in a 1×1×1 convolution to the input's
  channels: a reconstruction of the image;
* **loss** (2.4): L = L_dice + 0.1·L_L2 + 0.1·L_KL. The model computes the last two terms
  itself (:func:`vae_losses`) and returns them, weighted, as ``aux_loss``, so ``fit`` adds
  them to the segmentation loss (the model contract's dict output).

Where this differs from the paper, and why:

* ``L_L2`` is the *mean* squared error over the input's values. The paper writes the squared
  L2 norm ||I_input − I_pred||²₂, which read as a sum over the 4×160×192×128 values is
  ~10⁷ times larger than the Dice loss; MONAI's ``SegResNetVAE`` uses the mean as well.
* The standard deviations pass through a softplus to be positive, as in MONAI when it
  estimates them (reimplementations differ here).
* The dense layer fixes the VAE's input size, ``vae_input_size``. In training the model
  refuses other sizes with a message; in evaluation the branch is not run (the paper uses
  it for training only), so the network segments any size that is a multiple of 2**depth.

MONAI's ``SegResNet`` is this network without the VAE: :func:`copy_weights_from_monai`
loads its weights, and the outputs agree (``tests/test_myronenko.py``). Built step by step in
``notebooks/07_autoencoder_regularization.ipynb``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..blocks import ResidualBlock, SkipJoin, StridedDown, conv_type
from ..blocks.layers import LayerSpec, interpolation_mode, make_act, make_norm
from .base import SegmentationModel

__all__ = ["MyronenkoNet", "vae_losses", "kl_divergence", "myronenko_kl", "copy_weights_from_monai"]


def kl_divergence(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The textbook KL divergence KL(N(μ, σ²) ‖ N(0, 1)) of a diagonal Gaussian, per sample.

    ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1), summed over the latent axis (the last).
    """
    return 0.5 * (mean.pow(2) + std.pow(2) - torch.log(std.pow(2)) - 1).sum(-1)


def myronenko_kl(mean: torch.Tensor, std: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """The paper's L_KL (Section 2.4), averaged over the batch: (1/N) Σ (μ² + σ² − log σ² − 1).

    N is the number of image voxels. There is no ½, so it is 2·KL/N of :func:`kl_divergence`.
    """
    return (2 * kl_divergence(mean, std) / num_voxels).mean()


def vae_losses(image: torch.Tensor, reconstruction: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_L2, L_KL)`` of Section 2.4: the mean squared reconstruction error and the paper's KL term."""
    num_voxels = math.prod(image.shape[2:])
    return F.mse_loss(reconstruction, image), myronenko_kl(mean, std, num_voxels)


def _as_size(size: Union[int, Sequence[int]], spatial_dims: int) -> tuple[int, ...]:
    size = (int(size),) * spatial_dims if isinstance(size, int) else tuple(int(s) for s in size)
    if len(size) != spatial_dims:
        raise ValueError(f"vae_input_size needs one length per spatial axis ({spatial_dims}); got {size}.")
    return size


class _Upsize(nn.Sequential):
    """Myronenko's "upsizing": a 1×1×1 convolution to ``out_channels`` (no bias), then linear upsampling ×2."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int,
                 size: Optional[tuple[int, ...]] = None) -> None:
        super().__init__(OrderedDict(
            conv=conv_type(spatial_dims)(in_channels, out_channels, kernel_size=1, bias=False),
            # A fixed target size only where the VAE starts from an odd-sized map; ×2 everywhere else.
            upsample=(nn.Upsample(size=size, mode=interpolation_mode(spatial_dims), align_corners=False) if size
                      else nn.Upsample(scale_factor=2, mode=interpolation_mode(spatial_dims), align_corners=False)),
        ))


class MyronenkoNet(SegmentationModel):
    """Myronenko (2018): a residual encoder, an additive decoder and, in training, a VAE that redraws the input.

    Args:
        in_channels: input channels (4 MRI modalities).
        out_channels: 3 nested regions under sigmoid (the paper).
        spatial_dims: 3 (the paper) or 2.
        width: filters of the first level (32 in the paper), doubling per level.
        blocks_down: residual blocks per encoder level (1, 2, 2, 4); ``len - 1`` downsamplings.
        blocks_up: blocks per decoder level, bottom up (1, 1, 1).
        norm: ``"group"`` (8 groups, fewer when a level has fewer channels), or another norm.
        dropout: spatial dropout after the initial convolution; 0.2, the rate of the Keras
            reimplementation we read (not checked against the paper's text).
        vae_input_size: the input size the VAE branch is built for (its dense layers fix it),
            e.g. ``(160, 192, 128)``; ``None`` builds the network without the VAE (MONAI's ``SegResNet``).
        latent_size: the dimension of the latent vector (128 in the paper).
        vae_width: channels of the VAE's reduced map before the dense layer (16).
        l2_weight, kl_weight: the weights of L_L2 and L_KL in the total loss (0.1 and 0.1).
        final_norm_act: put group norm and ReLU before the final 1×1×1 convolution, as MONAI does
            (the paper's Table 1 has none).

    Shape:
        (B, in_channels, *S) -> logits (B, out_channels, *S), each side a multiple of 2**depth.
        In training with the VAE: ``{"logits", "aux_loss", "reconstruction", "l2_loss", "kl_loss"}``,
        with ``aux_loss = l2_weight · l2_loss + kl_weight · kl_loss``.
    """

    skip_join = "add"
    argument_aliases = {"base_features": "width", "init_filters": "width"}
    example_arguments = ({}, {"vae_input_size": 8, "blocks_down": (1, 1, 1, 2), "final_norm_act": True})

    def __init__(self, in_channels: int = 4, out_channels: int = 3, *, spatial_dims: int = 3, width: int = 32,
                 blocks_down: Sequence[int] = (1, 2, 2, 4), blocks_up: Sequence[int] = (1, 1, 1),
                 norm: LayerSpec = "group", dropout: float = 0.2,
                 vae_input_size: Optional[Union[int, Sequence[int]]] = None, latent_size: int = 128,
                 vae_width: int = 16, l2_weight: float = 0.1, kl_weight: float = 0.1,
                 final_norm_act: bool = False) -> None:
        super().__init__()
        blocks_down, blocks_up = tuple(int(b) for b in blocks_down), tuple(int(b) for b in blocks_up)
        if len(blocks_down) < 2 or len(blocks_up) != len(blocks_down) - 1 or min(blocks_down + blocks_up) < 1:
            raise ValueError(f"need at least two encoder levels, one decoder level fewer and a block in each; got "
                             f"blocks_down={blocks_down}, blocks_up={blocks_up}.")
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        self.padding, self.depth = "same", len(blocks_down) - 1
        self.features = tuple(width * 2**level for level in range(self.depth + 1))
        self.l2_weight, self.kl_weight = l2_weight, kl_weight
        self._block = dict(spatial_dims=spatial_dims, norm=norm, act="relu", order="norm_act_conv", bias=False)
        conv = conv_type(spatial_dims)

        self.init_conv = conv(in_channels, width, kernel_size=3, padding=1, bias=False)
        dropout_type = nn.Dropout2d if spatial_dims == 2 else nn.Dropout3d
        self.dropout = dropout_type(dropout) if dropout > 0 else nn.Identity()
        self.encoder = nn.ModuleList()
        for level, count in enumerate(blocks_down):
            stage = nn.Sequential()
            if level > 0:
                stage.add_module("down", StridedDown(self.features[level - 1], self.features[level],
                                                     spatial_dims=spatial_dims, kernel_size=3, bias=False))
            for i in range(count):
                stage.add_module(f"block{i + 1}", ResidualBlock(self.features[level], self.features[level],
                                                                **self._block))
            self.encoder.append(stage)
        self.ups, self.decoder = self._decoder_levels(blocks_up)
        self.joins = nn.ModuleList(SkipJoin("add") for _ in blocks_up)  # added, not concatenated (Fig. 1)
        self.head = nn.Sequential()
        if final_norm_act:
            self.head.add_module("norm", make_norm(norm, width, spatial_dims))
            self.head.add_module("act", make_act("relu"))
        self.head.add_module("conv", conv(width, out_channels, kernel_size=1, bias=True))

        self.vae_input_size = None if vae_input_size is None else _as_size(vae_input_size, spatial_dims)
        if self.vae_input_size is not None:
            self._build_vae(latent_size, vae_width, norm, blocks_up)

    def _decoder_levels(self, blocks_up: tuple[int, ...]) -> tuple[nn.ModuleList, nn.ModuleList]:
        """Per decoder level, bottom up: the upsizing (1×1×1 conv, ×2) and its residual blocks. The
        segmentation decoder and the VAE's have this structure; only the segmentation one adds skips."""
        ups, levels = nn.ModuleList(), nn.ModuleList()
        for level, count in zip(reversed(range(self.depth)), blocks_up):
            ups.append(_Upsize(self.features[level + 1], self.features[level], self.spatial_dims))
            levels.append(nn.Sequential(*[ResidualBlock(self.features[level], self.features[level], **self._block)
                                          for _ in range(count)]))
        return ups, levels

    def _build_vae(self, latent_size: int, vae_width: int, norm: LayerSpec, blocks_up: tuple[int, ...]) -> None:
        """Table 1's VD, VDraw, VU, VUp and VBlock layers and Vend."""
        dims, bottom = self.spatial_dims, self.features[-1]
        if any(s % 2**self.depth for s in self.vae_input_size):
            raise ValueError(f"vae_input_size {self.vae_input_size} must be a multiple of 2**{self.depth} = "
                             f"{2**self.depth} on every axis, like every input of this network.")
        self.latent_size = latent_size
        self.bottom_size = tuple(s // 2**self.depth for s in self.vae_input_size)  # encoder endpoint (20×24×16)
        self.vae_map_size = tuple(math.ceil(s / 2) for s in self.bottom_size)  # after VD's strided conv (10×12×8)
        flat = vae_width * math.prod(self.vae_map_size)
        self.vae_down = nn.Sequential(OrderedDict(
            norm=make_norm(norm, bottom, dims), act=nn.ReLU(),
            conv=conv_type(dims)(bottom, vae_width, kernel_size=3, stride=2, padding=1, bias=True)))
        self.vae_encode = nn.Linear(flat, 2 * latent_size)  # 128 means and 128 (pre-softplus) standard deviations
        self.vae_expand = nn.Linear(latent_size, flat)
        self.vae_act = nn.ReLU()
        exact = None if all(2 * s == b for s, b in zip(self.vae_map_size, self.bottom_size)) else self.bottom_size
        self.vae_up = _Upsize(vae_width, bottom, dims, size=exact)
        self.vae_ups, self.vae_blocks = self._decoder_levels(blocks_up)
        self.vae_end = conv_type(dims)(self.features[0], self.in_channels, kernel_size=1, bias=True)

    # ----- sizes ---------------------------------------------------------------------------
    def output_size(self, size: int) -> Optional[int]:
        """``size`` (kept) if it is a multiple of ``2**depth``, else ``None``. In training the VAE
        branch takes only ``vae_input_size``; :meth:`forward` says so."""
        return size if size > 0 and size % 2**self.depth == 0 else None

    def size_rule(self) -> str:
        return (f"{self.depth} stride-2 convolutions need every axis to be a multiple of 2**{self.depth} = "
                f"{2**self.depth}, so that each upsampled map meets the encoder map it is added to.")

    def _check_vae_size(self, x: torch.Tensor) -> None:
        size = tuple(x.shape[2:])
        if size != self.vae_input_size:
            built = "×".join(map(str, self.vae_input_size))
            raise ValueError(
                f"MyronenkoNet's VAE branch was built for inputs of {built} (vae_input_size): its dense layer reads "
                f"the {'×'.join(map(str, self.vae_map_size))} map that size gives; got {'×'.join(map(str, size))}. "
                f"Train on {built} patches, build the model with vae_input_size={size}, or call model.eval() to "
                f"segment any size that is a multiple of {2**self.depth} (the VAE runs only in training).")

    # ----- forward -------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Every stage's output: ``enc0`` … ``enc{depth-1}``, ``bottleneck``, ``dec{depth-1}`` … ``dec0``,
        ``logits``."""
        self.check_input(x)
        return self._features(x)

    def _features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """:meth:`forward_features` on an input already checked."""
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        h = self.dropout(self.init_conv(x))  # (B, F0, *S)
        for level, stage in enumerate(self.encoder):
            h = stage(h)  # (B, F_level, *S / 2**level)
            feats["bottleneck" if level == self.depth else f"enc{level}"] = h
        for level, up, join, blocks in zip(reversed(range(self.depth)), self.ups, self.joins, self.decoder):
            h = blocks(join(feats[f"enc{level}"], up(h)))  # added, not concatenated: (B, F_level, *S / 2**level)
            feats[f"dec{level}"] = h
        feats["logits"] = self.head(h)  # (B, out_channels, *S)
        return feats

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, dict]:
        """Logits; in training with the VAE, a dict that also holds the weighted VAE loss and the reconstruction."""
        self.check_input(x)
        with_vae = self.vae_input_size is not None and self.training
        if with_vae:
            self._check_vae_size(x)
        feats = self._features(x)
        if not with_vae:
            return feats["logits"]
        mean, std = self.encode(feats["bottleneck"])
        z = mean + std * torch.randn_like(std)  # the reparameterisation trick: the noise carries no gradient
        reconstruction = self.decode(z)
        l2, kl = vae_losses(x, reconstruction, mean, std)
        return {"logits": feats["logits"], "aux_loss": self.l2_weight * l2 + self.kl_weight * kl,
                "reconstruction": reconstruction, "l2_loss": l2.detach(), "kl_loss": kl.detach()}

    # ----- the VAE ------------------------------------------------------------------------
    def _require_vae(self) -> None:
        if self.vae_input_size is None:
            raise ValueError("this MyronenkoNet has no VAE branch; build it with vae_input_size=(D, H, W).")

    def encode(self, bottleneck: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder endpoint (B, F_depth, *S/2**depth) -> means and standard deviations (B, latent_size) each."""
        self._require_vae()
        flat = self.vae_encode(self.vae_down(bottleneck).flatten(1))  # (B, 2·latent)
        mean, raw_std = flat.chunk(2, dim=1)
        return mean, F.softplus(raw_std) + 1e-6  # positive, never exactly 0 (log σ² in L_KL)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent vectors (B, latent_size) -> images (B, in_channels, *vae_input_size)."""
        self._require_vae()
        h = self.vae_act(self.vae_expand(z)).view(-1, self.vae_up.conv.in_channels, *self.vae_map_size)
        h = self.vae_up(h)  # (B, F_depth, *bottom_size)
        for up, blocks in zip(self.vae_ups, self.vae_blocks):
            h = blocks(up(h))  # the decoder's structure without the skips
        return self.vae_end(h)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, sample: bool = False) -> dict:
        """The VAE's view of ``x`` (any mode): ``{"reconstruction", "mean", "std"}``, decoded from the mean
        (``sample=False``, deterministic) or from a sample."""
        self._require_vae()
        self.check_input(x)
        self._check_vae_size(x)
        was_training = self.training
        self.eval()
        try:
            mean, std = self.encode(self._features(x)["bottleneck"])
            z = mean + std * torch.randn_like(std) if sample else mean
            return {"reconstruction": self.decode(z), "mean": mean, "std": std}
        finally:
            self.train(was_training)

    # ----- the layers, stage by stage ---------------------------------------------------------
    def stage_modules(self) -> "OrderedDict[str, list[nn.Module]]":
        """The segmentation path's modules per stage (the VAE branch is not on it)."""
        stages: OrderedDict[str, list[nn.Module]] = OrderedDict(enc0=[self.init_conv, self.encoder[0]])
        for level in range(1, self.depth + 1):
            stages["bottleneck" if level == self.depth else f"enc{level}"] = [self.encoder[level]]
        for level, up, join, blocks in zip(reversed(range(self.depth)), self.ups, self.joins, self.decoder):
            stages[f"dec{level}"] = [up, join, blocks]
        stages["logits"] = [self.head]
        return stages


def copy_weights_from_monai(model: MyronenkoNet, monai_model: nn.Module) -> MyronenkoNet:
    """Load the weights of MONAI's ``SegResNet`` (built alike, ``final_norm_act=True``) into ``model``.

    MONAI names the same layers differently (``convInit``, ``down_layers``, ``up_samples``,
    ``up_layers``, ``conv_final``; a block's ``norm1, conv1, norm2, conv2``), so the copy goes
    module by module; every shape must match.

    Raises:
        ValueError: naming the first pair of layers whose shapes differ.
    """
    pairs = [(model.init_conv, monai_model.convInit.conv)]

    def blocks(ours: nn.Sequential, theirs: nn.Sequential) -> None:
        our_blocks = [m for m in ours if isinstance(m, ResidualBlock)]
        their_blocks = [m for m in theirs if type(m).__name__ == "ResBlock"]
        if len(our_blocks) != len(their_blocks):
            raise ValueError(f"{len(our_blocks)} blocks here, {len(their_blocks)} in MONAI's model: build them alike.")
        for a, b in zip(our_blocks, their_blocks):
            pairs.extend([(a.body.unit1.norm, b.norm1), (a.body.unit1.conv, b.conv1.conv),
                          (a.body.unit2.norm, b.norm2), (a.body.unit2.conv, b.conv2.conv)])

    for level, (ours, theirs) in enumerate(zip(model.encoder, monai_model.down_layers)):
        if level > 0:
            pairs.append((ours.down.conv, theirs[0].conv))
        blocks(ours, theirs)
    for up, theirs in zip(model.ups, monai_model.up_samples):
        pairs.append((up.conv, theirs[0].conv))
    for ours, theirs in zip(model.decoder, monai_model.up_layers):
        blocks(ours, theirs)
    head = list(model.head)
    pairs.extend([(head[0], monai_model.conv_final[0]), (head[-1], monai_model.conv_final[2].conv)]
                 if len(head) == 3 else [(head[-1], monai_model.conv_final[2].conv)])
    with torch.no_grad():
        for ours, theirs in pairs:
            for name, parameter in ours.named_parameters():
                source = getattr(theirs, name)
                if parameter.shape != source.shape:
                    raise ValueError(f"{type(ours).__name__}.{name} has shape {tuple(parameter.shape)} here and "
                                     f"{tuple(source.shape)} in MONAI's model: build both with the same sizes.")
                parameter.copy_(source)
    return model
