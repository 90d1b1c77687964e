"""A synthetic 2D electron-microscopy-like segmentation task, generated in milliseconds.

It mimics the ISBI 2012 EM data of the original U-Net (Ronneberger et al. 2015) closely
enough that the lessons can train and compare networks without downloading anything:
touching cells separated by thin dark membranes, with the label convention of the real
data (class 0 = membrane, class 1 = cell interior).

How one image is made:

1. Cell seeds are spread by best-candidate sampling, denser in some regions than in
   others, so that large and small cells mix as in neural tissue.
2. Every pixel belongs to its nearest seed (a Voronoi tessellation) after a smooth
   random displacement of the pixel grid, which makes the cell boundaries wavy. The
   membrane label is a band of ``membrane_width`` pixels (varying a little along the
   boundary) around each boundary.
3. The intensity is then what makes the task hard: cells differ in brightness and
   texture, dark organelles (mitochondria, vesicle clusters) sit inside cells and are
   labelled interior, membrane contrast fades in places, the image is blurred, a smooth
   illumination field shifts the intensity across the image, and noise is added.

So no global intensity threshold separates membrane from interior (the best one scores
a membrane Dice of about 0.5; on the real ISBI slices it is about 0.6), while the
local shape cues a convolutional network learns are all there.
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree
from torch.utils.data import Dataset

__all__ = ["make_cells_2d", "SyntheticCells2D"]

_PIXELS_PER_CELL = 250  # mean cell area in pixels: with 2-pixel membranes, ~20% membrane as in ISBI (22%)


@functools.lru_cache(maxsize=32)
def _spline_matrix(size: int, correlation: float) -> np.ndarray:
    """(size, coarse) cubic B-spline weights that upsample a coarse grid with knots ``correlation`` pixels apart."""
    coarse = int(np.ceil(size / correlation)) + 4
    position = np.arange(size) / correlation + 2.0  # in knot units, two knots in from the edge
    distance = np.abs(position[:, None] - np.arange(coarse)[None, :])  # (size, coarse)
    return np.where(distance < 1, 2 / 3 - distance ** 2 + distance ** 3 / 2,
                    np.where(distance < 2, (2 - distance) ** 3 / 6, 0.0))


def _smooth_noise(rng: np.random.Generator, size: int, correlation: float) -> np.ndarray:
    """Zero-mean, unit-std random field varying over about ``correlation`` pixels.

    Coarse white noise smoothed by a separable cubic B-spline: two small matrix
    products, far cheaper than a wide Gaussian filter or ``ndimage.zoom``.
    """
    weights = _spline_matrix(size, max(float(correlation), 1.0))
    field = weights @ rng.standard_normal((weights.shape[1], weights.shape[1])) @ weights.T  # (size, size)
    return (field - field.mean()) / (field.std() + 1e-8)


def _cell_seeds(rng: np.random.Generator, size: int, num_cells: int, scale: np.ndarray,
                candidates: int = 4) -> np.ndarray:
    """``num_cells`` seed points (x, y) by Mitchell's best-candidate sampling.

    Each new seed is the best of a few uniform candidates: the one farthest from the
    seeds so far, measured in units of the local cell ``scale``. That avoids sliver cells
    and makes cells large where ``scale`` is large.
    """
    seeds = np.empty((num_cells, 2))
    seeds[0] = rng.uniform(0, size, 2)
    for n in range(1, num_cells):
        trial = rng.uniform(0, size, (candidates, 2))  # (K, 2)
        distance = np.sqrt(((trial[:, None, :] - seeds[None, :n, :]) ** 2).sum(-1)).min(1)  # (K,)
        local = scale[trial[:, 1].astype(int), trial[:, 0].astype(int)]
        seeds[n] = trial[np.argmax(distance / local)]
    return seeds


def _ellipse_mask(shape: tuple[int, int], center: np.ndarray, radii: tuple[float, float],
                  angle: float) -> tuple[np.ndarray, tuple[slice, slice]]:
    """A boolean ellipse in its bounding box, and the box's slices into an image of ``shape``."""
    reach = int(np.ceil(max(radii))) + 1
    y0, x0 = max(int(center[1]) - reach, 0), max(int(center[0]) - reach, 0)
    y1, x1 = min(int(center[1]) + reach + 1, shape[0]), min(int(center[0]) + reach + 1, shape[1])
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx - center[0], yy - center[1]
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / radii[0]
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / radii[1]
    return u ** 2 + v ** 2 <= 1.0, (slice(y0, y1), slice(x0, x1))


def make_cells_2d(
    size: int = 128,
    *,
    seed: int = 0,
    num_cells: Optional[int] = None,
    membrane_width: float = 2.0,
    noise: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic EM-like image of touching cells and its membrane / interior label.

    Args:
        size: height and width in pixels.
        seed: the random seed; the same seed always gives the same image.
        num_cells: number of cells; default one per ~250 pixels (about 66 at 128 x 128),
            which gives about 20% membrane pixels, as in ISBI 2012.
        membrane_width: mean width of the labelled membrane band in pixels; it varies by
            about +-30% along each boundary.
        noise: standard deviation of the additive Gaussian noise, as a fraction of the
            mean membrane contrast (0 for a clean image).

    Returns:
        ``(image, label)``: image float32 in [0, 1] (dark membranes on brighter cells);
        label int64 with 0 = membrane and 1 = cell interior.

    Shape:
        image (size, size), label (size, size).
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels; got {size}.")
    rng = np.random.default_rng(seed)
    if num_cells is None:
        num_cells = max(2, round(size * size / _PIXELS_PER_CELL))
    if num_cells < 2:
        raise ValueError(f"num_cells must be at least 2 (a membrane needs two cells); got {num_cells}.")

    # Geometry: a Voronoi tessellation of a smoothly warped grid, with a per-pixel distance to the boundary.
    scale = np.exp(0.45 * _smooth_noise(rng, size, size / 3))  # > 1: larger cells there
    seeds = _cell_seeds(rng, size, num_cells, scale)  # (K, 2) as (x, y)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # Two scales of smooth displacement make straight Voronoi edges wavy; their slopes stay
    # well below 1, so the warp never folds the grid over itself.
    warp_x = 1.5 * _smooth_noise(rng, size, 9) + 3.0 * _smooth_noise(rng, size, 28)
    warp_y = 1.5 * _smooth_noise(rng, size, 9) + 3.0 * _smooth_noise(rng, size, 28)
    points = np.stack([xx + warp_x, yy + warp_y], -1).reshape(-1, 2)  # (H*W, 2)
    (d1, d2), (i1, i2) = (a.T for a in cKDTree(seeds).query(points, k=2))  # (H*W,) each
    # Distance to the bisector of the two nearest seeds: exact for a Voronoi boundary.
    gap = np.linalg.norm(seeds[i1] - seeds[i2], axis=-1)
    boundary = ((d2 ** 2 - d1 ** 2) / (2 * gap)).reshape(size, size)
    cell = i1.reshape(size, size)
    half_width = 0.5 * membrane_width * np.clip(1 + 0.3 * _smooth_noise(rng, size, 10), 0.5, 1.6)
    membrane = boundary < half_width
    label = np.where(membrane, 0, 1).astype(np.int64)

    # Cells: each its own brightness and grain; a few are dark, like glial processes.
    brightness = rng.normal(0.62, 0.07, num_cells)
    brightness[rng.random(num_cells) < 0.1] -= 0.15
    image = brightness[cell]
    image += 0.05 * _smooth_noise(rng, size, 1.5) + 0.04 * _smooth_noise(rng, size, 5)

    # Organelles, labelled interior. Vesicle clusters: dark specks in some cells.
    speckled = rng.random(num_cells) < 0.35
    specks = (_smooth_noise(rng, size, 1.2) > 1.3) & speckled[cell]
    image -= 0.28 * specks
    # Mitochondria: dark ellipses with pale stripes (cristae), sized to fit their cell. Seeds live
    # in warped coordinates, a few pixels off in the image, so each ellipse is clipped to the
    # interior of the cell under its centre: organelles never cross or hide a membrane.
    for center in seeds[rng.random(num_cells) < 0.3]:
        x, y = min(int(center[0]), size - 1), min(int(center[1]), size - 1)
        room = boundary[y, x] - 2 * half_width[y, x]
        if room < 2.5:
            continue
        long_axis = rng.uniform(0.6, 1.0) * min(room, 0.5 * np.sqrt(_PIXELS_PER_CELL))
        short_axis = max(rng.uniform(0.4, 0.7) * long_axis, 1.5)
        angle = rng.uniform(0, np.pi)
        mask, box = _ellipse_mask((size, size), center, (long_axis, short_axis), angle)
        mask &= (cell[box] == cell[y, x]) & ~membrane[box]
        stripes = 0.5 + 0.5 * np.cos((xx[box] * np.cos(angle + 1.3) + yy[box] * np.sin(angle + 1.3)) * 1.8)
        image[box] -= mask * (0.28 + 0.1 * stripes)

    # Membranes: a flat-bottomed dip whose contrast fades in places.
    contrast = 0.38 * np.clip(1 + 0.35 * _smooth_noise(rng, size, 12), 0.3, 1.8)
    image -= contrast * np.exp(-((boundary / (1.15 * half_width)) ** 4))

    # Acquisition: optics blur, uneven illumination (gain and offset), then noise.
    image = ndimage.gaussian_filter(image, 0.7)
    gain = 1 + 0.25 * _smooth_noise(rng, size, size / 2)
    offset = 0.1 * _smooth_noise(rng, size, size / 2.5)
    image = image * gain + offset
    image += noise * 0.38 * rng.standard_normal((size, size))
    return np.clip(image, 0.0, 1.0).astype(np.float32), label


def item_seed(seed: int, index: int) -> int:
    """The seed of item ``index`` of a generated dataset: a hash of ``(seed, index)``, not
    ``seed + index``, so that datasets with nearby seeds share no items."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class GeneratedDataset(Dataset):
    """A map-style dataset whose items a generator function makes on demand.

    Item ``i`` is ``generate(size, seed=item_seed(seed, i), **kwargs)``, so it is the same on
    every call and in every worker. Subclasses set ``generate``.

    Args:
        num_samples: number of items.
        size: height and width of each image.
        seed: the dataset's seed.
        **kwargs: passed on to ``generate``.

    Shape:
        item: image (C, size, size) float32 (a channel axis is added to a 2D image),
        label (size, size) int64.
    """

    @staticmethod
    def generate(size: int, *, seed: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError("a GeneratedDataset subclass sets generate to its generator function")

    def __init__(self, num_samples: int, size: int = 128, *, seed: int = 0, **kwargs) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0; got {num_samples}.")
        self.num_samples, self.size, self.seed, self.kwargs = num_samples, size, seed, kwargs

    def __len__(self) -> int:
        return self.num_samples

    def item_seed(self, index: int) -> int:
        """The seed of item ``index``, see :func:`item_seed`."""
        return item_seed(self.seed, index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} is out of range for {self.num_samples} samples.")
        index %= self.num_samples
        image, label = self.generate(self.size, seed=self.item_seed(index), **self.kwargs)
        image = torch.from_numpy(image)
        return (image[None] if image.dim() == 2 else image), torch.from_numpy(label)  # (C, H, W), (H, W)


class SyntheticCells2D(GeneratedDataset):
    """The synthetic EM-like task as a dataset of :func:`make_cells_2d` images.

    ``kwargs`` go to :func:`make_cells_2d` (``num_cells``, ``membrane_width``, ``noise``);
    items are (image (1, size, size), label (size, size)). See :class:`GeneratedDataset`.
    """

    generate = staticmethod(make_cells_2d)
