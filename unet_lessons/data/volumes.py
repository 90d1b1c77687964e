"""Synthetic 3D volumes: an organ task and a BraTS-like multi-modal tumour task.

Both are generated in a few tens of milliseconds per 64³ volume, deterministically by seed,
so the 3D lessons train and test without downloads.

**Organ task** (:func:`make_organ_volume`, lessons 03 and 04). One large organ with a
smooth, randomly deformed surface holds small lesions; the background holds *distractor*
blobs with exactly the organ's and the lesion's intensities. A smooth multiplicative bias
field, texture, blur (partial volume) and noise complete the image. So intensity alone
cannot tell an organ from a distractor or a lesion from a bright blob outside the organ
(the best intensity interval scores a Dice well below 0.6 on every class), while shape and
context, which a 3D convolutional network sees, can. ``foreground_fraction`` sets the
fraction of foreground voxels exactly (down to 1% or less, for the V-Net lesson's class
imbalance), and ``spacing`` makes the voxels anisotropic: the anatomy is defined in
millimetres, so thick slices squash every structure along their axis.

**BraTS-like task** (:func:`make_brats_volume`, the No New-Net and autoencoder lessons).
A head-shaped brain with grey/white-matter texture holds a tumour made of a necrotic core,
an enhancing rim around it and oedema around both. Four channels stand in for the MRI
modalities T1, T1c, T2 and FLAIR, each with its own contrast for each part, as in the
BraTS data (Menze et al. 2015; Bakas et al. 2018): the enhancing rim is bright only in
T1c, oedema is brightest in FLAIR and T2, the necrotic core is dark in T1 and T1c.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from scipy import ndimage

from ..targets import BRATS_REGION_CLASSES, labels_to_regions
from .synthetic import GeneratedDataset, _spline_matrix

__all__ = [
    "ORGAN_CLASSES",
    "MODALITIES",
    "normalize_brain",
    "make_brats_volumes",
    "scanner_shift",
    "BRATS_CLASSES",
    "BRATS_REGIONS",
    "BRATS_LABEL_VALUES",
    "make_organ_volume",
    "make_brats_volume",
    "make_vessel_volume",
    "brats_regions",
    "SyntheticOrgans3D",
    "SyntheticBraTS3D",
]

ORGAN_CLASSES = ("background", "organ", "lesion")
MODALITIES = ("T1", "T1c", "T2", "FLAIR")
#: Our disjoint labels 0..3; BraTS files store them as 0, 1, 2, 4 (see BRATS_LABEL_VALUES).
BRATS_CLASSES = ("background", "necrotic core", "edema", "enhancing tumour")
BRATS_LABEL_VALUES = (0, 1, 2, 4)
#: The nested regions BraTS evaluates: whole tumour ⊃ tumour core ⊃ enhancing tumour.
BRATS_REGIONS = ("whole tumour", "tumour core", "enhancing tumour")

Shape = Union[int, Sequence[int]]


def _shape3(shape: Shape) -> tuple[int, int, int]:
    dims = (int(shape),) * 3 if np.isscalar(shape) else tuple(int(s) for s in shape)
    if len(dims) != 3 or min(dims) < 8:
        raise ValueError(f"shape must be one int or three ints (D, H, W), each at least 8; got {shape!r}.")
    return dims


def _spacing3(spacing: Union[float, Sequence[float]]) -> np.ndarray:
    values = np.full(3, float(spacing)) if np.isscalar(spacing) else np.asarray(spacing, dtype=float)
    if values.shape != (3,) or (values <= 0).any():
        raise ValueError(f"spacing must be one or three positive voxel sizes (D, H, W) in mm; got {spacing!r}.")
    return values


def _smooth_noise_3d(rng: np.random.Generator, shape: Sequence[int], correlation: Sequence[float]) -> np.ndarray:
    """Zero-mean, unit-std random field varying over about ``correlation`` voxels per axis (B-spline smoothing)."""
    weights = [_spline_matrix(n, max(float(c), 1.0)) for n, c in zip(shape, correlation)]
    coarse = rng.standard_normal(tuple(w.shape[1] for w in weights))
    field = np.einsum("ai,bj,ck,ijk->abc", *weights, coarse, optimize=True)  # (D, H, W)
    return ((field - field.mean()) / (field.std() + 1e-8)).astype(np.float32)


def _grid_mm(shape: Sequence[int], spacing: np.ndarray) -> list[np.ndarray]:
    """Voxel-centre coordinates in mm, centred on the volume, as three broadcastable axes."""
    axes = [(np.arange(n, dtype=np.float32) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    return [axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]]


def _ellipsoid(grid: list[np.ndarray], centre: np.ndarray, radii: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Normalised radius of an ellipsoid: < 1 inside, 1 on the surface; rotated by ``rotation``."""
    offset = [g - c for g, c in zip(grid, centre)]
    total = 0.0
    for row, radius in zip(rotation, radii):
        total = total + ((row[0] * offset[0] + row[1] * offset[1] + row[2] * offset[2]) / radius) ** 2
    return np.sqrt(total).astype(np.float32)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _level_for_fraction(field: np.ndarray, fraction: float) -> float:
    """The level below which exactly ``fraction`` of the voxels of ``field`` lie."""
    return float(np.partition(field.ravel(), int(fraction * field.size))[int(fraction * field.size)])


def _blobs(rng: np.random.Generator, grid: list[np.ndarray], spacing: np.ndarray, count: int,
           radius_mm: float, distance: np.ndarray) -> np.ndarray:
    """A mask of ``count`` random ellipsoids whose centres lie further than their radius from a region.

    ``distance`` holds each voxel's distance in mm to the region to avoid. Each blob is
    evaluated in its own bounding box only, which keeps many blobs cheap. Blobs may
    overlap each other, and some may be cut by the volume's edge.
    """
    dims = distance.shape
    mask = np.zeros(dims, dtype=bool)
    candidates = np.argwhere(distance > 1.4 * radius_mm)  # 1.4: the largest radius factor below
    for _ in range(count if len(candidates) else 0):
        centre_vox = candidates[rng.integers(len(candidates))]
        centre = np.array([grid[axis].ravel()[centre_vox[axis]] for axis in range(3)])
        radii = radius_mm * rng.uniform(0.6, 1.4, 3)
        reach = np.ceil(radii.max() / spacing).astype(int) + 1
        box = tuple(slice(max(0, c - r), min(n, c + r + 1)) for c, r, n in zip(centre_vox, reach, dims))
        local_grid = [grid[0][box[0]], grid[1][:, box[1]], grid[2][:, :, box[2]]]
        mask[box] |= _ellipsoid(local_grid, centre, radii, _rotation(rng)) < 1
    return mask


def make_organ_volume(
    shape: Shape = 64,
    *,
    seed: int = 0,
    num_classes: int = 3,
    in_channels: int = 1,
    foreground_fraction: Optional[float] = None,
    spacing: Union[float, Sequence[float]] = 1.0,
    noise: float = 0.05,
    bias: float = 0.3,
    distractors: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic organ volume and its labels.

    Args:
        shape: (D, H, W) in voxels, or one int for a cube.
        seed: the volume's seed; the same seed gives the same volume.
        num_classes: 2 (background, organ) or more: classes 2.. are lesion types inside the
            organ, each with its own intensity.
        in_channels: image channels; extra channels show the same anatomy with their own contrast.
        foreground_fraction: the exact fraction of non-background voxels; default: random, 6–14%.
        spacing: voxel size in mm along (D, H, W); the field of view is ``shape * spacing``,
            and the anatomy is sized in mm, so a larger spacing on one axis squashes it there.
        noise: standard deviation of the Gaussian noise (the tissue contrast is about 0.35).
        bias: strength of the smooth multiplicative bias field (0 turns it off).
        distractors: number of organ-like and lesion-like blobs in the background.

    Returns:
        ``image`` (C, D, H, W) float32 and ``label`` (D, H, W) int64 in ``0..num_classes-1``.
    """
    dims, spacing_mm = _shape3(shape), _spacing3(spacing)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 (background and organ); got {num_classes}.")
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1; got {in_channels}.")
    if foreground_fraction is not None and not 0 < foreground_fraction < 0.6:
        raise ValueError(f"foreground_fraction must lie in (0, 0.6) (a fraction, not a percentage); "
                         f"got {foreground_fraction}.")
    rng = np.random.default_rng(seed)
    grid, fov = _grid_mm(dims, spacing_mm), np.asarray(dims) * spacing_mm
    fraction = rng.uniform(0.06, 0.14) if foreground_fraction is None else float(foreground_fraction)

    # The organ: a rotated ellipsoid whose surface is pushed in and out by smooth noise; the level
    # set containing exactly `fraction` of the voxels is the organ (lesions included).
    radii = fov.min() * rng.uniform(0.22, 0.34, 3)
    centre = rng.uniform(-0.12, 0.12, 3) * fov
    wobble = _smooth_noise_3d(rng, dims, 16.0 / spacing_mm)
    shape_field = _ellipsoid(grid, centre, radii, _rotation(rng)) + 0.18 * wobble
    organ = shape_field < _level_for_fraction(shape_field, fraction)
    label = organ.astype(np.int64)

    # Lesions: small blobs well inside the organ; each lesion class gets one to three of them.
    inside = ndimage.binary_erosion(organ, iterations=2)
    lesion_radius = max(2.0 * spacing_mm.min(), 0.3 * (fraction * np.prod(fov)) ** (1 / 3))
    for cls in range(2, num_classes):
        candidates = np.argwhere(inside)
        for _ in range(int(rng.integers(2, 5)) if len(candidates) else 0):
            centre_vox = candidates[rng.integers(len(candidates))]
            centre_mm = np.array([grid[a].ravel()[centre_vox[a]] for a in range(3)])
            blob = _ellipsoid(grid, centre_mm, lesion_radius * rng.uniform(0.7, 1.3, 3), _rotation(rng)) < 1
            label[blob & inside] = cls

    # Distractors outside the organ with the organ's and the lesions' intensities.
    # Together the organ-like blobs hold about as many voxels as the organ itself; lesion-like
    # blobs may fall inside them (a bright spot in a distractor is still background).
    distance = ndimage.distance_transform_edt(~organ, sampling=spacing_mm) - 2.0 * spacing_mm.max()
    organ_radius = (3 * fraction * np.prod(fov) / (4 * np.pi)) ** (1 / 3)
    organ_like = _blobs(rng, grid, spacing_mm, distractors, organ_radius * 1.1 / max(distractors, 1) ** (1 / 3), distance)
    lesion_like = _blobs(rng, grid, spacing_mm, distractors // 2, lesion_radius, distance)

    lesions = label >= 2
    capsule = ndimage.binary_dilation(lesions, iterations=1) & ~lesions & (label == 1) if num_classes > 2 else None
    images = []
    for channel in range(in_channels):
        # Tissue intensities of this channel: background, organ, then each lesion class.
        levels = np.array([0.25, 0.6] + [0.95 - 0.12 * (c - 2) for c in range(2, num_classes)], dtype=np.float32)
        if channel:
            levels = levels[rng.permutation(len(levels))] * rng.uniform(0.8, 1.2)
        tissue = levels[label]
        tissue[organ_like & (label == 0)] = levels[1]
        if num_classes > 2:
            tissue[lesion_like & (label == 0)] = levels[2]
            tissue[capsule] = levels[0]  # a dark capsule around each lesion, labelled organ
        # Texture: fine speckle in the organ's tissue only, a faint smooth variation elsewhere.
        speckle = _smooth_noise_3d(rng, dims, 1.5 / spacing_mm)
        tissue = tissue + np.where(label == 1, 0.2 * speckle, 0.03 * speckle)
        tissue = ndimage.gaussian_filter(tissue, sigma=0.5 / spacing_mm)  # partial volume
        field = np.exp(bias * _smooth_noise_3d(rng, dims, 40.0 / spacing_mm))  # bias field
        images.append(tissue * field + noise * rng.standard_normal(dims, dtype=np.float32))
    return np.stack(images).astype(np.float32), label


def make_brats_volume(shape: Shape = 64, *, seed: int = 0, noise: float = 0.05,
                      spacing: Union[float, Sequence[float]] = 1.0, mimics: bool = True,
                      enhancing: Optional[bool] = None, tumour_size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One BraTS-like volume: four modalities and a disjoint tumour label map.

    With ``mimics`` the healthy brain holds what makes a threshold fail on real scans: each
    tumour part has a healthy look-alike in the modality where it is brightest, and only the
    other modalities (or the context) tell them apart, as in real MRI:

    * cerebrospinal fluid (two ventricles and the sulci over the brain's surface): bright in T2
      like oedema, but dark in FLAIR;
    * white-matter hyperintensities (scattered blobs): as bright as oedema in T2 and FLAIR, but
      close to white matter in T1 and T1c, where oedema is dark;
    * vessels (thin tubes): bright in T1c like the enhancing rim, but dark in T2 (flow void).

    Args:
        shape: (D, H, W) in voxels, or one int for a cube.
        seed: the volume's seed.
        noise: standard deviation of the Gaussian noise.
        spacing: voxel size in mm along (D, H, W).
        mimics: add the healthy look-alikes.
        enhancing: whether the tumour has an enhancing rim. ``None`` (the default) draws it:
            one tumour in five has none, like many lower-grade gliomas; there the whole core is
            necrotic or non-enhancing, and BraTS scores an empty enhancing-tumour prediction
            as a perfect Dice of 1 (and any enhancing voxel predicted as 0).
        tumour_size: scales the tumour's radii (1 draws the usual sizes; 0.5 gives tumours with an
            enhancing rim of about a hundred voxels at 48³, the small ones post-processing may remove).
            The same seed draws the same volume otherwise.

    Returns:
        ``image`` (4, D, H, W) float32, channels in :data:`MODALITIES` order, zero outside
        the head; ``label`` (D, H, W) int64 with 0 background, 1 necrotic core, 2 edema,
        3 enhancing tumour (BraTS' 0, 1, 2, 4). :func:`brats_regions` gives the nested regions.
    """
    dims, spacing_mm = _shape3(shape), _spacing3(spacing)
    rng = np.random.default_rng(seed)
    grid, fov = _grid_mm(dims, spacing_mm), np.asarray(dims) * spacing_mm
    head = _ellipsoid(grid, np.zeros(3), fov * np.array([0.44, 0.40, 0.36]), np.eye(3))
    brain = head + 0.04 * _smooth_noise_3d(rng, dims, 12.0 / spacing_mm) < 1
    white = _smooth_noise_3d(rng, dims, 6.0 / spacing_mm) > 0.2  # white-matter islands in grey matter

    # The tumour: a deformed core (necrosis inside, an enhancing rim) inside a larger oedema.
    inner = np.argwhere(ndimage.binary_erosion(brain, iterations=max(3, min(dims) // 6)))
    centre_vox = inner[rng.integers(len(inner))]
    centre = np.array([grid[a].ravel()[centre_vox[a]] for a in range(3)])
    if not 0 < tumour_size <= 2:
        raise ValueError(f"tumour_size scales the tumour's radii and must be in (0, 2]; got {tumour_size}.")
    scale = fov.min() * rng.uniform(0.12, 0.17) * tumour_size
    core = _ellipsoid(grid, centre, scale * rng.uniform(0.8, 1.2, 3), _rotation(rng))
    core = core + 0.15 * _smooth_noise_3d(rng, dims, 6.0 / spacing_mm)
    edema = _ellipsoid(grid, centre + rng.normal(0, 0.3 * scale, 3), 1.35 * scale * rng.uniform(0.8, 1.3, 3),
                       _rotation(rng)) + 0.25 * _smooth_noise_3d(rng, dims, 8.0 / spacing_mm)
    rim = rng.uniform(0.6, 0.8)  # necrosis is the core's inner part, the enhancing rim its shell
    has_rim = rng.random() >= 0.2 if enhancing is None else bool(enhancing)
    label = np.zeros(dims, dtype=np.int64)
    label[(edema < 1) & brain] = 2
    label[(core < 1) & brain] = 3 if has_rim else 1
    label[(core < rim) & brain] = 1

    # Healthy look-alikes (drawn first: the tumour overrides them where they meet).
    healthy = np.zeros(dims, dtype=np.int64)  # 0 tissue, 1 CSF, 2 white-matter hyperintensity, 3 vessel
    if mimics:
        tumour = label > 0
        side = rng.choice([-1.0, 1.0])
        surface = brain & ~ndimage.binary_erosion(brain, iterations=2)
        healthy[surface] = 1  # the CSF of the sulci, over the brain's surface
        for offset in (-0.07, 0.07):  # two ventricles beside the midline
            centre_v = np.array([0.0, 0.02 * side, offset]) * fov + rng.normal(0, 0.01, 3) * fov
            healthy[(_ellipsoid(grid, centre_v, fov * np.array([0.16, 0.05, 0.035]) * rng.uniform(0.8, 1.2, 3),
                                np.eye(3)) < 1) & brain] = 1
        distance = ndimage.distance_transform_edt(~tumour, sampling=spacing_mm)
        healthy[_blobs(rng, grid, spacing_mm, int(rng.integers(12, 20)), 0.09 * fov.min(), distance) & brain] = 2
        for _ in range(int(rng.integers(3, 6))):  # long, thin ellipsoids: vessels
            centre_t = np.array([grid[a].ravel()[v] for a, v in enumerate(inner[rng.integers(len(inner))])])
            radii = np.array([0.35 * fov.min(), 1.1 * spacing_mm.max(), 1.1 * spacing_mm.max()]) * rng.uniform(0.8, 1.2, 3)
            healthy[(_ellipsoid(grid, centre_t, radii, _rotation(rng)) < 1) & brain] = 3
        healthy[tumour] = 0

    # Intensity of (grey matter, white matter, necrosis, edema, enhancing, CSF, hyperintensity, vessel).
    contrast = {"T1": (0.55, 0.70, 0.25, 0.48, 0.50, 0.20, 0.72, 0.50),
                "T1c": (0.55, 0.70, 0.25, 0.47, 0.90, 0.20, 0.72, 0.95),
                "T2": (0.60, 0.45, 0.90, 0.85, 0.65, 0.92, 0.85, 0.25),
                "FLAIR": (0.60, 0.45, 0.55, 0.80, 0.70, 0.15, 0.80, 0.30)}
    images = []
    for name in MODALITIES:
        grey, whitem, necrosis, oedema, enhancing, csf, hyper, vessel = contrast[name]
        tissue = np.where(white, whitem, grey).astype(np.float32)
        tissue[healthy == 1], tissue[healthy == 2], tissue[healthy == 3] = csf, hyper, vessel
        tissue[label == 1], tissue[label == 2], tissue[label == 3] = necrosis, oedema, enhancing
        tissue = ndimage.gaussian_filter(tissue + 0.04 * _smooth_noise_3d(rng, dims, 3.0 / spacing_mm),
                                         sigma=0.7 / spacing_mm)
        field = np.exp(0.2 * _smooth_noise_3d(rng, dims, 25.0 / spacing_mm))
        image = tissue * field + noise * rng.standard_normal(dims, dtype=np.float32)
        images.append(np.where(brain, image, 0.0))
    return np.stack(images).astype(np.float32), label


def make_vessel_volume(shape: Shape = 48, *, seed: int = 0, spacing: Union[float, Sequence[float]] = 1.0,
                       noise: float = 0.06, branches: int = 14, distractors: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic angiography-like volume: a thin branching vessel tree among bright blobs.

    A tree grows from a trunk near one face of the volume by smooth random walks; each branch is
    thinner than its parent (radius 2.2 mm at the trunk down to 0.8 mm). The background
    holds blobs exactly as bright as the vessels (calcifications, enhancing tissue) whose total
    volume is ``distractors`` times the vessels', so intensity alone cannot find the tree (the
    best intensity interval scores a Dice below 0.6), while the shape (a thin tube, not a
    ball) can. Blur makes thin vessels fainter than thick ones, as partial volume does.

    Args:
        shape: (D, H, W) in voxels, or one int for a cube.
        seed: the volume's seed.
        spacing: voxel size in mm along (D, H, W); the tree is grown in mm.
        noise: standard deviation of the Gaussian noise (vessel contrast about 0.5).
        branches: how many branches the tree may grow besides its trunk.
        distractors: the blobs' total volume as a multiple of the vessels'.

    Returns:
        ``image`` (1, D, H, W) float32 and ``label`` (D, H, W) int64: 0 background, 1 vessel.
    """
    dims, spacing_mm = _shape3(shape), _spacing3(spacing)
    if branches < 0 or distractors < 0:
        raise ValueError(f"branches and distractors must be non-negative; got {branches} and {distractors}.")
    rng = np.random.default_rng(seed)
    fov = np.asarray(dims) * spacing_mm
    centreline = np.zeros(dims, dtype=bool)
    radius = np.zeros(dims, dtype=np.float32)
    # The trunk enters through a random face and heads inwards; branches start from points on earlier walks.
    axis = int(rng.integers(3))
    start = rng.uniform(0.25, 0.75, 3) * fov
    start[axis] = 0.02 * fov[axis]
    heading = np.zeros(3)
    heading[axis] = 1.0
    walkers, grown = [(start, heading, 2.2)], 0
    while walkers:
        position, direction, r = walkers.pop(0)
        for _ in range(int(2.2 * fov.max())):  # steps of 0.5 mm
            direction = direction + 0.22 * rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            position = position + 0.5 * direction
            voxel = np.floor(position / spacing_mm).astype(int)
            if np.any(voxel < 0) or np.any(voxel >= dims):
                break
            centreline[tuple(voxel)], radius[tuple(voxel)] = True, max(radius[tuple(voxel)], r)
            r = max(0.8, r * 0.997)
            if grown < branches and rng.random() < 0.05:
                turn = rng.standard_normal(3)
                walkers.append((position.copy(), (turn - turn @ direction * direction) / np.linalg.norm(turn), 0.75 * r))
                grown += 1
    distance, nearest = ndimage.distance_transform_edt(~centreline, sampling=spacing_mm, return_indices=True)
    label = (distance <= radius[tuple(nearest)]).astype(np.int64)

    # Bright blobs away from the tree, until they hold `distractors` times its volume.
    grid = _grid_mm(dims, spacing_mm)
    blobs = np.zeros(dims, dtype=bool)
    away = distance - radius[tuple(nearest)] > 2.0
    target, tries = distractors * label.sum(), 0
    while blobs.sum() < target and tries < 200:
        tries += 1
        centre_vox = np.argwhere(away)[rng.integers(int(away.sum()))] if away.any() else None
        if centre_vox is None:
            break
        centre = np.array([grid[a].ravel()[centre_vox[a]] for a in range(3)])
        blobs |= (_ellipsoid(grid, centre, rng.uniform(1.5, 3.5, 3), _rotation(rng)) < 1) & away

    tissue = 0.3 + 0.05 * _smooth_noise_3d(rng, dims, 6.0 / spacing_mm)  # soft-tissue background
    tissue[blobs] = 0.8
    tissue[label == 1] = 0.8
    tissue = ndimage.gaussian_filter(tissue, sigma=0.6 / spacing_mm)  # partial volume: thin vessels fade
    field = np.exp(0.2 * _smooth_noise_3d(rng, dims, 30.0 / spacing_mm))
    image = tissue * field + noise * rng.standard_normal(dims, dtype=np.float32)
    return image[None].astype(np.float32), label


def normalize_brain(image: Union[np.ndarray, torch.Tensor]) -> Union[np.ndarray, torch.Tensor]:
    """Each channel z-scored over the brain (its non-zero voxels); the background stays 0.

    MRI intensities have no absolute unit, so every modality of every scan is normalised on
    its own, and only inside the head: the zeros around it would drag the mean down. Equal to
    MONAI's ``NormalizeIntensity(nonzero=True, channel_wise=True)`` (population std).

    Shape:
        (C, *S) -> (C, *S) float32, numpy in, numpy out.
    """
    is_tensor = isinstance(image, torch.Tensor)
    values = image.detach().cpu().numpy() if is_tensor else np.asarray(image)
    out = np.zeros(values.shape, dtype=np.float32)
    for c, channel in enumerate(values):
        inside = channel != 0
        if inside.sum() < 2:
            raise ValueError(f"channel {c} has fewer than two non-zero voxels; is it an empty or all-zero scan?")
        brain = channel[inside].astype(np.float64)
        out[c][inside] = (brain - brain.mean()) / max(brain.std(), 1e-8)
    return torch.from_numpy(out) if is_tensor else out


def scanner_shift(image: np.ndarray, *, seed: int, bias: float = 0.5, gamma: float = 1.5,
                  correlation_mm: float = 40.0) -> np.ndarray:
    """The same head as another scanner might show it: a strong smooth bias field and a contrast change.

    Each modality is multiplied by its own field ``exp(bias * n)``, ``n`` a zero-mean, unit-std
    noise varying over about ``correlation_mm`` (every volume already has a weak one, ``bias``
    0.2 over 25 mm), then raised to the power ``gamma`` after scaling the head to [0, 1] (and
    scaled back). Zero outside the head stays zero. Apply it before :func:`normalize_brain`.

    Args:
        image: (C, D, H, W) as :func:`make_brats_volume` returns it (unit voxel spacing).
        seed: the shift's own seed.
        bias: the log-field's standard deviation (0.5: the field spans about 0.4× to 2.7×).
        gamma: the contrast change (> 1 darkens the mid-tones).
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (C, D, H, W); got shape {image.shape}.")
    if bias < 0 or gamma <= 0:
        raise ValueError(f"need bias >= 0 and gamma > 0; got bias={bias}, gamma={gamma}.")
    rng = np.random.default_rng(seed)
    out = np.zeros_like(image, dtype=np.float32)
    for c, channel in enumerate(image):
        head = channel != 0
        field = np.exp(bias * _smooth_noise_3d(rng, channel.shape, [correlation_mm] * 3))
        shifted = np.clip(channel * field, 0, None)
        top = float(shifted[head].max()) if head.any() else 1.0
        out[c] = np.where(head, (shifted / max(top, 1e-8)) ** gamma * top, 0.0)
    return out


def make_organ_volumes(shape: Shape, seeds: Sequence[int], **volume_options) -> tuple[np.ndarray, np.ndarray]:
    """Several :func:`make_organ_volume` volumes, stacked.

    Args:
        shape, seeds: the volumes' shape and one seed each.
        **volume_options: passed to :func:`make_organ_volume` (``num_classes``, ``foreground_fraction`` …).

    Returns:
        images (N, C, *S) float32 and labels (N, *S), in the order of ``seeds``.
    """
    pairs = [make_organ_volume(shape, seed=seed, **volume_options) for seed in seeds]
    return np.stack([image for image, _ in pairs]), np.stack([label for _, label in pairs])


def make_brats_volumes(shape: Shape, seeds: Sequence[int], *, shift: Optional[dict] = None,
                       **volume_options) -> tuple[np.ndarray, np.ndarray]:
    """Several :func:`make_brats_volume` volumes, each modality z-scored over the brain (:func:`normalize_brain`).

    Args:
        shape, seeds: the volumes' shape and one seed each.
        shift: options of :func:`scanner_shift` (its seed is the volume's), applied before normalising;
            None for none.
        **volume_options: passed to :func:`make_brats_volume` (``enhancing``, ``tumour_size`` …).

    Returns:
        images (N, 4, *S) float32 and labels (N, *S), in the order of ``seeds``.
    """
    pairs = [make_brats_volume(shape, seed=seed, **volume_options) for seed in seeds]
    images = [image if shift is None else scanner_shift(image, seed=seed, **shift)
              for (image, _), seed in zip(pairs, seeds)]
    return np.stack([normalize_brain(image) for image in images]), np.stack([label for _, label in pairs])


def brats_regions(label: Union[np.ndarray, torch.Tensor]) -> Union[np.ndarray, torch.Tensor]:
    """The nested BraTS regions of a disjoint label map, as three binary channels.

    Shape:
        (*S) labels 0..3 -> (3, *S) float: whole tumour {1, 2, 3}, tumour core {1, 3},
        enhancing tumour {3}; a batch (B, *S) gives (B, 3, *S).
    """
    batch = torch.as_tensor(label)
    batch = batch[None] if batch.dim() == 3 else batch  # (B, *S)
    regions = labels_to_regions(batch, BRATS_REGION_CLASSES)  # (B, 3, *S), the one definition of the regions
    regions = regions[0] if torch.as_tensor(label).dim() == 3 else regions
    return regions if isinstance(label, torch.Tensor) else regions.numpy()


class SyntheticOrgans3D(GeneratedDataset):
    """Organ volumes made on demand by :func:`make_organ_volume`.

    Args:
        num_samples: number of volumes.
        size: (D, H, W) or one int.
        seed: the dataset's seed (item ``i`` uses ``item_seed(seed, i)``).
        **kwargs: passed on to :func:`make_organ_volume`.

    Shape:
        item: image (C, D, H, W) float32, label (D, H, W) int64.
    """

    generate = staticmethod(make_organ_volume)


class SyntheticBraTS3D(GeneratedDataset):
    """BraTS-like volumes made on demand by :func:`make_brats_volume`.

    Args:
        num_samples: number of volumes.
        size: (D, H, W) or one int.
        seed: the dataset's seed.
        regions: return the nested region channels (3, D, H, W) instead of the label map.
        **kwargs: passed on to :func:`make_brats_volume`.

    Shape:
        item: image (4, D, H, W) float32, label (D, H, W) int64 or regions (3, D, H, W) float32.
    """

    generate = staticmethod(make_brats_volume)

    def __init__(self, num_samples: int, size: Shape = 64, *, seed: int = 0, regions: bool = False, **kwargs) -> None:
        super().__init__(num_samples, size, seed=seed, **kwargs)
        self.regions = regions

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = super().__getitem__(index)
        return image, (brats_regions(label) if self.regions else label)
