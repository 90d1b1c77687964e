"""A synthetic multi-class 2D task where boundaries matter: thin bars, crosses, stars and discs.

Lesson 01 trains FCN-32s, -16s and -8s (Long et al. 2015) on it, on a CPU. The paper's
point is that the coarse 32-pixel-stride prediction of FCN-32s blurs boundaries and fine
structures, and that skip connections from finer layers bring them back. This task is
built so that the difference shows:

- Fine detail: bars 2-4 pixels wide, crosses with arms as thin, stars with sharp points,
  and small discs. Objects are about 6 to 40 pixels across, many thinner than one cell of
  a stride-8 grid.
- Shape, not colour, tells the class: every object takes a random colour from one palette
  shared by all classes, so a network has to look at the outline.
- A textured, smoothly varying background in colour, plus a little blur and noise.

Objects never overlap and keep at least ``_GAP`` pixels apart (checked with each shape's
signed distance function), so the label of every pixel is unambiguous; objects may be cut
by the image border. Edges are anti-aliased: the image blends object and background by
the pixel's coverage, while the label takes the class whose shape contains the pixel centre.

Label convention: int64 indices into :data:`SHAPE_CLASSES`, 0 = background.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from scipy import ndimage

from .synthetic import GeneratedDataset, _smooth_noise, item_seed

__all__ = ["SHAPE_CLASSES", "make_shapes_2d", "make_shapes_batch", "SyntheticShapes2D"]

SHAPE_CLASSES = ("background", "disc", "bar", "cross", "star")

# How often each class is drawn: thin bars are drawn most, so that every class ends up
# with a similar share of the pixels (about 5-7% each at the default settings).
_CLASS_PROBABILITIES = np.array([0.24, 0.34, 0.24, 0.18])
_PIXELS_PER_SHAPE = 420  # default density: 39 shapes tried at 128 x 128, ~20% foreground
_GAP = 2.0  # minimum distance in pixels between two objects
_TRIES = 12  # placements tried per object before it is dropped
_CONTRAST = 0.3  # typical object/background difference per channel; ``noise`` is relative to it

# One palette for every class (RGB in [0, 1]): saturated colours, near-black and near-white,
# all clearly different from the mid-grey background.
_PALETTE = np.array([
    [0.85, 0.20, 0.15], [0.95, 0.60, 0.10], [0.90, 0.85, 0.20], [0.20, 0.70, 0.25],
    [0.10, 0.60, 0.65], [0.20, 0.30, 0.85], [0.55, 0.20, 0.70], [0.12, 0.12, 0.15],
    [0.92, 0.92, 0.90],
])


def _box_sdf(u: np.ndarray, v: np.ndarray, half_length: float, half_width: float) -> np.ndarray:
    """Signed distance to a rectangle centred at the origin of the (u, v) frame (< 0 inside)."""
    qu, qv = np.abs(u) - half_length, np.abs(v) - half_width
    outside = np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0))
    return outside + np.minimum(np.maximum(qu, qv), 0.0)


def _star_sdf(points: int, outer: float, inner: float, angle: float) -> Callable:
    """Signed distance to a star polygon: exact distance to its 2n edges, sign from a polar test."""
    step = np.pi / points
    vertex_angles = angle + step * np.arange(2 * points)
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    vx, vy = (radii * np.cos(vertex_angles))[:, None, None], (radii * np.sin(vertex_angles))[:, None, None]
    ex, ey = np.roll(vx, -1, 0) - vx, np.roll(vy, -1, 0) - vy  # edge vectors (2n, 1, 1)
    length2 = ex ** 2 + ey ** 2

    def star(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        px, py = dx - vx, dy - vy  # (2n, h, w)
        along = np.clip((px * ex + py * ey) / length2, 0, 1)
        distance = np.sqrt(((px - along * ex) ** 2 + (py - along * ey) ** 2).min(0))
        # A star is star-shaped around its centre: a pixel is inside iff it is nearer the
        # centre than the edge is in the same direction.
        local = np.mod(np.arctan2(dy, dx) - angle, 2 * step)
        rising = local >= step  # on an edge from an inner to an outer vertex
        r1, r2 = np.where(rising, inner, outer), np.where(rising, outer, inner)
        t = np.where(rising, local - step, local)
        edge = r1 * r2 * np.sin(step) / (r1 * np.sin(t) + r2 * np.sin(step - t))
        return np.where(np.hypot(dx, dy) <= edge, -distance, distance)
    return star


def _random_shape(rng: np.random.Generator, label: int) -> tuple[float, Callable]:
    """A shape of class ``label`` with random size and rotation: (bounding radius, sdf(dx, dy))."""
    angle = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    name = SHAPE_CLASSES[label]
    if name == "disc":
        radius = rng.uniform(3.0, 9.0)
        return radius, lambda dx, dy: np.hypot(dx, dy) - radius
    if name == "bar":
        half_length, half_width = rng.uniform(7.0, 20.0), rng.uniform(1.0, 2.0)
        return np.hypot(half_length, half_width), \
            lambda dx, dy: _box_sdf(dx * c + dy * s, dy * c - dx * s, half_length, half_width)
    if name == "cross":
        half_span, half_width = rng.uniform(6.0, 15.0), rng.uniform(1.0, 2.0)

        def cross(dx, dy):
            u, v = dx * c + dy * s, dy * c - dx * s
            return np.minimum(_box_sdf(u, v, half_span, half_width), _box_sdf(v, u, half_span, half_width))
        return np.hypot(half_span, half_width), cross
    if name == "star":
        points, outer = int(rng.integers(5, 7)), rng.uniform(7.0, 16.0)
        inner = rng.uniform(0.35, 0.5) * outer
        return outer, _star_sdf(points, outer, inner, angle)
    raise ValueError(f"no shape for class {label}")


def make_shapes_2d(
    size: int = 128,
    *,
    seed: int = 0,
    num_shapes: Optional[int] = None,
    noise: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """One RGB image of discs, thin bars, crosses and stars on a textured background, and its label.

    Args:
        size: height and width in pixels (>= 16).
        seed: the random seed; the same seed always gives the same image.
        num_shapes: objects to try to place; default one per ~420 pixels (39 at 128 x 128),
            which covers about 20% of the image. An object that finds no free spot in a few
            tries is dropped, so crowded settings place fewer.
        noise: standard deviation of the additive Gaussian noise, per channel, as a fraction
            of the typical object/background contrast (0 for a clean image).

    Returns:
        ``(image, label)``: image float32 RGB in [0, 1]; label int64 indices into
        :data:`SHAPE_CLASSES` (0 = background).

    Shape:
        image (3, size, size), label (size, size).
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels; got {size}.")
    rng = np.random.default_rng(seed)
    if num_shapes is None:
        num_shapes = max(1, round(size * size / _PIXELS_PER_SHAPE))
    if num_shapes < 0:
        raise ValueError(f"num_shapes must be >= 0; got {num_shapes}.")

    # Background: a grey that drifts slowly, a colour tint, and grain at two scales.
    grey = 0.5 + 0.1 * _smooth_noise(rng, size, size / 3)
    tint = np.stack([0.05 * _smooth_noise(rng, size, size / 2) for _ in range(3)])
    grain = 0.04 * _smooth_noise(rng, size, 1.5) + 0.04 * _smooth_noise(rng, size, 6)
    image = grey[None] + tint + grain[None]  # (3, H, W)
    shading = 1 + 0.08 * _smooth_noise(rng, size, 4)  # texture inside objects

    label = np.zeros((size, size), np.int64)
    blocked = np.zeros((size, size), bool)  # pixels within _GAP of an object
    classes = 1 + rng.choice(len(_CLASS_PROBABILITIES), size=num_shapes, p=_CLASS_PROBABILITIES)
    for cls in classes:
        reach, sdf = _random_shape(rng, int(cls))
        colour = np.clip(_PALETTE[rng.integers(len(_PALETTE))] + rng.normal(0, 0.04, 3), 0, 1)
        margin = int(np.ceil(reach + _GAP)) + 1
        for _ in range(_TRIES):
            cx, cy = rng.uniform(0, size, 2)
            if blocked[int(cy), int(cx)]:  # every shape contains its centre: a cheap first test
                continue
            y0, x0 = max(int(cy) - margin, 0), max(int(cx) - margin, 0)
            y1, x1 = min(int(cy) + margin + 1, size), min(int(cx) + margin + 1, size)
            box = (slice(y0, y1), slice(x0, x1))
            distance = sdf(np.arange(x0, x1)[None] - cx, np.arange(y0, y1)[:, None] - cy)  # (h, w), < 0 inside
            inside = distance <= 0
            if (blocked[box] & inside).any():
                continue
            label[box][inside] = cls
            blocked[box] |= distance <= _GAP
            coverage = np.clip(0.5 - distance, 0.0, 1.0)  # anti-aliasing: a 1-pixel ramp across the edge
            patch = image[:, box[0], box[1]]  # (3, h, w), a view
            patch += coverage * (colour[:, None, None] * shading[box] - patch)
            break

    # Acquisition: slight blur, then noise.
    image = ndimage.gaussian_filter(image, (0, 0.5, 0.5))
    image += noise * _CONTRAST * rng.standard_normal(image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32), label


def make_shapes_batch(n: int, size: int = 128, *, seed: int = 0, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Items ``0 .. n-1`` of ``SyntheticShapes2D(n, size, seed=seed, **kwargs)``, stacked in memory.

    Args:
        n: number of images.
        size: height and width of each image.
        seed: the dataset's seed.
        **kwargs: passed on to :func:`make_shapes_2d` (``num_shapes``, ``noise``).

    Shape:
        images (n, 3, size, size) float32, labels (n, size, size) int64.
    """
    pairs = [make_shapes_2d(size, seed=item_seed(seed, i), **kwargs) for i in range(n)]
    images = np.stack([image for image, _ in pairs]) if pairs else np.zeros((0, 3, size, size), np.float32)
    labels = np.stack([label for _, label in pairs]) if pairs else np.zeros((0, size, size), np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)  # (N, 3, H, W), (N, H, W)


class SyntheticShapes2D(GeneratedDataset):
    """The shapes task as a dataset of :func:`make_shapes_2d` images, each generated on demand.

    ``kwargs`` go to :func:`make_shapes_2d` (``num_shapes``, ``noise``); items are
    (image (3, size, size), label (size, size)), the same as :func:`make_shapes_batch`
    gives. See :class:`~unet_lessons.data.synthetic.GeneratedDataset`.
    """

    classes = SHAPE_CLASSES
    generate = staticmethod(make_shapes_2d)
