"""Training batches: random patches of random samples, augmented, normalised.

The U-Net paper trained on large tiles cut from 30 images, one tile per step, with
heavy augmentation (Ronneberger et al. 2015, Sections 3 and 3.1). :class:`PatchSampler`
does the same for any stack of 2D images or 3D volumes: an endless, reproducible stream
of ``(x, y)`` batches that :func:`unet_lessons.train.fit` consumes directly.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from ..targets import labels_to_regions
from ..utils import mirror_pad
from .augment import elastic_deform, random_flip_rotate

__all__ = ["PatchSampler"]

ArrayLike = Union[np.ndarray, torch.Tensor]


def _as_tensor(array: ArrayLike) -> torch.Tensor:
    return array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))


def _random_states(transform, seen: Optional[set] = None) -> list[np.random.RandomState]:
    """Every random state of a (MONAI) transform, in a fixed order: its own, those of the transforms it
    composes, and those of the transforms it holds (``RandScaleIntensityd`` draws its factor from its
    inner ``scaler``'s state, not its own), each once."""
    if transform is None:
        return []
    seen = set() if seen is None else seen
    seen.add(id(transform))
    states = []
    for value in vars(transform).values():
        inner = value if isinstance(value, (list, tuple)) else [value]
        for item in inner:
            if id(item) in seen:
                continue
            if isinstance(item, np.random.RandomState):
                seen.add(id(item))
                states.append(item)
            elif hasattr(item, "set_random_state") or hasattr(item, "transforms"):  # a transform, or a chain of them
                states += _random_states(item, seen)
    return states


class PatchSampler:
    """An endless, seeded stream of random (augmented) training patches.

    Each batch: ``batch_size`` samples chosen at random (with replacement), one random
    crop of ``patch_size`` from each, then, if ``augment``, :func:`random_flip_rotate`
    and :func:`elastic_deform`, and finally the normalisation ``(x - mean) / std``.

    With elastic deformation the crop takes ``2 * elastic_sigma`` extra pixels of context
    on every side (mirrored beyond the image border), and the patch is cut from the
    centre after deforming: the displacement pulls in real neighbouring tissue instead of
    reflecting the patch's own edge.

    Args:
        images: (N, *S) single-channel or (N, C, *S) images, 2D or 3D, numpy or torch.
        labels: (N, *S) class indices.
        patch_size: crop size, an int for every axis or one value per spatial axis.
        batch_size: patches per batch.
        augment: apply random flips/rotations and elastic deformation.
        elastic_sigma: displacement std of the elastic deformation in pixels (the paper:
            10); 0 turns it off while keeping flips and rotations.
        seed: seeds the sampler's own ``torch.Generator``: two samplers with the same
            seed and data give identical batches.
        mean: normalisation mean; default: the mean of ``images``, computed once.
        std: normalisation standard deviation; default: the std of ``images``.
        foreground: probability that a patch is placed around a random foreground voxel
            (label > 0) instead of anywhere. nnU-Net forces a third of its patches this way
            (Isensee et al. 2021), so that small structures are seen often enough; 0 samples
            uniformly, as the U-Net paper did.
        transform: instead of (or after) ``augment``, a callable applied to each patch as a
            MONAI-style dict ``{"image": (C, *P), "label": (1, *P)}``, e.g. a ``monai.transforms.Compose``
            of dictionary transforms; a MONAI transform is seeded from ``seed`` once, here.
        regions: yield region targets instead of class labels: for each region (a list of
            classes, e.g. ``unet_lessons.targets.BRATS_REGION_CLASSES``) one binary channel,
            y (B, R, *P) float32, for sigmoid outputs and region losses.
        weights: a per-pixel loss weight for every sample, (N, *S), e.g. the U-Net paper's border
            weight map (:func:`unet_lessons.losses.unet_weight_map`), computed once on the whole
            label as the paper does. It is cropped, flipped, rotated and elastically deformed with
            its image (interpolated like the image), and the sampler then yields dicts
            ``{"image": x, "label": y, "weight": w}``: :func:`~unet_lessons.train.fit` hands
            ``weight`` to a loss that takes it (:class:`~unet_lessons.losses.WeightedCrossEntropy`).

    Attributes:
        mean, std: the normalisation used; apply it to evaluation images with
            :meth:`normalize`.

    Shape:
        yields x (B, C, *P) float32 and y (B, *P) int64, P = ``patch_size``; with ``weights``, the
        dict ``{"image": x, "label": y, "weight": w}``, w (B, *P) float32.

    Example:
        >>> sampler = PatchSampler(images, labels, patch_size=128, batch_size=8)
        >>> x, y = next(sampler)
    """

    def __init__(
        self,
        images: ArrayLike,
        labels: ArrayLike,
        patch_size: Union[int, Sequence[int]],
        batch_size: int,
        *,
        augment: bool = True,
        elastic_sigma: float = 10.0,
        seed: int = 0,
        mean: Optional[float] = None,
        std: Optional[float] = None,
        foreground: float = 0.0,
        transform: Optional[Callable[[dict], dict]] = None,
        regions: Optional[Sequence[Sequence[int]]] = None,
        weights: Optional[ArrayLike] = None,
    ) -> None:
        images, labels = _as_tensor(images), _as_tensor(labels)
        spatial_dims = labels.ndim - 1
        if spatial_dims not in (2, 3):
            raise ValueError(f"labels must be (N, H, W) or (N, D, H, W); got shape {tuple(labels.shape)}.")
        if images.ndim == labels.ndim:
            images = images.unsqueeze(1)  # (N, 1, *S): single channel
        if images.ndim != labels.ndim + 1 or images.shape[:1] + images.shape[2:] != labels.shape:
            raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} disagree: expected "
                             f"images (N, *S) or (N, C, *S) and labels (N, *S) with the same N and S.")
        if len(labels) == 0:
            raise ValueError("images and labels are empty.")
        if labels.is_floating_point() or labels.is_complex():
            raise ValueError(f"labels must hold integer class indices; got dtype {labels.dtype}.")
        sizes = tuple(labels.shape[1:])
        patch = ((int(patch_size),) * spatial_dims if isinstance(patch_size, (int, np.integer))
                 else tuple(int(p) for p in patch_size))
        if len(patch) != spatial_dims or any(p < 1 for p in patch):
            raise ValueError(f"patch_size must be a positive int or {spatial_dims} positive ints; got {patch_size!r}.")
        if any(p > n for p, n in zip(patch, sizes)):
            raise ValueError(f"patch_size {patch} exceeds the image size {sizes}; use a smaller patch "
                             f"(or pad the images first).")
        if not 0.0 <= foreground <= 1.0:
            raise ValueError(f"foreground is a probability in [0, 1]; got {foreground}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        if weights is not None:
            weights = _as_tensor(weights)
            if tuple(weights.shape) != tuple(labels.shape):
                raise ValueError(f"weights {tuple(weights.shape)} must have the labels' shape {tuple(labels.shape)}: "
                                 "one weight per pixel of every sample.")
            if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
                raise ValueError("weights must be finite and non-negative (a loss weight per pixel).")
            if transform is not None:
                raise ValueError("weights cannot be combined with transform: a MONAI transform would move the "
                                 "image and label without the weights. Use augment=True instead.")

        self.images = images.float()  # (N, C, *S); a no-copy view when already float32
        self.labels = labels.long()  # (N, *S)
        self.patch_size, self.batch_size, self.spatial_dims = patch, batch_size, spatial_dims
        self.augment, self.elastic_sigma, self.seed = augment, elastic_sigma, seed
        self.mean = float(self.images.mean()) if mean is None else float(mean)
        self.std = float(self.images.std(correction=0)) if std is None else float(std)
        if not self.std > 0:
            raise ValueError(f"std must be > 0; got {self.std} (constant images? pass std=1.0).")
        # Context for the elastic deformation, stored pre-padded so every crop is one slice.
        self.margin = min(int(np.ceil(2 * elastic_sigma)), min(sizes) - 1) if augment and elastic_sigma > 0 else 0
        margins = [(self.margin, self.margin)] * len(sizes)
        self._padded_images = mirror_pad(self.images, margins, first_axis=2) if self.margin else self.images
        self._padded_labels = mirror_pad(self.labels, margins, first_axis=1) if self.margin else self.labels
        self._weights = None if weights is None else weights.float()[:, None]  # (N, 1, *S): moved as an image channel
        self._padded_weights = (mirror_pad(self._weights, margins, first_axis=2) if self.margin and weights is not None
                                else self._weights)
        if weights is not None:
            # Public only when given: the stored benchmarks describe a sampler by its public attributes, and a
            # sampler without weights must describe itself as it did before they existed.
            self.weights = self._weights
        self.foreground = float(foreground)
        # Foreground voxel coordinates per sample, (K_i, len(S)), for placing patches around them.
        self._foreground_voxels = [torch.nonzero(label > 0) for label in self.labels] if foreground > 0 else None
        self.generator = torch.Generator().manual_seed(seed)
        self.transform = transform
        self.regions = None if regions is None else tuple(tuple(int(c) for c in r) for r in regions)
        if transform is not None and hasattr(transform, "set_random_state"):
            transform.set_random_state(seed=seed)

    def reset(self) -> None:
        """Restart the stream from the beginning (the first batch of ``seed``)."""
        self.generator.manual_seed(self.seed)
        if self.transform is not None and hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(seed=self.seed)

    def state_dict(self) -> dict:
        """Where the stream is: restoring it (:meth:`load_state_dict`) continues with the same batches."""
        # NumPy states as tensors and plain values: saved runs are read with torch.load(weights_only=True).
        transform = [(kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
                     for kind, keys, pos, has_gauss, gauss in (r.get_state() for r in _random_states(self.transform))]
        return {"seed": self.seed, "generator": self.generator.get_state(), "transform": transform}

    def load_state_dict(self, state: dict) -> None:
        """Continue the stream from a :meth:`state_dict` (saved training runs use this)."""
        if state["seed"] != self.seed:
            raise ValueError(f"this sampler has seed {self.seed}; the saved state is of seed {state['seed']}.")
        self.generator.set_state(state["generator"])
        for r, (kind, keys, pos, has_gauss, gauss) in zip(_random_states(self.transform), state.get("transform", [])):
            r.set_state((kind, np.asarray(keys).astype(np.uint32), pos, has_gauss, gauss))

    def normalize(self, images: ArrayLike) -> ArrayLike:
        """``(images - mean) / std`` as float32, for evaluation data; numpy in, numpy out."""
        if isinstance(images, torch.Tensor):
            return ((images.float() - self.mean) / self.std).float()
        return ((np.asarray(images, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> Union[tuple[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
        which = torch.randint(0, len(self.labels), (self.batch_size,), generator=self.generator)  # (B,)
        starts = [torch.randint(0, n - p + 1, (self.batch_size,), generator=self.generator)
                  for n, p in zip(self.labels.shape[1:], self.patch_size)]  # one (B,) per axis
        if self.foreground > 0:
            self._place_on_foreground(which, starts)
        m = self.margin  # a start s in image coordinates is s in the padded copy, m pixels before the patch
        xs, ys = [], []
        for b, index in enumerate(which.tolist()):
            window = tuple(slice(int(s[b]), int(s[b]) + p + 2 * m) for s, p in zip(starts, self.patch_size))
            image = self._padded_images[(index, slice(None)) + window]  # (C, *(P + 2m))
            if self._weights is not None:  # the weight rides along as a last channel, so it moves with the image
                image = torch.cat([image, self._padded_weights[(index, slice(None)) + window]])
            xs.append(image)
            ys.append(self._padded_labels[(index,) + window])  # (*(P + 2m))
        x, y = torch.stack(xs), torch.stack(ys)  # (B, C, *(P + 2m)), (B, *(P + 2m))
        if self.augment:
            x, y = random_flip_rotate(x, y, generator=self.generator)
            if self.elastic_sigma > 0:
                x, y = elastic_deform(x, y, sigma=self.elastic_sigma, generator=self.generator)
        if m:
            centre = tuple(slice(m, m + p) for p in self.patch_size)
            x, y = x[(slice(None), slice(None)) + centre], y[(slice(None),) + centre]  # (B, C, *P), (B, *P)
        if self.transform is not None:
            x, y = self._apply_transform(x, y)
        if self.regions is not None:
            y = labels_to_regions(y, self.regions).float()  # (B, R, *P)
        if self._weights is not None:
            x, w = x[:, :-1], x[:, -1]  # (B, C, *P), (B, *P)
            return {"image": ((x - self.mean) / self.std).contiguous(), "label": y.contiguous(),
                    "weight": w.clamp_min(0).contiguous()}  # interpolation cannot go below 0; clamp guards round-off
        return ((x - self.mean) / self.std).contiguous(), y.contiguous()

    def _apply_transform(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each patch through ``transform`` as a dict; back to plain tensors (MONAI returns MetaTensors)."""
        xs, ys = [], []
        for image, label in zip(x, y):
            out = self.transform({"image": image, "label": label[None].float()})
            xs.append(torch.as_tensor(out["image"]).as_subclass(torch.Tensor).float())
            ys.append(torch.as_tensor(out["label"]).as_subclass(torch.Tensor)[0].round().long())
        return torch.stack(xs), torch.stack(ys)

    def _place_on_foreground(self, which: torch.Tensor, starts: list[torch.Tensor]) -> None:
        """Move some patches (probability ``foreground``) so that each holds a random foreground voxel."""
        forced = torch.rand(self.batch_size, generator=self.generator) < self.foreground  # (B,)
        for b in torch.nonzero(forced).flatten().tolist():
            voxels = self._foreground_voxels[int(which[b])]
            if len(voxels) == 0:
                continue  # nothing to aim at in this sample: keep the uniform patch
            voxel = voxels[torch.randint(0, len(voxels), (1,), generator=self.generator)][0]
            for axis, (n, p) in enumerate(zip(self.labels.shape[1:], self.patch_size)):
                offset = int(torch.randint(0, p, (1,), generator=self.generator))  # where in the patch the voxel lands
                starts[axis][b] = min(max(int(voxel[axis]) - offset, 0), n - p)

    def __repr__(self) -> str:
        return (f"PatchSampler({len(self.labels)} samples of {tuple(self.images.shape[1:])}, "
                f"patch_size={self.patch_size}, batch_size={self.batch_size}, augment={self.augment}, "
                f"elastic_sigma={self.elastic_sigma}, foreground={self.foreground}, seed={self.seed}, mean={self.mean:.4g}, std={self.std:.4g})")


class DomainRoundRobin:
    """Batches from several domains in turn, each a dict that names its domain: what a universal model trains on.

    3D U²-Net's training takes its tasks round-robin, one task per step
    (``config.task_idx = (iterations - 1) % len(tasks)``, ``train.py:266`` of the authors' code), so
    every batch holds one domain. :func:`~unet_lessons.train.fit` passes ``domain`` to the model.

    Args:
        samplers: ``{domain: PatchSampler}``, in the order the domains take turns.

    Yields:
        ``{"image": x, "label": y, "domain": [name] * batch}``.
    """

    def __init__(self, samplers: dict) -> None:
        if not samplers:
            raise ValueError("DomainRoundRobin needs at least one domain's sampler; got none.")
        self.samplers, self.names, self.position = dict(samplers), list(samplers), 0

    def reset(self) -> None:
        """Restart every domain's stream and the turn order."""
        for sampler in self.samplers.values():
            sampler.reset()
        self.position = 0

    def state_dict(self) -> dict:
        return {"position": self.position, "samplers": {n: s.state_dict() for n, s in self.samplers.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
        for name, sampler_state in state["samplers"].items():
            self.samplers[name].load_state_dict(sampler_state)

    def __iter__(self) -> "DomainRoundRobin":
        return self

    def __next__(self) -> dict:
        name = self.names[self.position % len(self.names)]
        self.position += 1
        image, label = next(self.samplers[name])
        return {"image": image, "label": label, "domain": [name] * len(image)}

    def __repr__(self) -> str:
        return f"DomainRoundRobin({', '.join(self.names)})"
